"""Turn newly staged calls into `calls` partitions and runs, for auto-process tenants."""

from __future__ import annotations

import json

import dagster as dg

from callqa.assets.partitions import calls_partitions
from callqa.assets.pools import ensure_pool_limits
from callqa.calls.keys import make_key
from callqa.config.registry import default_registry
from callqa.jobs import process_call_job, tenant_aggregates_job
from callqa.resources import WarehouseResource

# Bounded work per tick keeps ticks fast; the next tick picks up the rest.
MAX_CALLS_PER_TICK = 200


def build_staged_calls_sensor(interval_s: int = 30) -> dg.SensorDefinition:
    @dg.sensor(
        name="staged_calls_sensor",
        job=process_call_job,
        minimum_interval_seconds=interval_s,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def staged_calls_sensor(
        context: dg.SensorEvaluationContext, warehouse: WarehouseResource
    ) -> dg.SensorResult:
        """Cursor: the highest staged_calls.id already handed to a run."""
        last_id = int(context.cursor or 0)
        auto = [t.id for t in default_registry().tenants.values() if t.auto_process]
        if not auto:
            return dg.SensorResult(skip_reason="no tenant has auto_process on")
        rows = warehouse.get().staged_calls_after(last_id, auto, MAX_CALLS_PER_TICK)
        if not rows:
            return dg.SensorResult(skip_reason="no newly staged calls", cursor=str(last_id))
        created = ensure_pool_limits(context.instance)
        if created:
            context.log.info(f"created concurrency pool limits: {', '.join(created)}")
        keys = [make_key(r["tenant"], r["external_id"]).partition_key for r in rows]
        context.log.info(f"{len(keys)} staged call(s) to process")
        return dg.SensorResult(
            # Adding a key that exists is a no-op in Dagster (a re-staged call keeps its
            # partition), so there is no need to load the whole partition list every tick.
            dynamic_partitions_requests=[calls_partitions.build_add_request(keys)],
            run_requests=[
                dg.RunRequest(
                    partition_key=k,
                    run_key=f"{k}#{r['id']}",
                    tags={"callqa/tenant": r["tenant"]},
                )
                for k, r in zip(keys, rows, strict=True)
            ],
            cursor=str(rows[-1]["id"]),
        )

    return staged_calls_sensor


def build_tenant_aggregates_sensor(interval_s: int = 120) -> dg.SensorDefinition:
    @dg.sensor(
        name="tenant_aggregates_sensor",
        job=tenant_aggregates_job,
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
