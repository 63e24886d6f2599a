"""Per-tenant daily aggregates that analysts query with plain SQL."""

import dagster as dg

from callqa.aggregates import daily_aggregates
from callqa.assets.calls import scored_analysis
from callqa.assets.partitions import tenant_partitions
from callqa.config.registry import default_registry
from callqa.expectations import validate_aggregates
from callqa.resources import WarehouseResource
from callqa.storage.warehouse import ALL_OPERATORS

AGGREGATES_EXPECTATIONS = "aggregates_expectations"


@dg.asset(
    partitions_def=tenant_partitions(),
    group_name="aggregates",
    kinds={"sql", "pandas"},
    # Built from every scored call of the tenant, read back from the warehouse.
    deps=[dg.AssetDep(scored_analysis, partition_mapping=dg.AllPartitionMapping())],
    check_specs=[dg.AssetCheckSpec(AGGREGATES_EXPECTATIONS, asset="tenant_daily_aggregates")],
)
def tenant_daily_aggregates(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    """Tables `daily_aggregates` and `daily_criterion_aggregates` for one tenant:
    calls, mean total and mean per criterion, per day, for the team ('*') and per operator."""
    tenant = context.partition_key
    wh = warehouse.get()
    call_rows, criterion_rows = daily_aggregates(
        wh.analyses_frame(tenant), wh.criterion_frame(tenant)
    )
    # Aggregates mix presets only if a tenant does; validate against the default one's scale.
    registry = default_registry()
    scale = registry.preset(registry.tenant(tenant).preset_id_for(None)).scale
    report = validate_aggregates(call_rows, criterion_rows, scale)
    # Write-audit-publish: rows that fail the expectations never replace what analysts
    # query; the failed check (and the log) says why the tables kept their old rows.
    if report.success:
        wh.replace_daily_aggregates(tenant, call_rows, criterion_rows)
    else:
        context.log.error(
            f"aggregates for tenant {tenant!r} failed {len(report.failures)} expectation(s); "
            "tables left unchanged"
        )
    team = [r for r in call_rows if r["operator"] == ALL_OPERATORS]
    calls = sum(r["calls"] for r in team)
    mean_total = round(sum(r["mean_total"] * r["calls"] for r in team) / calls, 2) if calls else 0.0
    return dg.MaterializeResult(
        metadata={
            "days": len(team),
            "calls": calls,
            "mean_total": mean_total,
            "operators": len({r["operator"] for r in call_rows} - {ALL_OPERATORS}),
            "rows": len(call_rows) + len(criterion_rows),
            "published": report.success,
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=AGGREGATES_EXPECTATIONS,
                passed=report.success,
                metadata={
                    "expectations": report.evaluated,
                    "failed": len(report.failures),
                    "failures": "\n".join(report.failures[:10]) or "none",
                },
            )
        ],
    )
