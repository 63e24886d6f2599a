"""The production path as users run it: `callqa stage`, then `dagster-daemon run -w
workspace.yaml` launches a run per call from staged_calls_sensor and the tenant's aggregates
from tenant_aggregates_sensor; on the repository's own dagster.yaml (PostgreSQL) and on the
local instance that `callqa dagster-home` writes (SQLite). Plus run monitoring: a run whose
worker was killed ends FAILURE and is retried. Helpers: tests/production_path.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
import yaml
from dagster._core.events import EngineEventData
from dagster._core.storage.tags import GRPC_INFO_TAG

from callqa.instance import LOCAL_INSTANCE_YAML, ensure_dagster_home
from tests.paths import DEMO_CALLS, ROOT
from tests.production_path import (
    TENANT,
    Daemon,
    WarehouseProbe,
    callqa_cli,
    open_instance,
    pg_databases,
    production_env,
    run_messages,
    run_production_path,
    runs_summary,
    subprocess_env,
    wait_for,
    worker_pid,
)

# The shortest bundled calls (about 30 s each): transcription time is not what is tested.
SHORT_CALLS = [DEMO_CALLS / "call-006.flac", DEMO_CALLS / "call-005.flac"]
# Sensors tick fast in tests (defaults: 30 s and 120 s); read when the code location loads.
FAST_SENSORS = {"CALLQA_SENSOR_INTERVAL_S": "1", "CALLQA_AGGREGATES_INTERVAL_S": "5"}
INSTANCE_SECTIONS = ("run_launcher", "run_monitoring", "run_retries")


def _report(name: str, result: dict) -> None:
    per_call = ", ".join(f"{s:.1f}" for s in result["per_call_s"])
    print(
        f"\n[{name}] wall {result['wall_s']:.1f} s for {len(result['per_call_s'])} calls "
        f"({result['runs']} runs); staging -> stored analysis per call: mean "
        f"{result['mean_s']:.1f} s, max {result['max_s']:.1f} s ({per_call})"
    )


@pytest.mark.daemon
@pytest.mark.slow
@pytest.mark.postgres
def test_production_instance_on_postgres(pg_server_url, tmp_path, monkeypatch):
    """The repository's dagster.yaml, as shipped, with both databases on PostgreSQL."""
    t0 = time.perf_counter()
    with pg_databases(pg_server_url, "dagster", "warehouse") as (dagster_db, warehouse_db):
        home, env = production_env(tmp_path, dagster_db, warehouse_db, monkeypatch, **FAST_SENSORS)
        with open_instance(home) as instance:
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        result = run_production_path(
            env=env,
            home=home,
            warehouse_url=warehouse_db,
            calls=SHORT_CALLS,
            log=tmp_path / "daemon.log",
        )
    result["wall_s"] = time.perf_counter() - t0
    _report("postgres", result)


@pytest.mark.daemon
@pytest.mark.slow
def test_local_instance_on_sqlite(tmp_path):
    """The local instance (`./dev ui`): `callqa dagster-home` writes it; SQLite everywhere."""
    t0 = time.perf_counter()
    data = tmp_path / "data"
    env = subprocess_env(CALLQA_DATA_DIR=data, DAGSTER_HOME=tmp_path / "home", **FAST_SENSORS)
    for name in ("CALLQA_DATABASE_URL", "CALLQA_AUDIO_STORE", "CALLQA_DEPLOYMENT"):
        env.pop(name, None)
    home = Path(callqa_cli(env, "dagster-home").strip())
    assert home == (tmp_path / "home").resolve()
    assert (home / "dagster.yaml").read_text() == LOCAL_INSTANCE_YAML
    with open_instance(home) as instance:
        assert type(instance.run_storage).__name__ == "SqliteRunStorage"
    result = run_production_path(
        env=env,
        home=home,
        warehouse_url=f"sqlite:///{data / 'warehouse.db'}",
        calls=SHORT_CALLS,
        log=tmp_path / "daemon.log",
    )
    result["wall_s"] = time.perf_counter() - t0
    _report("sqlite", result)


