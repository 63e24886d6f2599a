"""Helpers for tests/test_production_path.py: the production path as users run it.

Real processes only: `callqa stage` and `dagster-daemon run -w workspace.yaml` as
subprocesses (the daemon in its own process group, so that its code server and run workers
can be stopped, or killed, together), throwaway PostgreSQL databases, and reads of the
warehouse and the Dagster instance from the test process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from tests.databases import throwaway_database
from tests.paths import ROOT

BIN = Path(sys.executable).parent
TENANT = "demo"


def _utc(value: datetime) -> datetime:
    """SQLite hands timestamps back naive; callqa writes them in UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def subprocess_env(**values: str | os.PathLike) -> dict[str, str]:
    """The test's environment plus `values`: what the daemon and the CLI see."""
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "PYTHONUNBUFFERED": "1"}
    env.update({k: str(v) for k, v in values.items()})
    return env


@contextmanager
def pg_databases(admin_url: str, *purposes: str) -> Iterator[list[str]]:
    """One new, uniquely named database per purpose (`callqa_<purpose>_<hex>`); each
    dropped WITH (FORCE) afterwards, also when the test fails."""
    with ExitStack() as stack:
        yield [
            stack.enter_context(throwaway_database(admin_url, f"callqa_{purpose}"))
            for purpose in purposes
        ]


def dagster_pg_env(url: str) -> dict[str, str]:
    """The DAGSTER_PG_* variables the repository's dagster.yaml reads, for database `url`."""
    u = sa.engine.make_url(url)
    return {
        "DAGSTER_PG_HOST": u.host or "127.0.0.1",
        "DAGSTER_PG_PORT": str(u.port or 5432),
        "DAGSTER_PG_USERNAME": u.username or "postgres",
        "DAGSTER_PG_PASSWORD": u.password or "",
        "DAGSTER_PG_DB": u.database or "",
    }


def production_env(
    tmp_path: Path, dagster_db: str, warehouse_db: str, monkeypatch, **extra: str | os.PathLike
) -> tuple[Path, dict[str, str]]:
    """A DAGSTER_HOME with the repository's own dagster.yaml on `dagster_db`, and the
    environment of a production deployment on it (warehouse `warehouse_db`) plus `extra`.
    The DAGSTER_PG_* variables are also set in this process, for the instance tests read."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    pg_env = dagster_pg_env(dagster_db)
    for name, value in pg_env.items():
        monkeypatch.setenv(name, value)
    env = subprocess_env(
        DAGSTER_HOME=home,
        CALLQA_DEPLOYMENT="production",
        CALLQA_DATABASE_URL=warehouse_db,
        CALLQA_AUDIO_STORE=tmp_path / "audio",
        CALLQA_DATA_DIR=tmp_path / "data",
        **pg_env,
        **extra,
    )
    return home, env


def callqa_cli(env: dict[str, str], *args: str | os.PathLike) -> str:
    """Run the installed `callqa` command; returns its stdout, fails with its stderr."""
    script = BIN / "callqa"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "callqa.cli"]
    done = subprocess.run(
        [*command, *map(str, args)], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"callqa {args[0]} failed ({done.returncode}):\n{done.stderr}"
    return done.stdout


class Daemon:
    """`dagster-daemon run -w workspace.yaml` from the repository root, logging to a file."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        self._log_file = log.open("ab")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: code server and run workers too
        )

    def _signal_group(self, sig: int) -> None:
        with suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    def stop(self, grace_s: float = 20) -> None:
        """SIGTERM to the whole group, then SIGKILL to what is left."""
        self._signal_group(signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            self.proc.wait(grace_s)
        self.crash()

    def crash(self) -> None:
        """SIGKILL the daemon, its code server and run workers at once (a host or container
        going down): nothing is left to report what happened to the runs."""
        self._signal_group(signal.SIGKILL)
        with suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        self._log_file.close()

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.text().splitlines()[-lines:])

    def error_lines(self) -> list[str]:
        return [line for line in self.text().splitlines() if "ERROR" in line or "Traceback" in line]


