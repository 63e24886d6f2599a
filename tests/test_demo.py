"""`callqa demo`: the bundled calls staged, then launched by the production sensors through
Dagster's own daemon on the local instance; and that the daemon never outlives the demo."""

from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
import time
from datetime import UTC
from pathlib import Path

import dagster as dg
import pytest
import yaml

from callqa import settings
from callqa.demo import daemon as demo_daemon
from callqa.demo import runner
from callqa.demo.daemon import WORKSPACE_YAML, DemoDaemon
from callqa.demo.runner import DAEMON_LOG, _restage, run_demo
from callqa.demo.watch import RANGE_END_TAG, RANGE_START_TAG, sensor_cursor
from callqa.storage.warehouse import Warehouse
from tests.paths import ROOT

SENSOR_TAG = "dagster/sensor_name"


def _processes_of(data_dir: Path) -> list[str]:
    """Processes (not zombies, not this one) whose environment names `data_dir`: the daemon,
    its code server and run workers all inherit CALLQA_DATA_DIR from the demo."""
    proc = Path("/proc")
    if not (proc / "self" / "environ").exists():
        pytest.skip("needs /proc")
    needle = f"{settings.DATA_DIR_ENV}={data_dir}".encode()
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            if state in ("Z", "X"):
                continue
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(f"{entry.name}: {(entry / 'cmdline').read_bytes()[:120]!r}")
        except (OSError, IndexError):
            continue
    return found


def _run_partitions(instance: dg.DagsterInstance, run: dg.DagsterRun) -> list[str]:
    """The `calls` partitions a run covers: its one key, or every key of its range."""
    if RANGE_START_TAG not in run.tags:
        return [run.tags["dagster/partition"]]
    keys = list(instance.get_dynamic_partitions("calls"))
    first, last = keys.index(run.tags[RANGE_START_TAG]), keys.index(run.tags[RANGE_END_TAG])
    return keys[first : last + 1]


def _utc_ts(value) -> float:
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


@pytest.mark.model
@pytest.mark.daemon
@pytest.mark.slow
def test_demo_runs_the_calls_through_the_daemon_and_sensors(manifest):
    data_dir = settings.data_dir()
    lines: list[str] = []
    assert run_demo(out=lines.append) == 0, "\n".join(lines)
    output = "\n".join(lines)
    assert f"{len(manifest)} to process" in output
    for call in manifest:
        assert call["external_id"] in output
    assert "launched by staged_calls_sensor" in output
    assert "Tenant aggregate (demo)" in output and "Demo wall time" in output
    assert (data_dir / DAEMON_LOG).exists()
    assert not _processes_of(data_dir), "daemon processes left behind"

    wh = Warehouse.from_url(settings.database_url())
    instance = dg.DagsterInstance.from_config(str(settings.dagster_home()))
    try:
        staged = wh.staged_calls("demo")
        assert {r["status"] for r in staged} == {"processed"}, staged
        totals = {
            m["external_id"]: wh.analysis("demo", m["external_id"])["scores"]["total"]
            for m in manifest
        }
        good = [totals[m["external_id"]] for m in manifest if m["expected_quality"] == "good"]
        poor = [totals[m["external_id"]] for m in manifest if m["expected_quality"] == "poor"]
        assert min(good) > max(poor), totals
        team_rows = [r for r in wh.daily_aggregates("demo") if r["operator"] == "*"]
        assert sum(r["calls"] for r in team_rows) == len(manifest)

        # The sensor, in the daemon, launched every run and moved its cursor past every call.
        keys = {f"demo__{m['external_id']}" for m in manifest}
        assert set(instance.get_dynamic_partitions("calls")) == keys
        runs = instance.get_runs(filters=dg.RunsFilter(job_name="process_call"))
        assert runs and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
        assert all(r.tags.get(SENSOR_TAG) == "staged_calls_sensor" for r in runs)
        covered = [k for r in runs for k in _run_partitions(instance, r)]
        assert sorted(covered) == sorted(keys)
        assert sensor_cursor(instance, "staged_calls_sensor") == str(max(r["id"] for r in staged))
        # ... and the aggregates sensor rebuilt the tenant's aggregates after the last analysis.
        last_analysis = _utc_ts(wh.latest_analysis_times()["demo"])
        aggregates = instance.get_run_records(filters=dg.RunsFilter(job_name="tenant_aggregates"))
        assert aggregates and all(
            r.dagster_run.status == dg.DagsterRunStatus.SUCCESS
            and r.dagster_run.tags.get(SENSOR_TAG) == "tenant_aggregates_sensor"
            for r in aggregates
        )
        assert max(_utc_ts(r.create_timestamp) for r in aggregates) > last_analysis

        # Again: nothing to do, so no daemon and no new run.
        again: list[str] = []
        started = time.perf_counter()
        assert run_demo(out=again.append) == 0
        assert "0 to process" in "\n".join(again) and "Dagster daemon" not in "\n".join(again)
        assert time.perf_counter() - started < 30
        assert len(instance.get_runs()) == len(runs) + len(aggregates)

        # What the next demo would run, without running it: a failed call and one handed to a
        # run that never finished are staged again under a new id past the sensor's cursor;
        # with --force, every call.
        cursor = int(sensor_cursor(instance, "staged_calls_sensor"))
        first, second = (m["external_id"] for m in manifest[:2])
        wh.set_staged_status("demo", [first], "failed", "transcript: boom")
        wh.set_staged_status("demo", [second], "staged")
        calls = [m["external_id"] for m in manifest]
        assert _restage(wh, instance, calls, force=False) == [first, second]
        rows = {r["external_id"]: r for r in wh.staged_calls("demo")}
        assert rows[first]["id"] > cursor and rows[second]["id"] > cursor
        assert rows[first]["error"] is None
        assert all(rows[c]["id"] <= cursor for c in calls[2:])
        assert _restage(wh, instance, calls, force=True) == calls
        assert all(r["status"] == "staged" and r["id"] > cursor for r in wh.staged_calls("demo"))
    finally:
        instance.dispose()
        wh.dispose()