@pytest.mark.daemon
@pytest.mark.slow
def test_killed_run_workers_fail_their_runs_and_calls_are_retried(tmp_path):
    """Two ways a run worker dies, on the local instance:

    1. Everything dies at once (daemon, code server, run workers: a host or container going
       down): nothing is left to report, the runs stay STARTED. The next daemon's run
       monitoring asks callqa's run launcher, which finds the workers' PIDs gone, and marks
       the runs FAILURE; run retries re-execute them.
    2. Only a run worker dies (SIGKILL, as from the OOM killer): its code server, or run
       monitoring if first, marks the run FAILURE. Run retries stop after one retry.
    """
    t0 = time.perf_counter()
    data = tmp_path / "data"
    env = subprocess_env(
        CALLQA_DATA_DIR=data,
        DAGSTER_HOME=tmp_path / "home",
        CALLQA_SENSOR_INTERVAL_S="1",
        CALLQA_AGGREGATES_INTERVAL_S="3600",  # no aggregate runs competing for the 2 cores
    )
    for name in ("CALLQA_DATABASE_URL", "CALLQA_AUDIO_STORE", "CALLQA_DEPLOYMENT"):
        env.pop(name, None)
    home = Path(callqa_cli(env, "dagster-home").strip())
    # Calls run in-process and fast; recordings five times as long (2.5 minutes) keep both
    # runs in progress long enough for the crash to catch them mid-run.
    callqa_cli(env, "stage", *_repeated(SHORT_CALLS, tmp_path), "--tenant", TENANT)
    probe = WarehouseProbe(f"sqlite:///{data / 'warehouse.db'}")
    daemons = [Daemon(env, tmp_path / "daemon-1.log")]
    try:
        with open_instance(home) as instance:

            def explain() -> str:
                logs = "\n".join(f"--- {d.log.name}:\n{d.tail(40)}" for d in daemons)
                return f"\n{probe.describe()}\nruns:\n{runs_summary(instance)}\n{logs}"

            def status(run_id: str) -> dg.DagsterRunStatus:
                return instance.get_run_by_id(run_id).status

            def started(parent: str | None = None) -> dict[str, int]:
                """STARTED process_call runs (retries of `parent` only, if given) whose worker
                has recorded its PID: {run_id: pid}."""
                found = {}
                for run in instance.get_runs(
                    filters=dg.RunsFilter(
                        job_name="process_call", statuses=[dg.DagsterRunStatus.STARTED]
                    )
                ):
                    if run.tags.get("dagster/parent_run_id") != parent:
                        continue
                    pid = worker_pid(instance, run.run_id)
                    if pid:
                        found[run.run_id] = pid
                return found

            def retry_of(run_id: str) -> dg.DagsterRun | None:
                runs = instance.get_runs(
                    filters=dg.RunsFilter(tags={"dagster/parent_run_id": run_id})
                )
                return runs[0] if runs else None

            # The sensor launched one run per staged call; both workers are running.
            first = wait_for(lambda: (s := started()) and len(s) == 2 and s, 120, explain)

            # 1. Crash: daemon, code server and both run workers killed at once.
            daemons[0].crash()
            time.sleep(1)
            assert {status(r) for r in first} == {dg.DagsterRunStatus.STARTED}, explain()
            crashed_at = time.monotonic()
            daemons.append(Daemon(env, tmp_path / "daemon-2.log"))
            wait_for(
                lambda: {status(r) for r in first} == {dg.DagsterRunStatus.FAILURE}, 90, explain
            )
            crash_to_failure_s = time.monotonic() - crashed_at
            restart_to_failure_s = time.monotonic() - daemons[1].started
            for run_id, pid in first.items():
                assert any(
                    f"run worker process {pid} is gone" in m for m in run_messages(instance, run_id)
                ), run_messages(instance, run_id)[-5:]

            # Run retries re-execute both. 2. Kill one retry's worker alone (SIGKILL).
            victim, survivor = sorted(
                first, key=lambda r: instance.get_run_by_id(r).tags["dagster/partition"]
            )
            retry = wait_for(lambda: started(parent=victim), 90, explain)
            [(retry_id, retry_pid)] = retry.items()
            os.kill(retry_pid, signal.SIGKILL)
            killed_at = time.monotonic()
            wait_for(lambda: status(retry_id) == dg.DagsterRunStatus.FAILURE, 60, explain, 0.2)
            kill_to_failure_s = time.monotonic() - killed_at
            # Whichever notices first says so: the code server (its worker process exited by
            # signal 9) or run monitoring (the worker's PID is gone).
            messages = run_messages(instance, retry_id)
            by_code_server = any("SIGKILL" in m for m in messages)
            assert by_code_server or any(
                f"run worker process {retry_pid} is gone" in m for m in messages
            ), messages[-5:]

            # The other call's retry processes it completely.
            survivor_retry = wait_for(lambda: retry_of(survivor), 60, explain)
            wait_for(
                lambda: instance.get_run_by_id(survivor_retry.run_id).is_finished, 180, explain
            )
            assert status(survivor_retry.run_id) == dg.DagsterRunStatus.SUCCESS, explain()
            survivor_call = (
                instance.get_run_by_id(survivor).tags["dagster/partition"].split("__")[1]
            )
            staged = {r["external_id"]: r for r in probe.staged()}
            assert staged[survivor_call]["status"] == "processed", explain()
            assert survivor_call in probe.analysis_times(), explain()
            # A run retries once: the victim's second failure is final, its call left staged.
            victim_call = instance.get_run_by_id(victim).tags["dagster/partition"].split("__")[1]
            assert retry_of(retry_id) is None, explain()
            assert staged[victim_call]["status"] != "processed", explain()
    finally:
        for daemon in daemons:
            daemon.stop()
        probe.dispose()
    print(
        f"\n[killed workers] wall {time.perf_counter() - t0:.1f} s; crash of all processes -> "
        f"FAILURE {crash_to_failure_s:.1f} s ({restart_to_failure_s:.1f} s after the next "
        f"daemon started); worker SIGKILL -> FAILURE {kill_to_failure_s:.1f} s "
        f"(noticed by {'the code server' if by_code_server else 'run monitoring'})"
    )


