"""The tenant report: a self-contained HTML page per tenant, rebuilt after its aggregates."""

import dagster as dg

from callqa import settings
from callqa.assets.aggregates import TENANT_DAILY_AGGREGATES
from callqa.assets.partitions import tenant_partitions
from callqa.resources import WarehouseResource

TENANT_REPORT = "tenant_report"


def build_tenant_report(tenant_ids: list[str]) -> dg.AssetsDefinition:
    """The report asset, partitioned like the aggregates it reads (same tenant partition)."""
    return dg.asset(
        name=TENANT_REPORT,
        partitions_def=tenant_partitions(tenant_ids),
        group_name="reports",
        kinds={"html", "plotly"},
        deps=[dg.AssetDep(TENANT_DAILY_AGGREGATES)],
        description=(
            "One tenant's report, `<reports dir>/<tenant>/index.html` (CALLQA_REPORTS_DIR, "
            "default `<data dir>/reports`): score trend, criterion x operator heat map, "
            "distribution of totals, weakest criteria, recurring objections, cost per day and "
            "the ten lowest calls with their evidence, each with a page of its own under "
            "`calls/`. Self-contained (plotly.js embedded), works offline."
        ),
    )(tenant_report)


def tenant_report(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    from callqa.config.registry import default_registry
    from callqa.reporting.report import write_report

    tenant = context.partition_key
    report = write_report(
        warehouse.get(),
        tenant,
        settings.reports_dir() / tenant,
        tenant_name=default_registry().tenant(tenant).name,
    )
    headline = report.headline
    context.log.info(f"tenant {tenant!r}: report written to {report.index}")
    return dg.MaterializeResult(
        metadata={
            "report": dg.MetadataValue.url(report.index.as_uri()),
            "path": dg.MetadataValue.path(str(report.index)),
            "preview": dg.MetadataValue.md(headline.markdown()),
            "calls": headline.calls,
            "mean_total": headline.mean_total if headline.mean_total is not None else 0.0,
            "cost_usd": headline.cost_usd,
            "call_pages": report.call_pages,
            "size_bytes": report.size_bytes,
        }
    )
