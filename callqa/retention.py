"""Partition retention: retire the `calls` partitions of old, scored calls.

Dagster advises at most ~100,000 partitions per asset, and every call is one `calls`
partition, so a tenant keeps a partition only for `retention_days` (tenant config). The
daily `retire_call_partitions` job deletes the partitions of calls that are older than that
AND whose analysis is stored in the warehouse. Only the Dagster partition goes: the
warehouse rows (transcripts, analyses, scores, aggregates) and the event log are kept, and
`callqa backfill` re-adds the partitions of any calls it re-processes.
"""

# No `from __future__ import annotations`: Dagster reads the op's config annotation at
# definition time and cannot resolve it from a string.

from collections import defaultdict
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from itertools import islice

import dagster as dg
from pydantic import Field

from callqa.assets.partitions import CALLS_PARTITIONS
from callqa.calls.keys import SEPARATOR
from callqa.resources import WarehouseResource

RETIRE_CALL_PARTITIONS = "retire_call_partitions"
PAGE_SIZE = 500  # call ids per warehouse query (one IN list)

# Runs that have not finished may still read or report on their partitions.
_UNFINISHED = (
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
)
_RANGE_START = "dagster/asset_partition_range_start"
_RANGE_END = "dagster/asset_partition_range_end"


class RetentionConfig(dg.Config):
    max_deletions: int = Field(
        10_000,
        ge=0,
        description=(
            "Partitions deleted per run at most (each is one statement on the instance "
            "database); the next run carries on where this one stopped."
        ),
    )
    dry_run: bool = Field(False, description="Count what would be retired, delete nothing.")


def _batched(items: Sequence[str], size: int) -> Iterator[list[str]]:
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch


def busy_partitions(instance: dg.DagsterInstance, ordered_keys: Sequence[str]) -> set[str]:
    """`calls` partitions that an unfinished run targets, one key or a range of keys (a range
    of dynamic partitions follows the order in which they were added)."""
    position = {key: i for i, key in enumerate(ordered_keys)}
    busy: set[str] = set()
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=list(_UNFINISHED))):
        if key := run.tags.get("dagster/partition"):
            busy.add(key)
        start, end = run.tags.get(_RANGE_START), run.tags.get(_RANGE_END)
        if start in position and end in position:
            busy.update(ordered_keys[position[start] : position[end] + 1])
    return busy


def backfills_in_progress(instance: dg.DagsterInstance) -> int:
    # An asset backfill's targets are only readable with the asset graph; rather than
    # risk deleting a partition a backfill is about to run, retention waits for it.
    from dagster._core.execution.backfill import BulkActionsFilter, BulkActionStatus

    statuses = [BulkActionStatus.REQUESTED, BulkActionStatus.CANCELING, BulkActionStatus.FAILING]
    return instance.get_backfills_count(filters=BulkActionsFilter(statuses=statuses))


def _retire_tenant(
    instance: dg.DagsterInstance,
    warehouse,
    tenant,
    external_ids: list[str],
    busy: set[str],
    budget: int,
    dry_run: bool,
) -> dict[str, int]:
    """Retire one tenant's retirable partitions, at most `budget` of them; return counts."""
    before = datetime.now(UTC).date() - timedelta(days=tenant.retention_days)
    found = retired = skipped_busy = 0
    for page in _batched(sorted(external_ids), PAGE_SIZE):
        keys = warehouse.retirable_partition_keys(tenant.id, before, among=page, limit=len(page))
        found += len(keys)
        for key in keys:
            if key in busy:
                skipped_busy += 1
            elif retired < budget:
                if not dry_run:
                    instance.delete_dynamic_partition(CALLS_PARTITIONS, key)
                retired += 1
    return {
        "partitions": len(external_ids),
        "retirable": found,
        "retired": retired,
        "skipped_busy": skipped_busy,
        "kept": len(external_ids) - retired,
        "before": before.isoformat(),
    }


