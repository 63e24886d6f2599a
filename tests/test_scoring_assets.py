"""scored_analysis through Dagster from a stored diarized transcript (no audio needed):
classification, A/B variants, PII masking, and staleness after a preset changes."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg
import yaml

from callqa.assets.calls import build_call_assets
from callqa.calls.keys import make_key
from callqa.cli import main as cli_main
from callqa.config.registry import BUNDLED_DIR, default_registry
from callqa.storage.warehouse import Warehouse
from tests.builders import diarized, timed
from tests.call_assets import call_resources
from tests.tenants import use_tenants

GOOD_SUPPORT = [
    ("operator", "Good morning, thank you for calling Northwind support, this is Sam."),
    ("customer", "Hi, my internet keeps dropping since yesterday, my email is jo@example.com."),
    ("operator", "I'm sorry to hear that. When did it start, and which router do you have?"),
    ("customer", "Yesterday evening, the white router from you."),
    ("operator", "I understand. I've reset the line and the connection is stable now."),
    ("customer", "Great, it's working now."),
    ("operator", "Is there anything else I can help you with? Have a good day."),
]


def _ready(wh: Warehouse, tenant: str, external_id: str, turns, category=None) -> str:
    """A call whose diarized transcript is stored, as the earlier stages leave it."""
    call = diarized(timed(turns))
    wh.stage_call(
        tenant=tenant,
        external_id=external_id,
        source="file",
        source_uri=f"/audio/{external_id}.wav",
        category=category,
    )
    wh.upsert_call(
        tenant=tenant,
        external_id=external_id,
        partition_key=make_key(tenant, external_id).partition_key,
        audio_uri=f"file:///audio/{external_id}.wav",
        sha256="0" * 64,
        size_bytes=1,
        codec="pcm_s16le",
        container="wav",
        channels=2,
        sample_rate=16000,
        duration_s=call.duration_s,
        category=category,
        operator="sam",
        started_at=datetime(2026, 11, 20, 10, tzinfo=UTC),
    )
    wh.upsert_transcript(
        tenant=tenant,
        external_id=external_id,
        stage="diarized",
        model="tiny.en",
        language="en",
        word_count=sum(len(t.split()) for _, t in turns),
        data=call.model_dump(mode="json"),
    )
    return make_key(tenant, external_id).partition_key


def _score(keys, db_url, tmp_path, instance):
    instance.add_dynamic_partitions("calls", keys)
    assets = build_call_assets()
    for key in keys:
        result = dg.materialize(
            [assets],
            selection=["scored_analysis"],
            partition_key=key,
            instance=instance,
            resources=call_resources(db_url, tmp_path),
        )
        assert result.success
    return assets


def _stale(instance, assets, key) -> bool:
    """What the UI shows for the call's scored_analysis partition (Dagster's own resolver)."""
    from dagster._core.definitions.data_version import StaleStatus
    from dagster._utils.test.data_versions import get_stale_status_resolver

    resolver = get_stale_status_resolver(instance, [assets])
    return resolver.get_status(dg.AssetKey("scored_analysis"), key) == StaleStatus.STALE


def test_category_classified_pii_masked_and_stale_after_a_preset_change(
    db_url, tmp_path, monkeypatch, capsys
):
    use_tenants(tmp_path / "config", monkeypatch)
    default_registry.cache_clear()
    wh = Warehouse.from_url(db_url)
    support = _ready(wh, "demo", "sup-1", GOOD_SUPPORT)  # no category from the CRM
    sales = _ready(wh, "demo", "sal-1", GOOD_SUPPORT, category="sales")
    instance = dg.DagsterInstance.ephemeral()
    assets = _score([support, sales], db_url, tmp_path, instance)

    record = wh.analysis("demo", "sup-1")
    assert record["call"]["category"] == "support"
    assert record["call"]["category_source"] == "classified"
    assert record["scoring"]["preset"] == "support-default"
    assert record["scores"]["total"] >= 80
    assert wh.analysis("demo", "sal-1")["scores"]["total"] < 70  # the wrong rubric for it
    # PII never reaches the scorer or the record; quotes verify against the masked text.
    texts = [s["text"] for s in record["transcript"]["segments"]]
    assert "my email is [EMAIL]." in " ".join(texts) and "jo@example.com" not in str(record)
    assert record["scoring"]["redacted"] is True
    ev = record["scoring"]["evidence"]
    assert ev["quotes"] > 0 and ev["verified"] == ev["quotes"]
    assert not _stale(instance, assets, support) and not _stale(instance, assets, sales)

    # The support preset changes (a weight): both partitions show stale in Dagster (the
    # asset's code version covers all presets), `--stale` picks exactly the support call.
    changed = yaml.safe_load((BUNDLED_DIR / "presets" / "support-default.yaml").read_text())
    changed["criteria"][0]["weight"] = 3
    (tmp_path / "config" / "presets").mkdir(parents=True)
    (tmp_path / "config" / "presets" / "support-default.yaml").write_text(yaml.safe_dump(changed))
    default_registry.cache_clear()
    new_assets = build_call_assets()
    assert _stale(instance, new_assets, support)
    monkeypatch.setenv("CALLQA_DATABASE_URL", db_url)
    monkeypatch.setenv("CALLQA_DATA_DIR", str(tmp_path / "data"))
    capsys.readouterr()
    assert cli_main(["backfill", "--tenant", "demo", "--stale", "--dry-run"]) == 0
    listed = capsys.readouterr().out.split("\n")
    assert [line.split("\t")[0] for line in listed if line] == [support]
    # Re-scored under the new version: fresh again, and the old result stays queryable.
    _score([support], db_url, tmp_path, instance)
    assert not _stale(instance, new_assets, support)
    versions = wh.analysis_versions("demo", "sup-1")
    assert len({v["prompt_version"] for v in versions}) == 2
    wh.dispose()
    default_registry.cache_clear()


def test_variants_split_calls_by_key(db_url, tmp_path, monkeypatch):
    preset = yaml.safe_load((BUNDLED_DIR / "presets" / "sales-default.yaml").read_text())
    preset["id"] = "sales-ab"
    preset["variants"] = [{"id": "terse", "share": 0.5, "prompt_template": "Score: $transcript"}]
    (tmp_path / "config" / "presets").mkdir(parents=True)
    (tmp_path / "config" / "presets" / "sales-ab.yaml").write_text(yaml.safe_dump(preset))
    use_tenants(
        tmp_path / "config",
        monkeypatch,
        {"id": "acme", "name": "Acme", "presets": {"default": "sales-ab"}},
    )
    default_registry.cache_clear()
    wh = Warehouse.from_url(db_url)
    keys = [_ready(wh, "acme", f"c{i}", GOOD_SUPPORT, category="sales") for i in range(8)]
    instance = dg.DagsterInstance.ephemeral()
    _score(keys, db_url, tmp_path, instance)
    p = default_registry().preset("sales-ab")
    recorded = {k: wh.analysis("acme", k.split("__")[1])["scoring"] for k in keys}
    assert {k: r["variant"] for k, r in recorded.items()} == {k: p.variant_for(k) for k in keys}
    assert {r["variant"] for r in recorded.values()} == {"control", "terse"}
    for r in recorded.values():  # each variant scores, and is versioned, as itself
        assert r["prompt_version"] == p.with_variant(r["variant"]).prompt_version
    wh.dispose()
    default_registry.cache_clear()