def _repeated(paths: list[Path], folder: Path, times: int = 5) -> list[Path]:
    from callqa.speech.audio import decode_file
    from tests.audio_helpers import write_wav

    return [
        write_wav(
            folder / f"{p.stem}-x{times}.wav", [np.tile(c, times) for c in decode_file(p).channels]
        )
        for p in paths
    ]


# Fast checks of the instance configuration and the run launcher (no daemon).


def test_dagster_home_is_written_once_and_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    home = ensure_dagster_home()
    config = home / "dagster.yaml"
    assert home == (tmp_path / "home").resolve() and config.read_text() == LOCAL_INSTANCE_YAML
    config.write_text("telemetry:\n  enabled: false\n")  # what callqa wrote before: upgraded
    ensure_dagster_home()
    assert config.read_text() == LOCAL_INSTANCE_YAML
    config.write_text("telemetry:\n  enabled: true\n")  # the user's own edit: kept
    ensure_dagster_home()
    assert config.read_text() == "telemetry:\n  enabled: true\n"


def test_local_and_production_instances_monitor_runs_alike():
    production = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    local = yaml.safe_load(LOCAL_INSTANCE_YAML)
    for section in INSTANCE_SECTIONS:
        assert production[section] == local[section], section
    assert local["run_launcher"] == {"module": "callqa.instance", "class": "MonitoredRunLauncher"}
    assert local["run_monitoring"]["enabled"] and local["run_monitoring"]["max_runtime_seconds"]


def test_run_launcher_reports_worker_health_by_pid(tmp_path):
    with open_instance(ensure_dagster_home(tmp_path / "home")) as instance:
        launcher = instance.run_launcher
        assert launcher.supports_check_run_worker_health

        def run(tags: dict, pid: int | None) -> dg.DagsterRun:
            r = instance.add_run(
                dg.DagsterRun(
                    job_name="process_call",
                    run_id=str(uuid.uuid4()),
                    status=dg.DagsterRunStatus.STARTED,
                    tags=tags,
                )
            )
            if pid is not None:
                instance.report_engine_event(
                    f"Started process for run (pid: {pid}).", r, EngineEventData.in_process(pid)
                )
            return r

        local = {GRPC_INFO_TAG: json.dumps({"host": "localhost", "socket": "/tmp/x.sock"})}
        worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        try:
            alive = run(local, worker.pid)
            health = launcher.check_run_worker_health(alive)
            assert health.status.value == "RUNNING"
        finally:
            worker.kill()
            worker.wait()
        dead = launcher.check_run_worker_health(alive)
        assert dead.status.value == "FAILED" and f"process {worker.pid} is gone" in dead.msg
        # Not judged: a code server reached by host and port (maybe another container, even
        # at localhost), or no PID recorded (a run executed in process).
        for host in ("10.1.2.3", "localhost"):
            remote = {GRPC_INFO_TAG: json.dumps({"host": host, "port": 4000})}
            health = launcher.check_run_worker_health(run(remote, worker.pid))
            assert health.status.value == "RUNNING"
        assert launcher.check_run_worker_health(run(local, None)).status.value == "RUNNING"
        assert launcher.check_run_worker_health(run({}, None)).status.value == "RUNNING"
