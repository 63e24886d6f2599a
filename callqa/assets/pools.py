"""Dagster concurrency pools: rate-limited or CPU-bound steps share a bounded number of slots."""

from __future__ import annotations

import dagster as dg

STT_POOL = "callqa_stt"  # speech-to-text: CPU-bound locally, rate-limited as an API
SCORING_POOL = "callqa_scoring"  # LLM calls: rate-limited by the provider
POOLS = (STT_POOL, SCORING_POOL)


def ensure_pool_limits(instance: dg.DagsterInstance) -> list[str]:
    """Create the pools' limit rows (at the instance's default limit) if they are missing.

    Dagster creates them lazily when the first step claims a slot; on PostgreSQL two runs
    doing that at once collide (a unique violation inside an aborted transaction) and one
    run fails. Creating them here, from the one sensor that launches runs, before any run
    exists, removes the race. Limits set by an operator (`dagster instance concurrency set`)
    are left as they are. Returns the pools it created.
    """
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return []
    existing = storage.get_concurrency_keys()
    created = [pool for pool in POOLS if pool not in existing]
    for pool in created:
        storage.initialize_concurrency_limit_to_default(pool)
    return created
