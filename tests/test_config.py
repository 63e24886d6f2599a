"""Tenants and presets: the bundled files, prompt versions, and clear errors for bad files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from callqa.config.models import ChannelMap, Preset, Tenant
from callqa.config.registry import BUNDLED_DIR, load_registry
from callqa.errors import ConfigError
from callqa.schemas import SCHEMA_DIR, generated_schemas

SALES_CRITERIA = [
    "greeting",
    "needs_discovery",
    "presentation",
    "objection_handling",
    "closing",
    "tone",
]


def _preset_data(**overrides) -> dict:
    data = {
        "id": "p1",
        "criteria": [
            {"id": "greeting", "name": "Greeting", "weight": 1, "description": "Says hello."},
            {"id": "closing", "name": "Closing", "weight": 2, "description": "Next step."},
        ],
        "prompt_template": "Score this call on $criteria:\n$transcript",
    }
    data.update(overrides)
    return data


def _tenant_data(**overrides) -> dict:
    data = {"id": "t1", "name": "Tenant One", "presets": {"default": "sales-default"}}
    data.update(overrides)
    return data


def _write(root: Path, kind: str, name: str, data) -> Path:
    path = root / kind / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


# bundled configuration --------------------------------------------------------------------


def test_bundled_registry_has_demo_tenant_and_sales_preset():
    registry = load_registry()
    assert "demo" in registry.tenants
    preset = registry.preset("sales-default")
    assert preset.criterion_ids == SALES_CRITERIA
    assert (preset.scale.min, preset.scale.max) == (1, 5)
    assert registry.tenant("demo").channel_map == ChannelMap(left="operator", right="customer")
    assert registry.preset_for("demo", None) is preset
    assert registry.preset_for("demo", "some-unmapped-category") is preset


def test_unknown_tenant_and_preset_name_the_known_ones():
    registry = load_registry()
    with pytest.raises(ConfigError, match=r"unknown tenant 'nobody' \(known: .*demo"):
        registry.tenant("nobody")
    with pytest.raises(ConfigError, match=r"unknown preset 'nope' \(known: .*sales-default"):
        registry.preset("nope")


def test_preset_id_for_falls_back_to_default():
    tenant = Tenant(id="t1", name="T", presets={"default": "base", "support": "care"})
    assert tenant.preset_id_for("support") == "care"
    assert tenant.preset_id_for("sales") == "base"
    assert tenant.preset_id_for(None) == "base"
    assert tenant.preset_id_for("") == "base"


# prompt version ---------------------------------------------------------------------------


def test_prompt_version_is_a_stable_content_hash():
    first = load_registry().preset("sales-default")
    second = load_registry().preset("sales-default")
    assert first is not second
    assert re.fullmatch(r"[0-9a-f]{12}", first.prompt_version)
    assert first.prompt_version == second.prompt_version


def _variant(preset: Preset, mutate) -> Preset:
    data = preset.model_dump(mode="json")
    mutate(data)
    return Preset.model_validate(data)


def test_prompt_version_tracks_what_the_scorer_is_asked():
    base = load_registry().preset("sales-default")
    version = base.prompt_version

    def weight(d):
        d["criteria"][0]["weight"] = 5

    def template(d):
        d["prompt_template"] = d["prompt_template"] + "\nBe strict."

    def criterion_text(d):  # criterion descriptions are part of the prompt
        d["criteria"][1]["description"] += " Ask about budget."

    def description(d):  # the preset's own description is documentation only
        d["description"] = "A completely different description."

    assert _variant(base, weight).prompt_version != version
    assert _variant(base, template).prompt_version != version
    assert _variant(base, criterion_text).prompt_version != version
    assert _variant(base, description).prompt_version == version


# invalid files ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "name", "data", "expected"),
    [
        pytest.param(
            "presets",
            "p1",
            _preset_data(
                criteria=[
                    {"id": "greeting", "name": "A", "weight": 1, "description": "x"},
                    {"id": "greeting", "name": "B", "weight": 1, "description": "y"},
                ]
            ),
            ["criteria", "duplicate criterion ids: greeting"],
            id="duplicate-criterion",
        ),
        pytest.param(
            "presets",
            "p1",
            _preset_data(scale={"min": 5, "max": 5}),
            ["scale", "max (5) must be greater than min (5)"],
            id="scale-max-not-above-min",
        ),
        pytest.param(
            "presets",
            "p1",
            _preset_data(prompt_template="Score the call: $criteria"),
            ["prompt_template", "$transcript"],
            id="template-without-transcript",
        ),
        pytest.param(
            "presets",
            "p1",
            _preset_data(
                criteria=[{"id": "greeting", "name": "A", "weight": 0, "description": "x"}]
            ),
            ["criteria.0.weight"],
            id="zero-weight",
        ),
        pytest.param(
            "presets",
            "p1",
            _preset_data(colour="blue"),
            ["colour", "Extra inputs"],
            id="unknown-field",
        ),
        pytest.param(
            "presets",
            "p1",
            _preset_data(criteria=[]),
            ["criteria"],
            id="no-criteria",
        ),
        pytest.param(
            "presets",
            "other-name",
            _preset_data(),
            ["'p1' must match the file name 'other-name'"],
            id="preset-id-not-file-name",
        ),
        pytest.param(
            "tenants",
            "t1",
            _tenant_data(channel_map={"left": "operator", "right": "operator"}),
            ["channel_map", "different roles"],
            id="channel-map-same-role",
        ),
        pytest.param(
            "tenants",
            "t1",
            _tenant_data(channel_map={"left": "agent", "right": "customer"}),
            ["channel_map.left"],
            id="channel-map-unknown-role",
        ),
        pytest.param(
            "tenants",
            "t1",
            _tenant_data(presets={"sales": "sales-default"}),
            ["presets", "'default'"],
            id="tenant-without-default-preset",
        ),
        pytest.param(
            "tenants",
            "t1",
            _tenant_data(id="Bad_Tenant"),
            ["id", "pattern"],
            id="tenant-id-not-a-slug",
        ),
        pytest.param(
            "tenants",
            "t2",
            _tenant_data(),
            ["'t1' must match the file name 't2'"],
            id="tenant-id-not-file-name",
        ),
        pytest.param(
            "tenants",
            "t1",
            _tenant_data(presets={"default": "sales-default", "vip": "gold"}),
            ["tenant 't1' maps category 'vip' to unknown preset 'gold'"],
            id="tenant-maps-unknown-preset",
        ),
        pytest.param(
            "tenants",
            "t1",
            "id: t1\nname: [unclosed\n",
            ["cannot read YAML"],
            id="broken-yaml",
        ),
        pytest.param("tenants", "t1", "", ["<root>"], id="empty-file"),
    ],
)
def test_invalid_config_file_names_file_and_problem(tmp_path, kind, name, data, expected):
    path = _write(tmp_path, kind, name, data)
    with pytest.raises(ConfigError) as excinfo:
        load_registry(tmp_path)
    message = str(excinfo.value)
    assert str(path) in message
    for part in expected:
        assert part in message


def test_config_dir_adds_and_replaces_bundled_files(tmp_path):
    _write(tmp_path, "presets", "p1", _preset_data())
    # Same id as the bundled preset: the config dir's file wins.
    _write(tmp_path, "presets", "sales-default", _preset_data(id="sales-default"))
    _write(tmp_path, "tenants", "t1", _tenant_data(presets={"default": "p1"}))
    registry = load_registry(tmp_path)
    assert set(registry.tenants) == {"demo", "t1"}
    assert registry.preset_for("t1", "anything").id == "p1"
    assert registry.preset("sales-default").criterion_ids == ["greeting", "closing"]
    assert load_registry().preset("sales-default").criterion_ids == SALES_CRITERIA


# published JSON schemas -------------------------------------------------------------------


def test_committed_schemas_match_the_models():
    generated = generated_schemas()
    committed = {
        p.name.removesuffix(".schema.json"): json.loads(p.read_text())
        for p in SCHEMA_DIR.glob("*.schema.json")
    }
    assert set(committed) == set(generated) == {"analysis", "tenant", "preset"}
    for name, schema in generated.items():
        # Compare as JSON, as the files are written (tuples become lists etc.).
        assert committed[name] == json.loads(json.dumps(schema)), (
            f"{name}.schema.json is stale: run `callqa schema --write`"
        )


@pytest.mark.parametrize("kind", ["tenant", "preset"])
def test_bundled_files_validate_against_published_schema(kind):
    schema = json.loads((SCHEMA_DIR / f"{kind}.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    files = sorted((BUNDLED_DIR / f"{kind}s").glob("*.yaml"))
    assert files
    for path in files:
        errors = [e.message for e in validator.iter_errors(yaml.safe_load(path.read_text()))]
        assert errors == [], f"{path.name}: {errors}"


def test_published_schemas_reject_invalid_config():
    preset_schema = json.loads((SCHEMA_DIR / "preset.schema.json").read_text())
    tenant_schema = json.loads((SCHEMA_DIR / "tenant.schema.json").read_text())
    bad_preset = _preset_data(criteria=[{"id": "Greeting!", "name": "A", "weight": -1}])
    bad_tenant = _tenant_data(auto_process="sometimes", surprise=1)
    assert list(jsonschema.Draft202012Validator(preset_schema).iter_errors(bad_preset))
    assert list(jsonschema.Draft202012Validator(tenant_schema).iter_errors(bad_tenant))
    assert not list(jsonschema.Draft202012Validator(preset_schema).iter_errors(_preset_data()))