@pytest.mark.model
@pytest.mark.daemon
@pytest.mark.slow
def test_interrupted_demo_cancels_its_runs_and_stops_the_daemon(manifest):
    """Ctrl-C once the first run is launched: the runs are cancelled, the daemon, its code
    server and run workers are gone, and the next demo stages the unfinished calls again."""
    data_dir = settings.data_dir()
    lines: list[str] = []
    pressed: list[bool] = []

    def out(line: str) -> None:
        lines.append(line)
        if "launched by staged_calls_sensor" in line and not pressed:
            pressed.append(True)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        code = run_demo(out=out)
        pytest.fail(f"not interrupted (exit {code}):\n" + "\n".join(lines))
    assert not _processes_of(data_dir), "daemon processes left behind:\n" + "\n".join(lines)

    wh = Warehouse.from_url(settings.database_url())
    instance = dg.DagsterInstance.from_config(str(settings.dagster_home()))
    try:
        runs = instance.get_runs(filters=dg.RunsFilter(job_name="process_call"))
        assert runs and all(r.is_finished for r in runs), [(r.run_id, r.status) for r in runs]
        # Cancelled, or failed by the stop and not to be retried by the next daemon.
        assert all(
            r.status == dg.DagsterRunStatus.CANCELED
            or (
                r.status == dg.DagsterRunStatus.FAILURE
                and r.tags.get("dagster/will_retry") == "false"
            )
            for r in runs
        ), [(r.run_id, r.status, r.tags) for r in runs]
        assert any("cancelled run(s)" in line for line in lines)
        # Handed to a run (queued) or not yet (staged), never processed.
        unfinished = [
            r["external_id"] for r in wh.staged_calls("demo") if r["status"] in ("staged", "queued")
        ]
        assert unfinished, "the interrupt came too late to test anything"
        calls = [m["external_id"] for m in manifest]
        assert set(_restage(wh, instance, calls, force=False)) >= set(unfinished)
    finally:
        instance.dispose()
        wh.dispose()


@pytest.mark.daemon
@pytest.mark.slow
def test_a_failed_run_is_reported_with_its_id_and_the_daemon_log(tmp_path, monkeypatch, manifest):
    """One bundled call that is not audio: its run fails at raw_audio, before any model."""
    (tmp_path / "bad.flac").write_bytes(b"not audio" * 100)
    bad = {**manifest[0], "external_id": "call-bad", "file": "bad.flac"}
    (tmp_path / "manifest.json").write_text(json.dumps([bad]))
    monkeypatch.setattr(runner, "CALLS_DIR", tmp_path)
    monkeypatch.setattr(runner, "MANIFEST", tmp_path / "manifest.json")
    lines: list[str] = []
    assert run_demo(out=lines.append) == 1
    output = "\n".join(lines)
    assert not _processes_of(settings.data_dir()), "daemon processes left behind"

    instance = dg.DagsterInstance.from_config(str(settings.dagster_home()))
    try:
        [run] = instance.get_runs(filters=dg.RunsFilter(job_name="process_call"))
        assert run.status == dg.DagsterRunStatus.FAILURE
        assert run.tags.get(SENSOR_TAG) == "staged_calls_sensor"
    finally:
        instance.dispose()
    assert f"run {run.run_id}" in output and str(settings.data_dir() / DAEMON_LOG) in output
    assert "FAIL demo__call-bad" in output and "not a readable audio file" in output


# Fast checks, no daemon.


def test_demo_names_the_code_location_as_the_repository_workspace_does():
    assert yaml.safe_load(WORKSPACE_YAML) == yaml.safe_load((ROOT / "workspace.yaml").read_text())


def test_stopping_the_daemon_kills_its_whole_process_group(tmp_path, monkeypatch):
    """A child that ignores SIGTERM is killed after the grace period; nothing is left."""
    script = tmp_path / "fake_daemon.py"
    script.write_text(
        textwrap.dedent(
            """
            import signal, subprocess, sys, time
            child = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
            subprocess.Popen([sys.executable, "-c", child])
            print("started", flush=True)
            time.sleep(60)
            """
        )
    )
    monkeypatch.setattr(demo_daemon, "_daemon_command", lambda: [sys.executable, str(script)])
    daemon = DemoDaemon(tmp_path / "home", tmp_path / "demo-daemon.log", {})
    daemon.start()
    deadline = time.monotonic() + 20
    while len(daemon.leftovers()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(daemon.leftovers()) == 2, daemon.tail()
    started = time.perf_counter()
    daemon.stop(grace_s=1)
    assert daemon.leftovers() == []
    assert daemon.exit_code() == -signal.SIGTERM
    assert time.perf_counter() - started < 10
    assert "started" in daemon.tail()
    daemon.stop()  # twice is harmless
