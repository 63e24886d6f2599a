"""CALLQA_EXECUTOR=celery: two dagster-celery workers share one backfill.

As an operator runs it: the repository's dagster.yaml on a throwaway PostgreSQL instance, a
throwaway PostgreSQL warehouse, Redis as broker and result backend, two `celery -A
dagster_celery.app worker` processes with distinct node names (docs/deployment-celery.md),
calls staged with `callqa stage`, one backfill submitted with `callqa backfill`, and
`dagster-daemon run` launching its runs. Each run's one step (the batch of calls) executes
in whichever worker takes it; the run's event log names that worker. Plus fast checks of the
settings and the executor: the broker URL is read by name, never stored or shown.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml
from dagster._core.execution.backfill import BulkActionStatus

from callqa.config.registry import BUNDLED_DIR
from callqa.errors import ConfigError
from callqa.executors import executor_for
from callqa.settings import load_settings
from tests.paths import DEMO_CALLS, ROOT
from tests.production_path import (
    BIN,
    TENANT,
    Daemon,
    WarehouseProbe,
    callqa_cli,
    open_instance,
    pg_databases,
    production_env,
    runs_summary,
    wait_for,
)

REDIS_URL = os.environ.get("CALLQA_TEST_REDIS_URL", "redis://127.0.0.1:6379")
# Databases this test may claim, one per concurrent test session (Redis has 0-15).
REDIS_DBS = range(15, 7, -1)
REDIS_LOCK = "callqa-test:celery:lock"
# The four shortest bundled calls (30-47 s), two per run: two runs, one for each worker.
CALLS = [DEMO_CALLS / f"call-00{n}.flac" for n in (6, 5, 2, 1)]
CALLS_PER_RUN = 2
WORKERS = ("callqa-w1", "callqa-w2")
SECRET_BROKER = "redis://default:s3cret-pw@redis.internal:6379/0"
# Asset backfills (and materializations from the UI) run Dagster's implicit asset job, whose
# executor is the one given to dg.Definitions, not process_call's.
# The metadata of the engine event a worker sends as it starts a step ("Executing steps ...
# in celery worker"): the worker's node name.
CELERY_WORKER = "Celery worker"


@contextmanager
def redis_db(base_url: str) -> Iterator[str]:
    """A Redis database of this test's own: the first of REDIS_DBS whose lock it takes (so
    two test sessions on one Redis never share a queue), flushed before and after. Yields
    its URL with a password (a server without one accepts any for user `default`), so the
    test can look for that secret where it must not be."""
    import redis

    token = uuid.uuid4().hex
    parts = urlsplit(base_url)
    if not parts.password:
        host = parts.netloc.rpartition("@")[2]
        parts = parts._replace(netloc=f"default:callqa-secret-{token[:12]}@{host}")
    for db in REDIS_DBS:
        client = redis.Redis.from_url(f"{base_url}/{db}")
        try:
            taken = client.set(REDIS_LOCK, token, nx=True, ex=600)
        except redis.ConnectionError as exc:
            client.close()
            pytest.fail(f"Redis at {base_url} is not reachable ({exc}); set CALLQA_TEST_REDIS_URL")
        if not taken:
            client.close()
            continue
        try:
            with client.pipeline(transaction=True) as pipe:  # what a crashed run left behind
                pipe.flushdb().set(REDIS_LOCK, token, ex=600).execute()
            yield urlunsplit(parts._replace(path=f"/{db}"))
        finally:
            client.flushdb()
            client.close()
        return
    pytest.fail(f"every Redis database {REDIS_DBS.stop + 1}-{REDIS_DBS.start} is in use")


class CeleryWorker(Daemon):
    """`celery -A dagster_celery.app worker` as docs/deployment-celery.md starts one: one
    task at a time and none fetched ahead (a busy worker leaves the next run's step to an
    idle one), in its own process group (the prefork child too), logging to a file."""

    def __init__(self, name: str, env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        self._log_file = log.open("ab")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [str(BIN / "celery"), "-A", "dagster_celery.app", "worker", "-n", f"{name}@%h"]
            + ["-Q", "dagster", "--concurrency", "1", "--prefetch-multiplier", "1"]
            + ["--disable-prefetch", "-l", "INFO"],
            cwd=ROOT,
            env={
                **env,
                "CELERY_BROKER_URL": env["CALLQA_CELERY_BROKER"],
                "CELERY_RESULT_BACKEND": env["CALLQA_CELERY_BROKER"],
            },
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def ready(self) -> bool:
        assert self.proc.poll() is None, f"worker {self.name} exited:\n{self.tail()}"
        return f"{self.name}@" in self.text() and " ready." in self.text()

    def tasks_succeeded(self) -> int:
        return sum("Task execute_plan[" in line and "succeeded" in line for line in self.lines())

    def lines(self) -> list[str]:
        return self.text().splitlines()


def celery_steps(instance: dg.DagsterInstance, run_id: str) -> list[tuple[str, str]]:
    """(step key, worker node name) for each step a celery worker executed in the run."""
    found = []
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        event = entry.dagster_event
        worker = event.engine_event_data.metadata.get(CELERY_WORKER) if event else None
        if worker is not None:
            found.append((event.step_key, worker.value))
    return found


def scored_materializations(instance: dg.DagsterInstance) -> Counter:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("scored_analysis")), limit=1000
    ).records
    return Counter(r.partition_key for r in records)


def analysis_rows(url: str) -> Counter:
    from callqa.storage import tables

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            ids = conn.execute(
                sa.select(tables.analyses.c.external_id).where(tables.analyses.c.tenant == TENANT)
            ).scalars()
            return Counter(ids)
    finally:
        engine.dispose()


def manual_tenant(config_dir: Path) -> Path:
    """The demo tenant with auto_process off, so that staged_calls_sensor launches nothing
    and the backfill alone processes the calls."""
    tenant = yaml.safe_load((BUNDLED_DIR / "tenants" / f"{TENANT}.yaml").read_text())
    (config_dir / "tenants").mkdir(parents=True)
    (config_dir / "tenants" / f"{TENANT}.yaml").write_text(
        yaml.safe_dump({**tenant, "auto_process": False})
    )
    return config_dir


@pytest.mark.daemon
@pytest.mark.slow
@pytest.mark.postgres
def test_two_celery_workers_share_a_backfill(pg_server_url, tmp_path, monkeypatch):
    t0 = time.perf_counter()
    with (
        redis_db(REDIS_URL) as broker,
        pg_databases(pg_server_url, "dagster", "warehouse") as (dagster_db, warehouse_db),
    ):
        home, env = production_env(
            tmp_path,
            dagster_db,
            warehouse_db,
            monkeypatch,
            CALLQA_CONFIG_DIR=manual_tenant(tmp_path / "config"),
            CALLQA_EXECUTOR="celery",
            CALLQA_CELERY_BROKER=broker,
            CALLQA_CALLS_PER_RUN=str(CALLS_PER_RUN),  # the backfill's runs (BackfillPolicy)
            CALLQA_CALL_SLOTS="2",  # two runs at once: one per worker
            CALLQA_SENSOR_INTERVAL_S="1",
            CALLQA_AGGREGATES_INTERVAL_S="3600",  # only the backfill's runs compete
        )
        # The workers start while the calls are staged and the backfill submitted.
        workers = [CeleryWorker(n, env, tmp_path / f"{n}.log") for n in WORKERS]
        probe = WarehouseProbe(warehouse_db)
        daemon = None
        try:
            callqa_cli(env, "stage", *CALLS, "--tenant", TENANT)
            backfill_id = callqa_cli(env, "backfill", "--tenant", TENANT).strip()
            wait_for(lambda: all(w.ready() for w in workers), 60, lambda: _logs(workers))
            daemon = Daemon(env, tmp_path / "daemon.log")
            with open_instance(home) as instance:

                def explain() -> str:
                    return (
                        f"\n{probe.describe()}\nruns:\n{runs_summary(instance)}\n"
                        f"{_logs([*workers, daemon])}"
                    )

                def backfill_runs() -> list[dg.DagsterRun]:
                    return instance.get_runs(
                        filters=dg.RunsFilter(tags={"dagster/backfill": backfill_id})
                    )

                # The backfill's runs, not its status: the daemon marks it complete on its
                # next 30 s iteration, which would only add to the wait.
                def backfill_done() -> bool:
                    runs = backfill_runs()
                    return len(runs) == len(CALLS) // CALLS_PER_RUN and all(
                        r.is_finished for r in runs
                    )

                wait_for(backfill_done, 150, explain, poll_s=1)
                wall_s = time.perf_counter() - t0
                runs = backfill_runs()
                assert instance.get_backfill(backfill_id).status not in (
                    BulkActionStatus.FAILED,
                    BulkActionStatus.COMPLETED_FAILED,
                ), explain()
                assert all(r.is_finished for r in instance.get_runs()), explain()
                assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs), explain()
                # Which worker ran which run: each run's one step, executed once, in a worker.
                ran_by = {r.run_id: celery_steps(instance, r.run_id) for r in runs}
                summary = "\n".join(
                    f"  run {r.run_id[:8]} {_calls_of(r)}: {ran_by[r.run_id]}" for r in runs
                )
                steps = Counter((run_id, step) for run_id, s in ran_by.items() for step, _ in s)
                assert steps and set(steps.values()) == {1}, summary
                assert all(ran_by.values()), summary
                per_worker = Counter(
                    worker.split("@")[0] for s in ran_by.values() for _, worker in s
                )
                assert set(per_worker) == set(WORKERS), summary
                # The workers' own logs agree: as many tasks each as the runs say.
                assert {w.name: w.tasks_succeeded() for w in workers} == dict(per_worker), summary
                # Every call analysed, its analysis stored and materialized exactly once.
                keys = {f"{TENANT}__{p.stem}" for p in CALLS}
                assert scored_materializations(instance) == dict.fromkeys(keys, 1), summary
            assert analysis_rows(warehouse_db) == {p.stem: 1 for p in CALLS}
            assert all(r["status"] == "processed" and not r["error"] for r in probe.staged())
        finally:
            for process in [*workers, daemon]:
                if process is not None:
                    process.stop()
            probe.dispose()
        for process in [*workers, daemon]:
            errors = process.error_lines()
            assert not errors, f"{process.log.name} has errors:\n" + "\n".join(errors[:40])
        # The broker's password is in no log, no file under DAGSTER_HOME (compute logs, run
        # storage) and nowhere in the instance's database (run config, events, snapshots).
        password = urlsplit(broker).password
        leaks = [p for p in tmp_path.rglob("*") if p.is_file() and password in _text(p)]
        assert not leaks, leaks
        assert password not in _database_text(dagster_db)
    print(
        f"\n[celery] wall {wall_s:.1f} s for {len(CALLS)} calls in {len(runs)} runs; "
        f"tasks per worker: {dict(per_worker)}\n{summary}"
    )


def _calls_of(run: dg.DagsterRun) -> str:
    tags = run.tags
    return tags.get("dagster/partition") or (
        f"{tags.get('dagster/asset_partition_range_start')}.."
        f"{tags.get('dagster/asset_partition_range_end')}"
    )


def _logs(processes) -> str:
    return "\n".join(f"--- {p.log.name}:\n{p.tail(30)}" for p in processes if p is not None)


def _text(path: Path) -> str:
    return path.read_bytes().decode("utf-8", errors="replace")


def _database_text(url: str) -> str:
    """Every row of every table in the database at `url`, as text."""
    engine = sa.create_engine(url)
    try:
        meta = sa.MetaData()
        meta.reflect(engine)
        with engine.connect() as conn:
            return "\n".join(
                repr(row) for table in meta.sorted_tables for row in conn.execute(table.select())
            )
    finally:
        engine.dispose()


# Fast checks: settings, the executor's config, what the UI sees.


def test_celery_needs_a_broker_and_a_backend_it_can_use():
    with pytest.raises(ConfigError, match="CALLQA_CELERY_BROKER"):
        load_settings({"CALLQA_EXECUTOR": "celery"})
    with pytest.raises(ConfigError, match="CALLQA_CELERY_BROKER must be a URL"):
        load_settings({"CALLQA_EXECUTOR": "celery", "CALLQA_CELERY_BROKER": "redis-host"})
    # RabbitMQ cannot store results; Redis is its own backend unless told otherwise.
    rabbit = {"CALLQA_EXECUTOR": "celery", "CALLQA_CELERY_BROKER": "amqp://u:p@mq:5672//"}
    with pytest.raises(ConfigError, match="CALLQA_CELERY_BACKEND"):
        load_settings(rabbit)
    assert load_settings({**rabbit, "CALLQA_CELERY_BACKEND": "rpc://"}).has_celery_backend
    # Other executors ignore the broker settings.
    assert load_settings({"CALLQA_EXECUTOR": "in-process"}).executor == "in_process"


def test_celery_broker_is_read_by_name_when_a_run_starts(monkeypatch):
    """The URL (and its password) is neither in the settings nor in the executor's
    definition: the run worker resolves it from its environment."""
    monkeypatch.setenv("CALLQA_CELERY_BROKER", SECRET_BROKER)
    settings = load_settings({"CALLQA_EXECUTOR": "celery", "CALLQA_CELERY_BROKER": SECRET_BROKER})
    assert "s3cret" not in settings.model_dump_json() and settings.celery_broker_scheme == "redis"
    executor = executor_for(settings)
    assert executor.name == "celery"
    resolved = executor.config_schema.resolve_config({})
    assert resolved.success, resolved.errors
    assert {k: resolved.value["config"][k] for k in ("broker", "backend")} == {
        "broker": SECRET_BROKER,
        "backend": SECRET_BROKER,
    }
    monkeypatch.setenv("CALLQA_CELERY_BROKER", "redis://elsewhere:6379/1")
    assert executor.config_schema.resolve_config({}).value["config"]["broker"] == (
        "redis://elsewhere:6379/1"
    )
    monkeypatch.delenv("CALLQA_CELERY_BROKER")
    assert not executor.config_schema.resolve_config({}).success

    monkeypatch.setenv("CALLQA_EXECUTOR", "celery")
    monkeypatch.setenv("CALLQA_CELERY_BROKER", SECRET_BROKER)
    monkeypatch.setenv("CALLQA_CELERY_BACKEND", "redis://results:6379/2")
    with_backend = executor_for(load_settings())
    assert with_backend.config_schema.resolve_config({}).value["config"]["backend"] == (
        "redis://results:6379/2"
    )


def test_the_ui_never_sees_the_broker_url(monkeypatch):
    from dagster._core.remote_representation.external_data import RepositorySnap
    from dagster._serdes import serialize_value

    built = _definitions(monkeypatch)
    assert built.resolve_job_def("process_call").executor_def.name == "celery"
    snapshot = serialize_value(RepositorySnap.from_def(built.get_repository_def()))
    assert "process_call" in snapshot and "s3cret" not in snapshot


def test_backfills_run_on_the_configured_executor(monkeypatch):
    assert _backfill_executor(monkeypatch) == "celery"


def _definitions(monkeypatch) -> dg.Definitions:
    monkeypatch.setenv("CALLQA_EXECUTOR", "celery")
    monkeypatch.setenv("CALLQA_CELERY_BROKER", SECRET_BROKER)
    from callqa.definitions import defs

    return defs()


def _backfill_executor(monkeypatch) -> str:
    return _definitions(monkeypatch).resolve_implicit_global_asset_job_def().executor_def.name
