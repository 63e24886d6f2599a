"""A re-score backfill of 1,000 calls on the production path: submitted with `callqa
backfill --assets scored_analysis` (the GraphQL mutation the UI uses), run by the daemon
on the repository's dagster.yaml (PostgreSQL) in runs of many calls under the pool's bound,
with one run worker SIGKILLed mid-run. Every call ends scored exactly once, nothing is
transcribed again, and no more runs than the pool allows are ever in progress."""

from __future__ import annotations

import os
import signal
import time
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.execution.backfill import BulkActionStatus

from callqa.storage import tables as t
from callqa.storage.warehouse import Warehouse
from tests.builders import SHORT_SALES_CALL, diarized, timed
from tests.production_path import (
    TENANT,
    Daemon,
    callqa_cli,
    open_instance,
    pg_databases,
    production_env,
    runs_summary,
    wait_for,
    worker_pid,
)

CALLS = 1000
CALLS_PER_RUN = 100
SLOTS = 2
SCORED = dg.AssetKey("scored_analysis")


def _transcribed_calls(url: str, count: int) -> list[str]:
    """`count` calls as the pipeline leaves them after diarization (staged, probed,
    transcribed), written in bulk: the backfill re-scores them."""
    Warehouse.from_url(url).dispose()  # migrations
    transcript = diarized(timed(SHORT_SALES_CALL)).model_dump(mode="json")
    now = datetime.now(UTC)
    ids = [f"hist-{i:04}" for i in range(count)]
    started = [now - timedelta(days=30, minutes=i) for i in range(count)]
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            t.staged_calls.insert(),
            [
                {
                    "tenant": TENANT,
                    "external_id": e,
                    "source": "file",
                    "source_uri": f"file:///archive/{e}.flac",
                    "status": "processed",
                    "operator": "anna",
                    "category": "sales",
                    "started_at": s,
                    "staged_at": now,
                    "updated_at": now,
                }
                for e, s in zip(ids, started, strict=True)
            ],
        )
        conn.execute(
            t.calls.insert(),
            [
                {
                    "tenant": TENANT,
                    "external_id": e,
                    "partition_key": f"{TENANT}__{e}",
                    "audio_uri": f"file:///archive/{e}.flac",
                    "sha256": f"{i:064x}",
                    "size_bytes": 1000,
                    "codec": "flac",
                    "container": "flac",
                    "channels": 2,
                    "sample_rate": 16000,
                    "duration_s": 40.0,
                    "category": "sales",
                    "operator": "anna",
                    "started_at": s,
                    "updated_at": now,
                }
                for i, (e, s) in enumerate(zip(ids, started, strict=True))
            ],
        )
        conn.execute(
            t.transcripts.insert(),
            [
                {
                    "tenant": TENANT,
                    "external_id": e,
                    "stage": "diarized",
                    "model": "tiny.en",
                    "language": "en",
                    "word_count": 100,
                    "data": transcript,
                    "updated_at": now,
                }
                for e in ids
            ],
        )
    engine.dispose()
    return [f"{TENANT}__{e}" for e in ids]


def _count(url: str, table: sa.Table) -> int:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        n = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
    engine.dispose()
    return n


