"""The `variant_comparison` asset: a tenant's A/B variants compared, for analysts and the UI."""

import dagster as dg

from callqa.assets.aggregates import table_schema, tenant_table_asset
from callqa.reporting.variants import compare_variants, comparison_markdown
from callqa.resources import WarehouseResource
from callqa.storage import tables as t

VARIANT_COMPARISON = "variant_comparison"

COLUMN_DESCRIPTIONS = {
    "id": "surrogate key",
    "tenant": "tenant id (the asset's partition)",
    "preset": "preset id",
    "prompt_version": "prompt version (content hash) the variant scored with",
    "variant": "A/B variant id; 'control' for the calls no variant took",
    "calls": "calls scored with this version and variant (valid or not)",
    "valid_rate": "share of those calls whose final result was valid, 0-1",
    "mean_total": "mean weighted total of the valid results, 0-100",
    "std_total": "sample standard deviation of those totals (NULL below two)",
    "p10_total": "10th percentile of those totals",
    "p90_total": "90th percentile of those totals",
    "mean_latency_ms": "mean scoring latency per call (all attempts)",
    "mean_cost_usd": "mean LLM cost per call (all attempts; invalid results included)",
    "evidence_rate": "share of the valid results' evidence quotes verified, 0-1",
    "computed_at": "when the comparison was last rebuilt (UTC)",
}


def build_variant_comparison(tenant_ids: list[str]) -> dg.AssetsDefinition:
    """The comparison asset, partitioned by the tenants configured when the code loads."""
    return tenant_table_asset(
        variant_comparison,
        name=VARIANT_COMPARISON,
        tenant_ids=tenant_ids,
        kinds={"sql", "python"},
        metadata={
            "dagster/table_name": "variant_comparison",
            "dagster/column_schema": table_schema(t.variant_comparison, COLUMN_DESCRIPTIONS),
        },
        description=(
            "A tenant's A/B variants side by side, per preset, prompt version and variant: "
            "calls scored, validity rate after retries, the valid totals' mean, standard "
            "deviation and 10th-90th percentiles, mean latency, mean cost and evidence "
            "verification rate. Built from `analysis_versions` (every result, invalid ones "
            "included) into the `variant_comparison` table, swapped in one transaction."
        ),
    )


def variant_comparison(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    tenant = context.partition_key
    wh = warehouse.get()
    versions = wh.analysis_versions(tenant, with_record=False)
    rows = compare_variants(versions)
    wh.replace_variant_comparison(tenant, rows)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(rows),
            "comparison": dg.MetadataValue.md(comparison_markdown(rows)),
            "results": len(versions),
            "variants": len({(r["preset"], r["variant"]) for r in rows}),
            "valid_rate": round(sum(v["valid"] for v in versions) / len(versions), 4)
            if versions
            else 0.0,
        }
    )
