"""The Dagster concurrency pool that bounds how many batches of calls run at once."""

from __future__ import annotations

import dagster as dg

# Transcription is CPU-bound (or GPU-bound): the pool's limit is how many batches of calls
# this deployment runs at once, CALLQA_CALL_SLOTS (default: one per core, each batch then
# transcribing on cores / slots threads). With `granularity: run` in dagster.yaml the queue
# launches a run only when a slot is free, so no worker process sits waiting for one.
CALLS_POOL = "callqa_calls"
POOLS = (CALLS_POOL,)


def ensure_pool_limits(instance: dg.DagsterInstance, limit: int) -> list[str]:
    """Create the pools' limit rows, at `limit` slots, if they are missing.

    Dagster creates them lazily when the first step claims a slot; on PostgreSQL two runs
    doing that at once collide (a unique violation inside an aborted transaction) and one
    run fails. Creating them here, from the sensor that launches runs, before any run
    exists, removes the race. Limits set by an operator (`dagster instance concurrency set`)
    are left as they are. Returns the pools it created.
    """
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return []
    existing = storage.get_concurrency_keys()
    created = [pool for pool in POOLS if pool not in existing]
    for pool in created:
        storage.set_concurrency_slots(pool, limit)
    return created
