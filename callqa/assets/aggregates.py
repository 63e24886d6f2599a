"""Per-tenant daily aggregates that analysts query with plain SQL.

The asset's metadata describes the tables it publishes: the column schema of
`daily_aggregates` (`dagster/column_schema`, built from the SQLAlchemy table so it cannot
drift from it), of `daily_criterion_aggregates` and of `daily_pattern_aggregates`, their
row counts (`dagster/row_count` is the tenant's rows in `daily_aggregates` as published)
and a preview of the first rows.
"""

from collections.abc import Mapping, Sequence

import dagster as dg
import sqlalchemy as sa

from callqa.assets import checks
from callqa.assets.calls import OWNERS
from callqa.assets.partitions import tenant_partitions
from callqa.config.models import Scale
from callqa.config.registry import Registry, default_registry
from callqa.reporting.aggregates import daily_aggregates, daily_pattern_aggregates
from callqa.reporting.expectations import validate_aggregates
from callqa.resources import WarehouseResource
from callqa.storage import tables as t
from callqa.storage.warehouse import ALL_OPERATORS

AGGREGATES_EXPECTATIONS = "aggregates_expectations"
TENANT_DAILY_AGGREGATES = "tenant_daily_aggregates"
PREVIEW_ROWS = 10

# Column descriptions for the UI; every column of the aggregate tables must have one (a
# test checks), so a column added by a migration is described here too.
COLUMN_DESCRIPTIONS = {
    "id": "surrogate key",
    "tenant": "tenant id (the asset's partition)",
    "day": "call day (UTC): when the call started, or when its recording was read if unknown",
    "operator": "operator who took the calls; '*' = the whole team",
    "calls": "number of scored calls",
    "mean_total": "mean weighted total, 0-100",
    "min_total": "lowest weighted total, 0-100",
    "max_total": "highest weighted total, 0-100",
    "audio_s": "seconds of audio processed",
    "cost_usd": "known cost of the calls: llm_cost_usd + speech_cost_usd",
    "llm_cost_usd": (
        "scoring cost: LLM tokens at list price (litellm's price map or the preset's prices; "
        "0 for the rules scorer)"
    ),
    "speech_cost_usd": (
        "speech-to-text cost: a transcription API at list price, 0 on-site; calls whose "
        "speech cost is unknown add nothing (see unpriced_calls)"
    ),
    "unpriced_calls": (
        "calls whose cost is not fully known (an LLM without a price, or no recorded "
        "speech-to-text cost): cost_usd leaves their unknown part out"
    ),
    "mean_evidence_rate": (
        "mean share of the calls' evidence quotes verified against the transcript, 0-1; "
        "NULL if no call cited any"
    ),
    "mean_operator_talk_share": "mean share of talk time taken by the operator, 0-1",
    "mean_silence_ratio": "mean share of the call with nobody speaking, 0-1",
    "interruptions": "interruptions, summed over the calls",
    "criterion": "rubric criterion id (from the preset)",
    "mean_score": "mean criterion score, on the preset's scale (N/A scores left out)",
    "pattern": "pattern id from the preset (e.g. price_objection, cancel_intent)",
    "kind": "the pattern's kind: objection, competitor, intent, forbidden or other",
    "mentions": "times the pattern was found, summed over the calls",
    "share_of_calls": "calls with the pattern / all scored calls of the group, 0-1",
    "updated_at": "when the aggregates were last rebuilt (UTC)",
}

# Where a column means something else in one table than in the others.
TABLE_COLUMN_DESCRIPTIONS = {
    "daily_criterion_aggregates": {"calls": "scored calls in which the criterion applied"},
    "daily_pattern_aggregates": {"calls": "scored calls in which the pattern was found"},
}

PREVIEW_COLUMNS = ("day", "operator", "calls", "mean_total", "min_total", "max_total", "audio_s")


