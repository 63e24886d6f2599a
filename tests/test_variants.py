"""A/B variant comparison: the figures on hand-checked results, and the asset that
publishes them, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date

import dagster as dg

from callqa.assets.variants import COLUMN_DESCRIPTIONS, build_variant_comparison
from callqa.reporting.variants import COLUMNS, compare_variants, comparison_markdown
from callqa.resources import WarehouseResource
from callqa.storage import tables as t
from tests.records import sample_record

DAY = date(2024, 5, 1)


def _version(preset, prompt_version, variant, total, *, latency=100.0, cost=0.001, ev=(4, 4)):
    """One analysis_versions row; total None = an invalid result."""
    return {
        "preset": preset,
        "prompt_version": prompt_version,
        "variant": variant,
        "valid": total is not None,
        "total": total,
        "latency_ms": latency,
        "cost_usd": cost,
        "evidence_quotes": ev[0] if total is not None else 0,
        "evidence_verified": ev[1] if total is not None else 0,
    }


VERSIONS = [
    # sales control (v1): four valid results and one invalid
    _version("sales", "v1", "control", 60.0, latency=100, cost=0.001, ev=(4, 4)),
    _version("sales", "v1", "control", 70.0, latency=200, cost=0.002, ev=(4, 3)),
    _version("sales", "v1", "control", 90.0, latency=300, cost=0.003, ev=(4, 4)),
    _version("sales", "v1", "control", 80.0, latency=400, cost=0.004, ev=(4, 3)),
    _version("sales", "v1", "control", None, latency=1000, cost=0.010),
    # its variant (its own prompt version): one valid result, one cited nothing
    _version("sales", "v1-short", "short", 50.0, latency=50, cost=0.0005, ev=(0, 0)),
    # another preset, only an invalid result
    _version("support", "s1", "control", None, latency=80, cost=0.0),
]


def test_compare_variants_on_hand_checked_figures():
    rows = compare_variants(VERSIONS)
    assert [tuple(r[k] for k in ("preset", "prompt_version", "variant")) for r in rows] == [
        ("sales", "v1", "control"),
        ("sales", "v1-short", "short"),
        ("support", "s1", "control"),
    ]
    assert all(list(r) == list(COLUMNS) for r in rows)
    control, short, support = rows
    assert control == {
        "preset": "sales",
        "prompt_version": "v1",
        "variant": "control",
        "calls": 5,
        "valid_rate": 0.8,
        "mean_total": 75.0,
        "std_total": 12.91,  # sample std of 60, 70, 80, 90: sqrt(500 / 3)
        "p10_total": 63.0,  # linear interpolation: 60 + 0.3 x 10
        "p90_total": 87.0,  # 80 + 0.7 x 10
        "mean_latency_ms": 400.0,  # the invalid result's time counts too
        "mean_cost_usd": 0.004,
        "evidence_rate": 0.875,  # 14 of 16 quotes
    }
    assert (short["calls"], short["valid_rate"], short["mean_total"]) == (1, 1.0, 50.0)
    assert (short["std_total"], short["p10_total"], short["p90_total"]) == (None, 50.0, 50.0)
    assert short["evidence_rate"] is None  # no quote cited
    assert (support["calls"], support["valid_rate"], support["mean_total"]) == (1, 0.0, None)
    assert (support["p10_total"], support["p90_total"], support["evidence_rate"]) == (
        None,
        None,
        None,
    )
    assert (support["mean_latency_ms"], support["mean_cost_usd"]) == (80.0, 0.0)


def test_control_comes_first_whatever_the_variant_names():
    rows = compare_variants(
        [
            _version("p", "v", "alpha", 10.0),
            _version("p", "v", "control", 20.0),
            _version("p", "v", "beta", 30.0),
        ]
    )
    assert [r["variant"] for r in rows] == ["control", "alpha", "beta"]
    assert compare_variants([]) == []


def test_comparison_markdown():
    text = comparison_markdown(compare_variants(VERSIONS))
    lines = text.splitlines()
    assert lines[0].startswith("| preset | prompt version | variant | calls | valid |")
    assert len(lines) == 2 + 3
    assert lines[2] == (
        "| sales | `v1` | control | 5 | 80% | 75.0 | 12.9 | 63.0-87.0 | 400 | 0.004000 | 88% |"
    )
    assert lines[4] == "| support | `s1` | control | 1 | 0% | - | - | - | 80 | 0.000000 | - |"
    assert comparison_markdown([]) == "_no scored calls yet_"


def test_every_column_is_described():
    assert set(COLUMN_DESCRIPTIONS) == {c.name for c in t.variant_comparison.columns}
    assert set(COLUMNS) <= set(COLUMN_DESCRIPTIONS)


def _seed(warehouse) -> None:
    """demo: three calls of the control, one of a variant, one invalid; t2: one call."""
    for external_id, variant, greeting in [
        ("c1", "control", 5),
        ("c2", "control", 3),
        ("c3", "control", 1),
        ("c4", "short", 4),
    ]:
        record = sample_record("demo", external_id, {"greeting": greeting}, variant=variant)
        warehouse.save_analysis(record, DAY)
    version = record["scoring"]["prompt_version"]
    warehouse.save_invalid_analysis(
        "demo",
        "c5",
        preset="p1",
        prompt_version=version,
        variant="control",
        scorer="rules",
        model=None,
        errors="no evidence",
        attempts=2,
        cost_usd=0.0,
        latency_ms=10.0,
        run_id="r",
    )
    warehouse.save_analysis(sample_record("t2", "x1", {"greeting": 2}), DAY)


def test_replace_variant_comparison_swaps_one_tenant(warehouse):
    _seed(warehouse)
    for tenant in ("demo", "t2"):
        warehouse.replace_variant_comparison(
            tenant, compare_variants(warehouse.analysis_versions(tenant, with_record=False))
        )
    rows = warehouse.variant_comparison("demo")
    assert [(r["variant"], r["calls"], r["valid_rate"], r["mean_total"]) for r in rows] == [
        ("control", 4, 0.75, 50.0),  # totals 100, 50, 0; c5 invalid
        ("short", 1, 1.0, 75.0),
    ]
    assert all(r["tenant"] == "demo" and r["computed_at"].tzinfo for r in rows)
    assert rows[0]["evidence_rate"] == 1.0
    t2_before = warehouse.variant_comparison("t2")
    warehouse.replace_variant_comparison("demo", rows[1:2])
    assert [r["variant"] for r in warehouse.variant_comparison("demo")] == ["short"]
    assert warehouse.variant_comparison("t2") == t2_before
    assert [(r["calls"], r["mean_total"]) for r in t2_before] == [(1, 25.0)]


def test_variant_comparison_asset(warehouse, db_url):
    _seed(warehouse)
    asset = build_variant_comparison(["demo", "t2"])
    assert asset.partitions_def.get_partition_keys() == ["demo", "t2"]
    result = dg.materialize(
        [asset],
        partition_key="demo",
        resources={"warehouse": WarehouseResource(database_url=db_url)},
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    assert meta["dagster/row_count"].value == 2
    assert (meta["results"].value, meta["variants"].value, meta["valid_rate"].value) == (
        5,
        2,
        0.8,
    )
    comparison = meta["comparison"].value
    assert "| p1 |" in comparison and "| short |" in comparison and "| 75% |" in comparison
    assert [r["variant"] for r in warehouse.variant_comparison("demo")] == ["control", "short"]
    assert warehouse.variant_comparison("t2") == []  # only the partition's tenant

    spec = asset.specs_by_key[dg.AssetKey("variant_comparison")]
    assert [d.asset_key for d in spec.deps] == [dg.AssetKey("scored_analysis")]
    assert isinstance(spec.deps[0].partition_mapping, dg.AllPartitionMapping)
    schema = spec.metadata["dagster/column_schema"]
    assert [c.name for c in schema.columns] == [c.name for c in t.variant_comparison.columns]
    assert all(c.description for c in schema.columns)


def test_variant_comparison_asset_with_nothing_scored(warehouse, db_url):
    result = dg.materialize(
        [build_variant_comparison(["t2"])],
        partition_key="t2",
        resources={"warehouse": WarehouseResource(database_url=db_url)},
        instance=dg.DagsterInstance.ephemeral(),
    )
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    assert (meta["dagster/row_count"].value, meta["comparison"].value) == (
        0,
        "_no scored calls yet_",
    )
