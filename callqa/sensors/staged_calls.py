"""Turn newly staged calls into `calls` partitions and runs, for auto-process tenants.

Calls are grouped into runs of several partitions: one run per call paid a process start,
imports and a speech-model load for every call, which dominated short calls. A run targets
a contiguous range of `calls` partitions (Dagster's partition-range runs: the order is the
order keys were added), never mixes tenants, and holds at most CALLQA_CALLS_PER_RUN calls;
a small tick is spread over CALLQA_CALL_SLOTS runs so every slot has work.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import dagster as dg
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from callqa.assets.partitions import CALLS_PARTITIONS
from callqa.assets.pools import ensure_pool_limits
from callqa.calls.keys import make_key, parse_key
from callqa.config.registry import default_registry
from callqa.errors import PartitionKeyError
from callqa.jobs import PROCESS_CALL, TENANT_AGGREGATES
from callqa.resources import WarehouseResource

# Bounded work per tick keeps ticks fast; the next tick picks up the rest.
MAX_CALLS_PER_TICK = 1000


def batch_size(calls: int, calls_per_run: int, call_slots: int) -> int:
    """Calls per run: as few runs as `calls_per_run` allows, in a multiple of the slots so
    that every slot has a run and the last round leaves none idle."""
    runs = max(call_slots, math.ceil(calls / calls_per_run))
    runs = math.ceil(runs / call_slots) * call_slots
    return max(1, math.ceil(calls / runs))


def contiguous_batches(
    keys: Sequence[str], order: dict[str, int], tenant_of: dict[str, str], size: int
) -> list[list[str]]:
    """Split `keys` into runs of at most `size` keys that are adjacent in the partition
    order and share a tenant: a range run covers every key between its ends, so a range
    may only span keys that are all due (a re-staged call sits where it was first added)."""
    batches: list[list[str]] = []
    for key in sorted(keys, key=order.__getitem__):
        current = batches[-1] if batches else None
        if (
            current
            and len(current) < size
            and order[key] == order[current[-1]] + 1
            and tenant_of[key] == tenant_of[current[-1]]
        ):
            current.append(key)
        else:
            batches.append([key])
    return batches


def _run_request(batch: list[str], tenant: str, first_id: int) -> dg.RunRequest:
    tags = {"callqa/tenant": tenant, "callqa/calls": str(len(batch))}
    # The staged row id makes the key new when a call is staged again (`callqa retry`).
    run_key = f"{batch[0]}..{batch[-1]}#{first_id}"
    if len(batch) == 1:
        return dg.RunRequest(run_key=run_key, partition_key=batch[0], tags=tags)
    return dg.RunRequest(
        run_key=run_key,
        tags={
            **tags,
            ASSET_PARTITION_RANGE_START_TAG: batch[0],
            ASSET_PARTITION_RANGE_END_TAG: batch[-1],
        },
    )


def build_staged_calls_sensor(
    interval_s: int = 30, calls_per_run: int = 24, call_slots: int = 2
) -> dg.SensorDefinition:
    @dg.sensor(
        name="staged_calls_sensor",
        job_name=PROCESS_CALL,
        minimum_interval_seconds=interval_s,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def staged_calls_sensor(
        context: dg.SensorEvaluationContext, warehouse: WarehouseResource
    ) -> dg.SensorResult:
        """Cursor: the highest staged_calls.id already seen.

        Every newly staged call becomes a `calls` partition, so it shows in the UI and can
        be materialized from there. Runs are launched for calls of auto_process tenants and
        for calls an admin approved at the staging gate (`callqa stage approve`, which gives
        the call a new id past the cursor); other tenants' calls wait at the gate.
        """
        last_id = int(context.cursor or 0)
        tenants = default_registry().tenants
        rows = warehouse.get().staged_calls_after(last_id, list(tenants), MAX_CALLS_PER_TICK)
        if not rows:
            return dg.SensorResult(skip_reason="no newly staged calls", cursor=str(last_id))
        instance = context.instance
        first_id: dict[str, int] = {}
        tenant_of: dict[str, str] = {}
        due: set[str] = set()
        for r in rows:  # a call staged twice since the cursor is one call
            try:
                key = make_key(r["tenant"], r["external_id"]).partition_key
            except PartitionKeyError as exc:  # staged by an older version: never block others
                context.log.error(f"staged call {r['id']} skipped: {exc}")
                continue
            first_id.setdefault(key, r["id"])
            tenant_of[key] = r["tenant"]
            if r["status"] == "approved" or tenants[r["tenant"]].auto_process:
                due.add(key)
        keys = list(first_id)
        # Added here, not through SensorResult, because a range run needs the keys' places
        # in the partition order; adding a key that exists is a no-op.
        instance.add_dynamic_partitions(CALLS_PARTITIONS, keys)
        cursor = str(rows[-1]["id"])
        waiting = len(keys) - len(due)
        gate = f"; {waiting} call(s) wait at the staging gate" if waiting else ""
        if not due:
            return dg.SensorResult(
                skip_reason=f"{len(keys)} call(s) added as partitions{gate}", cursor=cursor
            )
        created = ensure_pool_limits(instance, call_slots)
        if created:
            context.log.info(f"created concurrency pool limits: {', '.join(created)}")
        order = {k: i for i, k in enumerate(instance.get_dynamic_partitions(CALLS_PARTITIONS))}
        due_keys = [k for k in keys if k in due]
        size = batch_size(len(due_keys), calls_per_run, call_slots)
        batches = contiguous_batches(due_keys, order, tenant_of, size)
        context.log.info(
            f"{len(due_keys)} staged call(s) to process in {len(batches)} run(s){gate}"
        )
        # 'queued': handed to a run, so the staging gate no longer lists or approves them.
        wh = warehouse.get()
        for tenant_id in {tenant_of[k] for k in due_keys}:
            wh.set_staged_status(
                tenant_id,
                [parse_key(k).external_id for k in due_keys if tenant_of[k] == tenant_id],
                "queued",
            )
        return dg.SensorResult(
            run_requests=[
                _run_request(b, tenant_of[b[0]], min(first_id[k] for k in b)) for b in batches
            ],
            cursor=cursor,
        )

    return staged_calls_sensor


def build_tenant_aggregates_sensor(interval_s: int = 120) -> dg.SensorDefinition:
    @dg.sensor(
        name="tenant_aggregates_sensor",
        job_name=TENANT_AGGREGATES,
        minimum_interval_seconds=interval_s,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def tenant_aggregates_sensor(
        context: dg.SensorEvaluationContext, warehouse: WarehouseResource
    ) -> dg.SensorResult:
        """Rebuild a tenant's aggregates when any of its analyses changed since the last build."""
        seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
        latest = warehouse.get().latest_analysis_times()
        known = set(default_registry().tenants)
        changed = {
            tenant: str(ts)
            for tenant, ts in latest.items()
            if tenant in known and seen.get(tenant) != str(ts)
        }
        if not changed:
            return dg.SensorResult(skip_reason="no new analyses", cursor=json.dumps(seen))
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(partition_key=tenant, run_key=f"{tenant}@{ts}")
                for tenant, ts in changed.items()
            ],
            cursor=json.dumps({**seen, **changed}),
        )

    return tenant_aggregates_sensor