class Webserver(Daemon):
    """`dagster-webserver -w workspace.yaml` on a free loopback port, logging to a file."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.log = log
        self._log_file = log.open("ab")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [str(BIN / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1"]
            + ["-p", str(self.port)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def graphql(self, query: str) -> dict:
        import requests

        response = requests.post(
            f"http://127.0.0.1:{self.port}/graphql", json={"query": query}, timeout=30
        )
        response.raise_for_status()
        return response.json()["data"]

    def ready(self) -> bool:
        import requests

        try:
            return requests.get(f"http://127.0.0.1:{self.port}/server_info", timeout=2).ok
        except requests.ConnectionError:
            return False


RUNS_QUERY = "{ runsOrError { ... on Runs { results { runId jobName status } } } }"
MATERIALIZATIONS_QUERY = """{ assetOrError(assetKey: {path: ["scored_analysis"]}) {
  ... on Asset { assetMaterializations(limit: 100) { partition runId } } } }"""


def check_webserver_reads(
    env: dict[str, str], log: Path, runs: list[dg.DagsterRun], partitions: set[str]
) -> None:
    """The webserver, on the same instance, shows the runs and their materializations."""
    web = Webserver(env, log)
    try:
        wait_for(web.ready, 120, lambda: web.tail())
        shown = {r["runId"]: r for r in web.graphql(RUNS_QUERY)["runsOrError"]["results"]}
        assert {r.run_id: r.status.value for r in runs} == {
            run_id: r["status"] for run_id, r in shown.items()
        }, shown
        events = web.graphql(MATERIALIZATIONS_QUERY)["assetOrError"]["assetMaterializations"]
        assert {e["partition"] for e in events} == partitions, events
    finally:
        web.stop()
    errors = web.error_lines()
    assert not errors, "webserver log has errors:\n" + "\n".join(errors[:40])


def wait_for(
    condition: Callable[[], object], timeout_s: float, explain: Callable[[], str], poll_s=0.5
):
    """Poll until `condition()` is truthy and return it; fail with `explain()` on timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s: {explain()}")
        time.sleep(poll_s)


@contextmanager
def open_instance(home: Path) -> Iterator[dg.DagsterInstance]:
    """The Dagster instance the daemon uses (same dagster.yaml; for PostgreSQL the
    DAGSTER_PG_* variables must be set in this process)."""
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        yield instance
    finally:
        instance.dispose()


def worker_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    """The PID the run's worker recorded in its first engine event, once it has."""
    records = instance.event_log_storage.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ENGINE_EVENT, limit=50
    ).records
    for record in records:
        event = record.event_log_entry.dagster_event
        if event and (event.message or "").startswith("Started process for run"):
            return int(event.engine_event_data.metadata["pid"].value)
    return None


def run_partitions(instance: dg.DagsterInstance, run: dg.DagsterRun) -> list[str]:
    """The call partitions a run targets: its one partition, or its partition range."""
    if "dagster/partition" in run.tags:
        return [run.tags["dagster/partition"]]
    first = run.tags.get("dagster/asset_partition_range_start")
    last = run.tags.get("dagster/asset_partition_range_end")
    if not first:
        return []
    keys = instance.get_dynamic_partitions("calls")
    return keys[keys.index(first) : keys.index(last) + 1]


