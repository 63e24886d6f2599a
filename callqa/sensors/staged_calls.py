"""Turn newly staged calls into `calls` partitions and runs, for auto-process tenants."""

import json

import dagster as dg
import sqlalchemy as sa

from callqa.assets.partitions import calls_partitions
from callqa.config.registry import default_registry
from callqa.jobs import process_call_job, tenant_aggregates_job
from callqa.keys import make_key
from callqa.resources import WarehouseResource
from callqa.storage import tables as t

# Bounded work per tick keeps ticks fast; the next tick picks up the rest.
MAX_CALLS_PER_TICK = 200


@dg.sensor(
    job=process_call_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING
)
def staged_calls_sensor(
    context: dg.SensorEvaluationContext, warehouse: WarehouseResource
) -> dg.SensorResult:
    """Cursor: the highest staged_calls.id already handed to a run."""
    last_id = int(context.cursor or 0)
    auto = [t_.id for t_ in default_registry().tenants.values() if t_.auto_process]
    if not auto:
        return dg.SensorResult(skip_reason="no tenant has auto_process on")
    with warehouse.get().engine.connect() as conn:
        rows = conn.execute(
            sa.select(t.staged_calls.c.id, t.staged_calls.c.tenant, t.staged_calls.c.external_id)
            .where(
                t.staged_calls.c.id > last_id,
                t.staged_calls.c.tenant.in_(auto),
                t.staged_calls.c.status == "staged",
            )
            .order_by(t.staged_calls.c.id)
            .limit(MAX_CALLS_PER_TICK)
        ).all()
    if not rows:
        return dg.SensorResult(skip_reason="no newly staged calls", cursor=str(last_id))
    keys = [make_key(r.tenant, r.external_id).partition_key for r in rows]
    context.log.info(f"{len(keys)} staged call(s) to process")
    return dg.SensorResult(
        # Adding a key that exists is a no-op in Dagster (a re-staged call keeps its
        # partition), so there is no need to load the whole partition list every tick.
        dynamic_partitions_requests=[calls_partitions.build_add_request(keys)],
        run_requests=[
            dg.RunRequest(partition_key=k, run_key=f"{k}#{r.id}", tags={"callqa/tenant": r.tenant})
            for k, r in zip(keys, rows, strict=True)
        ],
        cursor=str(rows[-1].id),
    )


@dg.sensor(
    job=tenant_aggregates_job,
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def tenant_aggregates_sensor(
    context: dg.SensorEvaluationContext, warehouse: WarehouseResource
) -> dg.SensorResult:
    """Rebuild a tenant's aggregates when any of its analyses changed since the last build."""
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    with warehouse.get().engine.connect() as conn:
        latest = conn.execute(
            sa.select(t.analyses.c.tenant, sa.func.max(t.analyses.c.updated_at)).group_by(
                t.analyses.c.tenant
            )
        ).all()
    known = set(default_registry().tenants)
    changed = {
        tenant: str(ts) for tenant, ts in latest if tenant in known and seen.get(tenant) != str(ts)
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