@dg.op(
    name="retire_old_call_partitions",
    description=(
        "For every tenant: delete the `calls` partitions of calls older than the tenant's "
        "retention_days whose analysis is stored in the warehouse. Warehouse rows are kept."
    ),
)
def retire_old_call_partitions(
    context: dg.OpExecutionContext, config: RetentionConfig, warehouse: WarehouseResource
) -> dg.Output[dict]:
    from callqa.config.registry import default_registry

    instance = context.instance
    tenants = default_registry().tenants
    # One read of the partition list: its size (what retention keeps under ~100k) bounds a
    # run's work, however many calls the warehouse has kept over the years.
    existing = list(instance.get_dynamic_partitions(CALLS_PARTITIONS))
    by_tenant: dict[str, list[str]] = defaultdict(list)
    for key in existing:
        tenant_id, _, external_id = key.partition(SEPARATOR)
        by_tenant[tenant_id].append(external_id)

    running_backfills = backfills_in_progress(instance)
    if running_backfills:
        context.log.warning(
            f"{running_backfills} backfill(s) in progress: no partition is retired this run"
        )
    busy = busy_partitions(instance, existing)
    left = 0 if running_backfills else config.max_deletions
    counts: dict[str, dict] = {}
    for tenant in sorted(tenants.values(), key=lambda t: t.id):
        c = _retire_tenant(
            instance,
            warehouse.get(),
            tenant,
            by_tenant.get(tenant.id, []),
            busy,
            left,
            config.dry_run,
        )
        left -= c["retired"]
        counts[tenant.id] = c
        context.log.info(
            f"tenant {tenant.id}: {c['retired']} of {c['retirable']} retirable partition(s) "
            f"{'would be ' if config.dry_run else ''}retired (scored calls before "
            f"{c['before']}, retention {tenant.retention_days} d), {c['skipped_busy']} kept "
            f"for unfinished runs; {c['kept']} of {c['partitions']} partition(s) kept"
        )
    if sum(c["retirable"] - c["skipped_busy"] - c["retired"] for c in counts.values()):
        context.log.info(f"max_deletions ({config.max_deletions}) reached; the next run goes on")
    unknown = sorted(set(by_tenant) - set(tenants))
    if unknown:
        # A tenant removed from the config: its partitions stay until someone decides.
        context.log.warning(f"partitions of unconfigured tenants left alone: {', '.join(unknown)}")

    total = sum(c["retired"] for c in counts.values())
    metadata: dict[str, dg.RawMetadataValue] = {
        "retired": total,
        "partitions_before": len(existing),
        "partitions_after": len(existing) - (0 if config.dry_run else total),
        "backfills_in_progress": running_backfills,
        "dry_run": config.dry_run,
    }
    for tenant_id, c in counts.items():
        metadata[f"{tenant_id}/retired"] = c["retired"]
        metadata[f"{tenant_id}/kept"] = c["kept"]
    return dg.Output(counts, metadata=metadata)


@dg.job(
    name=RETIRE_CALL_PARTITIONS,
    description=(
        "Delete the Dagster `calls` partitions of scored calls older than their tenant's "
        "retention_days (warehouse rows are never deleted; `callqa backfill` re-adds them)."
    ),
    # One short op of SQL statements: a subprocess per step would cost more than the work.
    executor_def=dg.in_process_executor,
    tags={"callqa/maintenance": "retention"},
)
def retire_call_partitions() -> None:
    retire_old_call_partitions()


retire_call_partitions_schedule = dg.ScheduleDefinition(
    name="retire_call_partitions_schedule",
    job=retire_call_partitions,
    cron_schedule="17 3 * * *",  # daily, off the hour, when few calls arrive
    execution_timezone="UTC",
    # RUNNING: without it a deployment drifts past Dagster's ~100k partitions with nobody
    # noticing, and it is safe unattended: it only touches calls whose analysis is in the
    # warehouse, deletes no warehouse row and no event, skips calls that unfinished runs or
    # backfills may need, and re-adding a key brings the partition back (`callqa backfill`
    # does so for the calls it selects).
    default_status=dg.DefaultScheduleStatus.RUNNING,
)


def build_retention_defs() -> tuple[list[dg.JobDefinition], list[dg.ScheduleDefinition]]:
    """The retention job and its daily schedule, for `callqa/definitions.py`."""
    return [retire_call_partitions], [retire_call_partitions_schedule]