def table_schema(table: sa.Table, descriptions: Mapping[str, str] | None = None) -> dg.TableSchema:
    """The Dagster column schema of a warehouse table, from its SQLAlchemy definition;
    column descriptions from `descriptions` (default: the aggregate tables')."""
    if descriptions is None:
        descriptions = {**COLUMN_DESCRIPTIONS, **TABLE_COLUMN_DESCRIPTIONS.get(table.name, {})}
    unique = {
        c.name
        for constraint in table.constraints
        if isinstance(constraint, sa.UniqueConstraint) and len(constraint.columns) == 1
        for c in constraint.columns
    }
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=column.name,
                type=column.type.__class__.__name__.lower(),
                description=descriptions.get(column.name),
                constraints=dg.TableColumnConstraints(
                    nullable=column.nullable, unique=column.primary_key or column.name in unique
                ),
            )
            for column in table.columns
        ],
        constraints=dg.TableConstraints(
            other=[
                f"unique ({', '.join(c.name for c in constraint.columns)})"
                for constraint in table.constraints
                if isinstance(constraint, sa.UniqueConstraint) and len(constraint.columns) > 1
            ]
        ),
    )


def preview_markdown(rows: list[dict], limit: int = PREVIEW_ROWS) -> str:
    """The first rows of `daily_aggregates` as a Markdown table."""
    if not rows:
        return "_no rows published yet_"
    header = "| " + " | ".join(PREVIEW_COLUMNS) + " |\n|" + "---|" * len(PREVIEW_COLUMNS)
    lines = [
        "| " + " | ".join(_cell(row[c]) for c in PREVIEW_COLUMNS) + " |" for row in rows[:limit]
    ]
    more = f"\n\n_first {limit} of {len(rows)} rows_" if len(rows) > limit else ""
    return "\n".join([header, *lines]) + more


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value).replace("|", "\\|")


def tenant_table_asset(
    fn,
    *,
    name: str,
    tenant_ids: list[str],
    kinds: set[str],
    metadata: dict,
    description: str,
    check_specs: Sequence[dg.AssetCheckSpec] = (),
    partitions_def: dg.PartitionsDefinition | None = None,
) -> dg.AssetsDefinition:
    """A per-tenant analytics table rebuilt from every scored call of the tenant (read back
    from the warehouse), partitioned by the tenants configured when the code loads."""
    return dg.asset(
        name=name,
        partitions_def=partitions_def or tenant_partitions(tenant_ids),
        group_name="aggregates",
        owners=OWNERS,
        tags={"domain": "analytics"},
        kinds=kinds,
        deps=[dg.AssetDep("scored_analysis", partition_mapping=dg.AllPartitionMapping())],
        check_specs=list(check_specs),
        metadata=metadata,
        description=description,
    )(fn)


def build_tenant_aggregates(tenant_ids: list[str]) -> dg.AssetsDefinition:
    """The aggregates asset, partitioned by the tenants configured when the code loads."""
    partitions_def = tenant_partitions(tenant_ids)
    return tenant_table_asset(
        tenant_daily_aggregates,
        name=TENANT_DAILY_AGGREGATES,
        tenant_ids=tenant_ids,
        partitions_def=partitions_def,
        kinds={"sql", "pandas", "great-expectations"},
        check_specs=[
            checks.spec(
                AGGREGATES_EXPECTATIONS,
                TENANT_DAILY_AGGREGATES,
                partitions_def,
                blocking=False,
                description=(
                    "A great-expectations suite over the rows about to be published: unique "
                    "(day, operator[, criterion | pattern]) keys, totals within 0-100 with "
                    "min <= mean <= max, costs >= 0, unpriced calls <= calls, shares and "
                    "evidence rates within 0-1, criterion means within the scale of the "
                    "tenant's presets, pattern mentions >= calls. Write-audit-publish: rows "
                    "that fail are not written, so the tables keep their last good rows "
                    "(nothing is downstream to block)."
                ),
            )
        ],
        metadata={
            "dagster/table_name": "daily_aggregates",
            "dagster/column_schema": table_schema(t.daily_aggregates),
            "criterion_table": "daily_criterion_aggregates",
            "criterion_column_schema": dg.MetadataValue.table_schema(
                table_schema(t.daily_criterion_aggregates)
            ),
            "pattern_table": "daily_pattern_aggregates",
            "pattern_column_schema": dg.MetadataValue.table_schema(
                table_schema(t.daily_pattern_aggregates)
            ),
        },
        description=(
            "One tenant's daily roll-up of its scored calls, in three warehouse tables that "
            "analysts query with plain SQL: `daily_aggregates` (calls, mean/min/max total, "
            "audio seconds, LLM and speech cost, calls of unknown cost, evidence "
            "verification rate, talk share, silence, interruptions), "
            "`daily_criterion_aggregates` (mean score per criterion, N/A left out) and "
            "`daily_pattern_aggregates` (per pattern of the presets: calls where found, "
            "mentions, share of calls), per day, for the whole team (operator '*') and per "
            "operator. Only valid analyses count (an invalid result never reaches them). "
            "Rebuilt from the warehouse and swapped in one transaction, so re-running it is "
            "safe; `tenant_aggregates_sensor` rebuilds a tenant when any of its analyses "
            "changed."
        ),
    )