@pytest.mark.daemon
@pytest.mark.slow
@pytest.mark.postgres
def test_rescore_backfill_of_1000_calls_survives_a_killed_worker(
    pg_server_url, tmp_path, monkeypatch
):
    t0 = time.perf_counter()
    with pg_databases(pg_server_url, "dagster", "warehouse") as (dagster_db, warehouse_db):
        keys = _transcribed_calls(warehouse_db, CALLS)
        transcripts_before = _count(warehouse_db, t.transcripts)
        home, env = production_env(
            tmp_path,
            dagster_db,
            warehouse_db,
            monkeypatch,
            CALLQA_CALLS_PER_RUN=str(CALLS_PER_RUN),
            CALLQA_CALL_SLOTS=str(SLOTS),
            CALLQA_AGGREGATES_INTERVAL_S="3600",
        )
        backfill_id = callqa_cli(
            env, "backfill", "--tenant", TENANT, "--assets", "scored_analysis"
        ).strip()
        with open_instance(home) as instance:  # the CLI created the pool at CALLQA_CALL_SLOTS
            limit = instance.event_log_storage.get_concurrency_info("callqa_calls").slot_count
            assert limit == SLOTS
        daemon = Daemon(env, tmp_path / "daemon.log")
        most_in_progress, killed = 0, None
        try:
            with open_instance(home) as instance:

                def explain() -> str:
                    return f"\nruns:\n{runs_summary(instance)}\ndaemon:\n{daemon.tail(40)}"

                def in_progress() -> list[dg.DagsterRun]:
                    return instance.get_runs(
                        filters=dg.RunsFilter(
                            tags={"dagster/backfill": backfill_id},
                            statuses=[dg.DagsterRunStatus.STARTED],
                        )
                    )

                def scored() -> int:
                    return len(instance.get_materialized_partitions(SCORED))

                def kill_one_mid_run() -> bool:
                    """SIGKILL a run worker that has scored some of its calls, not all."""
                    nonlocal most_in_progress, killed
                    running = in_progress()
                    most_in_progress = max(most_in_progress, len(running))
                    for run in running:
                        done = [
                            e
                            for e in instance.all_logs(
                                run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
                            )
                        ]
                        pid = worker_pid(instance, run.run_id)
                        if pid and 10 <= len(done) < CALLS_PER_RUN - 10:
                            os.kill(pid, signal.SIGKILL)
                            killed = run.run_id
                            return True
                    return False

                wait_for(kill_one_mid_run, 300, explain, poll_s=0.2)

                def finished() -> bool:
                    nonlocal most_in_progress
                    most_in_progress = max(most_in_progress, len(in_progress()))
                    backfill = instance.get_backfill(backfill_id)
                    return scored() == CALLS and backfill.status != BulkActionStatus.REQUESTED

                wait_for(finished, 600, explain, poll_s=1)
                backfill = instance.get_backfill(backfill_id)
                runs = instance.get_runs(
                    filters=dg.RunsFilter(tags={"dagster/backfill": backfill_id})
                )
                retries = [r for r in runs if r.tags.get("dagster/parent_run_id") == killed]
                events = instance.fetch_materializations(SCORED, limit=CALLS * 3).records
                transcribed = instance.fetch_materializations(
                    dg.AssetKey("transcript"), limit=10
                ).records
                summary = runs_summary(instance)
        finally:
            daemon.stop()
        analyses = _count(warehouse_db, t.analyses)
        transcripts_after = _count(warehouse_db, t.transcripts)
    wall = time.perf_counter() - t0

    # Bounded: never more runs in progress than the pool has slots; batches of 100 calls.
    assert 1 <= most_in_progress <= SLOTS, summary
    first_attempts = [r for r in runs if "dagster/parent_run_id" not in r.tags]
    assert len(first_attempts) == CALLS // CALLS_PER_RUN, summary
    # The killed run failed and was retried once; the retry succeeded.
    assert next(r for r in runs if r.run_id == killed).status == dg.DagsterRunStatus.FAILURE
    assert [r.status for r in retries] == [dg.DagsterRunStatus.SUCCESS], summary
    assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs if r.run_id != killed), summary
    # Nothing lost, nothing duplicated: one materialization and one analysis per call.
    assert sorted(e.partition_key for e in events) == sorted(keys)
    assert analyses == CALLS
    # A re-score does not transcribe again.
    assert not transcribed and transcripts_after == transcripts_before
    print(
        f"\n[backfill] {CALLS} calls re-scored in {len(first_attempts)} runs (+1 retry) in "
        f"{wall:.0f} s; at most {most_in_progress} runs in progress; backfill status "
        f"{backfill.status.value}"
    )
    assert not daemon.error_lines() or all(
        "SIGKILL" in line or "is gone" in line or killed[:8] in line
        for line in daemon.error_lines()
    ), "\n".join(daemon.error_lines()[:20])