def run_messages(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    return [
        (e.dagster_event.message if e.dagster_event else e.user_message) or ""
        for e in instance.all_logs(run_id)
    ]


def runs_summary(instance: dg.DagsterInstance) -> str:
    return "\n".join(
        f"  {r.run_id[:8]} {r.job_name:<18} {r.status.value:<9} "
        f"partition={r.tags.get('dagster/partition') or r.tags.get('dagster/asset_partition_range_start')} sensor={r.tags.get('dagster/sensor_name')} "
        f"parent={(r.tags.get('dagster/parent_run_id') or '-')[:8]}"
        for r in instance.get_runs()
    )


class WarehouseProbe:
    """Reads callqa's warehouse tables directly (SQLAlchemy), as the tests' source of truth."""

    def __init__(self, url: str) -> None:
        from callqa.storage import tables

        self.t = tables
        self.engine = sa.create_engine(url)

    def staged(self) -> list[dict]:
        s = self.t.staged_calls
        query = sa.select(s.c.external_id, s.c.status, s.c.error, s.c.staged_at).where(
            s.c.tenant == TENANT
        )
        with self.engine.connect() as conn:
            rows = [dict(r) for r in conn.execute(query.order_by(s.c.id)).mappings()]
        return [{**r, "staged_at": _utc(r["staged_at"])} for r in rows]

    def analysis_times(self) -> dict:
        a = self.t.analyses
        query = sa.select(a.c.external_id, a.c.updated_at).where(a.c.tenant == TENANT)
        with self.engine.connect() as conn:
            return {external_id: _utc(ts) for external_id, ts in conn.execute(query).all()}

    def aggregated_calls(self) -> int:
        """Calls counted in the tenant's all-operator daily aggregate rows."""
        d = self.t.daily_aggregates
        query = sa.select(sa.func.coalesce(sa.func.sum(d.c.calls), 0)).where(
            d.c.tenant == TENANT, d.c.operator == "*"
        )
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def describe(self) -> str:
        try:
            rows = "\n".join(
                f"  {r['external_id']}: {r['status']} {r['error'] or ''}" for r in self.staged()
            )
            return (
                f"staged_calls:\n{rows}\nanalyses: {sorted(self.analysis_times())}\n"
                f"calls in daily_aggregates: {self.aggregated_calls()}"
            )
        except Exception as exc:  # a failure message must not fail itself
            return f"(warehouse unreadable: {exc!r})"

    def dispose(self) -> None:
        self.engine.dispose()


def staging_to_analysis_s(probe: WarehouseProbe) -> list[float]:
    """Per call: analyses.updated_at minus staged_calls.staged_at, in seconds."""
    done = probe.analysis_times()
    return [(done[r["external_id"]] - r["staged_at"]).total_seconds() for r in probe.staged()]


def run_production_path(
    *,
    env: dict[str, str],
    home: Path,
    warehouse_url: str,
    calls: list[Path],
    log: Path,
    timeout_s: float = 300,
) -> dict:
    """Stage `calls` with the CLI, run the daemon until every call is analysed and the
    tenant's aggregates are rebuilt, stop it, check what users rely on, and that the
    webserver on the same instance shows the runs and materializations. Returns timings."""
    started = time.perf_counter()
    out = callqa_cli(env, "stage", *calls, "--tenant", TENANT)
    assert len(out.strip().splitlines()) == len(calls), out
    probe = WarehouseProbe(warehouse_url)
    daemon = Daemon(env, log)
    try:
        with open_instance(home) as instance:

            def explain() -> str:
                return (
                    f"\n{probe.describe()}\nruns:\n{runs_summary(instance)}\n"
                    f"daemon log ({log}), last lines:\n{daemon.tail()}"
                )

            def all_done() -> bool:
                staged = probe.staged()
                analysed = probe.analysis_times()
                return (
                    len(staged) == len(calls)
                    and all(r["status"] == "processed" for r in staged)
                    and all(r["external_id"] in analysed for r in staged)
                    and probe.aggregated_calls() == len(calls)
                )

            wait_for(all_done, timeout_s, explain, poll_s=1)
            # The aggregates run for the last analysis, and every other run, finished.
            last_analysis = max(probe.analysis_times().values())

            def settled() -> bool:
                runs = instance.get_runs()
                final_aggregate = any(
                    r.job_name == "tenant_aggregates"
                    and r.status == dg.DagsterRunStatus.SUCCESS
                    and instance.get_run_record_by_id(r.run_id).create_timestamp > last_analysis
                    for r in runs
                )
                return final_aggregate and all(r.is_finished for r in runs)

            remaining = max(30.0, timeout_s - (time.perf_counter() - started))
            wait_for(settled, remaining, explain, poll_s=1)
            wall_s = time.perf_counter() - started

            runs = instance.get_runs()
            calls_runs = [r for r in runs if r.job_name == "process_call"]
            partitions = {k for r in calls_runs for k in run_partitions(instance, r)}
            aggregate_runs = [r for r in runs if r.job_name == "tenant_aggregates"]
            summary = runs_summary(instance)
            assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs), summary
            assert sorted(k for r in calls_runs for k in run_partitions(instance, r)) == sorted(
                f"{TENANT}__{r['external_id']}" for r in probe.staged()
            ), summary
            assert all(
                r.tags.get("dagster/sensor_name") == "staged_calls_sensor" for r in calls_runs
            ), summary
            assert aggregate_runs and all(
                r.tags.get("dagster/sensor_name") == "tenant_aggregates_sensor"
                and r.tags.get("dagster/partition") == TENANT
                for r in aggregate_runs
            ), summary
    finally:
        daemon.stop()
    check_webserver_reads(env, log.with_name("webserver.log"), runs, partitions)
    try:
        assert all(r["status"] == "processed" and not r["error"] for r in probe.staged())
        assert probe.aggregated_calls() == len(calls)
        per_call = staging_to_analysis_s(probe)
    finally:
        probe.dispose()
    errors = daemon.error_lines()
    assert not errors, "daemon log has errors:\n" + "\n".join(errors[:40])
    return {
        "wall_s": wall_s,
        "per_call_s": per_call,
        "mean_s": sum(per_call) / len(per_call),
        "max_s": max(per_call),
        "runs": len(runs),
        "call_runs": len(calls_runs),
    }