def tenant_scale(registry: Registry, tenant: str) -> Scale:
    """The widest scale of the tenant's presets: one day's criterion means may mix calls
    scored with several presets (one per call category)."""
    presets = [
        registry.preset(pid) for pid in sorted(set(registry.tenant(tenant).presets.values()))
    ]
    return Scale(min=min(p.scale.min for p in presets), max=max(p.scale.max for p in presets))


def tenant_daily_aggregates(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    tenant = context.partition_key
    wh = warehouse.get()
    analyses = wh.analyses_frame(tenant)
    call_rows, criterion_rows = daily_aggregates(analyses, wh.criterion_frame(tenant))
    pattern_rows = daily_pattern_aggregates(analyses, wh.pattern_frame(tenant))
    report = validate_aggregates(
        call_rows, criterion_rows, tenant_scale(default_registry(), tenant), pattern_rows
    )
    # Write-audit-publish: rows that fail the expectations never replace what analysts
    # query; the failed check (and the log) says why the tables kept their old rows.
    if report.success:
        wh.replace_daily_aggregates(tenant, call_rows, criterion_rows, pattern_rows)
    else:
        context.log.error(
            f"aggregates for tenant {tenant!r} failed {len(report.failures)} expectation(s); "
            "tables left unchanged"
        )
    team = [r for r in call_rows if r["operator"] == ALL_OPERATORS]
    calls = sum(r["calls"] for r in team)
    mean_total = round(sum(r["mean_total"] * r["calls"] for r in team) / calls, 2) if calls else 0.0
    # What analysts see now: the new rows, or the previous ones if these were not published.
    published = wh.daily_aggregates(tenant)
    published_criteria = wh.daily_criterion_aggregates(tenant)
    published_patterns = wh.daily_pattern_aggregates(tenant)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(published),
            "criterion_row_count": len(published_criteria),
            "pattern_row_count": len(published_patterns),
            "preview": dg.MetadataValue.md(preview_markdown(published)),
            "days": len(team),
            "calls": calls,
            "mean_total": mean_total,
            "operators": len({r["operator"] for r in call_rows} - {ALL_OPERATORS}),
            "cost_usd": round(sum(r["cost_usd"] for r in team), 6),
            "unpriced_calls": sum(r["unpriced_calls"] for r in team),
            "rows": len(call_rows) + len(criterion_rows) + len(pattern_rows),
            "published": report.success,
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=AGGREGATES_EXPECTATIONS,
                passed=report.success,
                description=(
                    f"all {report.evaluated} expectations met; rows published"
                    if report.success
                    else f"{len(report.failures)} of {report.evaluated} expectations failed; "
                    "tables left unchanged"
                ),
                metadata={
                    "problem": "; ".join(report.failures[:3]) or "none",
                    "expectations": report.evaluated,
                    "failed": len(report.failures),
                    "failures": "\n".join(report.failures[:10]) or "none",
                },
            )
        ],
    )
