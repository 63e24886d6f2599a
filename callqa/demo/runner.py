"""`callqa demo`: the bundled sample calls through Dagster, the way production runs them.

The calls are staged in the warehouse (file intake). Then Dagster's own daemon
(`dagster-daemon run`, callqa/demo/daemon.py) runs on the local instance, as in production:
`staged_calls_sensor` adds the `calls` partitions and launches the `process_call` runs; once
the calls are done, `tenant_aggregates_sensor` launches the `tenant_aggregates` run (see
CALLS_PHASE). The demo prints their progress (callqa/demo/watch.py), stops the daemon once
every call is processed or failed and the tenant's aggregates are rebuilt, and prints the
results. The Dagster UI on the same DAGSTER_HOME (`./dev ui`) shows every tick, run,
materialization and check.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from callqa import settings

TENANT = "demo"
CALLS_DIR = Path(__file__).parent / "calls"
MANIFEST = CALLS_DIR / "manifest.json"
DAEMON_LOG = "demo-daemon.log"
# Sensor intervals (the daemon evaluates sensors at most every 5 s, whatever they ask).
# While the calls run, tenant_aggregates_sensor ticks once, when the daemon starts; then the
# daemon is started again with it at 1 s. Left at 1 s throughout, it rebuilt the aggregates
# and report on nearly every daemon loop that saw a new analysis (3 to 5 extra runs for the
# six calls), each run competing with the calls for the CPU: on the 2-core dev machine that
# was slightly faster when it was idle (43 s against 46 s), but took 155 s against 57-68 s
# when it was loaded.
AGGREGATES_SENSOR = "tenant_aggregates_sensor"
CALLS_PHASE = {settings.SENSOR_INTERVAL_ENV: "1", settings.AGGREGATES_INTERVAL_ENV: "3600"}
AGGREGATES_PHASE = {settings.SENSOR_INTERVAL_ENV: "1", settings.AGGREGATES_INTERVAL_ENV: "1"}
TIMEOUT_S = 900.0
# Give up early when nothing has happened for this long and no run is queued or running.
IDLE_LIMIT_S = 90.0
PROGRESS_EVERY_S = 15.0
# A daemon heartbeats every 30 s: one this recent is still running.
HEARTBEAT_FRESH_S = 75.0
# How long the demo's runs get to end CANCELED when it stops early, before the daemon stops.
CANCEL_GRACE_S = 5.0
POLL_S = 0.5
# What a re-staged call carries for the instant between the two steps of `_restage`.
RESTAGE_NOTE = "staged again by callqa demo"


def load_manifest() -> list[dict]:
    return json.loads(MANIFEST.read_text())


def _stage_bundled(warehouse, manifest: list[dict]) -> list[str]:
    from callqa.crm.file_drop import StagedFile, stage_files

    keys = stage_files(
        warehouse,
        TENANT,
        [
            StagedFile(
                path=CALLS_DIR / m["file"],
                external_id=m["external_id"],
                operator=m.get("operator"),
                category=m.get("category"),
                started_at=datetime.fromisoformat(m["started_at"].replace("Z", "+00:00")),
            )
            for m in manifest
        ],
    )
    return [k.external_id for k in keys]


def _restage(warehouse, instance, calls: list[str], force: bool) -> list[str]:
    """Stage again, with a new staging id that `staged_calls_sensor`'s cursor has not passed,
    the calls the sensor would otherwise never run: failed ones, processed ones with
    `force`, and ones handed to a run that never finished them (a demo stopped midway).
    Same mechanism as `callqa retry`. Returns the calls still to process."""
    from callqa.demo.watch import STAGED_CALLS_SENSOR, sensor_cursor

    cursor = sensor_cursor(instance, STAGED_CALLS_SENSOR)
    handed_out = int(cursor) if cursor and cursor.isdigit() else 0
    rows = {r["external_id"]: r for r in warehouse.staged_calls(TENANT)}
    again = [
        c
        for c in calls
        if rows[c]["status"] == "failed"
        or (force and rows[c]["status"] == "processed")
        or (rows[c]["status"] not in ("processed", "failed") and rows[c]["id"] <= handed_out)
    ]
    if again:
        # retry_failed gives a failed call a new id; the others pass through `failed` for it.
        others = [c for c in again if rows[c]["status"] != "failed"]
        warehouse.set_staged_status(TENANT, others, "failed", RESTAGE_NOTE)
        warehouse.retry_failed(TENANT, again)
    rows = {r["external_id"]: r for r in warehouse.staged_calls(TENANT)}
    return [c for c in calls if rows[c]["status"] not in ("processed", "failed")]


@contextmanager
def _signals_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP (a closed terminal) stop the demo like Ctrl-C, so that it stops
    the daemon on its way out (main thread only: Python handles signals there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, _frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def _uninterrupted() -> Iterator[None]:
    """While the daemon is being stopped: a second Ctrl-C must not leave it running."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in sigs}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_demo(force: bool = False, out=print, timeout_s: float = TIMEOUT_S) -> int:
    import dagster as dg

    from callqa.config.registry import default_registry
    from callqa.instance import ensure_dagster_home
    from callqa.storage.warehouse import Warehouse

    started = time.perf_counter()
    settings.load_settings()  # a bad environment fails here, naming the variable
    # The local instance (SQLite storage in DAGSTER_HOME), as `./dev ui` opens it.
    home = ensure_dagster_home()
    os.environ["DAGSTER_HOME"] = str(home)
    tenant = default_registry().tenant(TENANT)
    warehouse = Warehouse.from_url(settings.database_url())
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        warehouse.upsert_tenant(tenant.id, tenant.name, tenant.model_dump(mode="json"))
        manifest = load_manifest()
        calls = _stage_bundled(warehouse, manifest)
        todo = _restage(warehouse, instance, calls, force)
        out(
            f"callqa demo: {len(calls)} bundled calls, {len(todo)} to process "
            f"({len(calls) - len(todo)} already done{'' if force else '; --force redoes them'})"
        )
        code = _process(instance, warehouse, home, todo, out, timeout_s)
        _print_results(warehouse, manifest, out)
        out(f"\nWarehouse: {settings.redact_url(settings.database_url())}")
        out(f"Audio store: {settings.audio_store_root()}")
        out(f"Dagster instance: {home}  (open it with `./dev ui`)")
        out(f"Demo wall time: {time.perf_counter() - started:.1f} s")
        return code
    finally:
        instance.dispose()
        warehouse.dispose()


def _process(instance, warehouse, home: Path, todo: list[str], out, timeout_s: float) -> int:
    """Run the Dagster daemon until `todo` is processed and the aggregates are rebuilt (not at
    all when nothing is due); 0 if everything succeeded, else 1."""
    from callqa.demo.watch import Watch

    watch = Watch(instance, warehouse, TENANT, todo, datetime.now(UTC), out)
    if not todo and watch.aggregates_state() != "due":
        return 0
    log = settings.data_dir() / DAEMON_LOG
    age = _other_daemon_heartbeat_age(instance, log)
    if age is not None:
        out(
            f"\ncallqa demo: a Dagster daemon is already running on this instance (heartbeat "
            f"{age:.0f} s ago; `./dev ui`?). It runs the staged calls itself, on its sensors' "
            "schedule (see the UI); stop it and run the demo again to have the demo run them."
        )
        return 1
    deadline = time.monotonic() + timeout_s
    problem = None
    if todo:
        out(
            f"Starting the Dagster daemon ({AGGREGATES_SENSOR} once the calls are done); log: {log}"
        )
        problem = _with_daemon(
            instance, watch, home, log, CALLS_PHASE, watch.calls_settled, deadline
        )
    if problem is None and watch.aggregates_state() == "due":
        if todo:
            out(f"Restarting the Dagster daemon for {AGGREGATES_SENSOR}")
        else:
            out(
                f"Starting the Dagster daemon: the aggregates are older than the last analysis; log: {log}"
            )
        problem = _with_daemon(
            instance, watch, home, log, AGGREGATES_PHASE, watch.done, deadline, append=bool(todo)
        )
    if problem:
        out(f"\ncallqa demo: {problem}")
        return 1
    if watch.failed_calls or watch.failed_runs or watch.aggregates_state() == "failed":
        out(
            f"\ncallqa demo: {len(watch.failed_calls)} call(s) and {len(watch.failed_runs)} "
            f"run(s) failed (above); the daemon's log: {log}"
        )
        return 1
    return 0


def _other_daemon_heartbeat_age(instance, log: Path) -> float | None:
    """Seconds since the last heartbeat of a Dagster daemon on this instance that is not one
    the demo ran (those stopped before their log's last line), if one looks alive: two daemons
    would both tick the sensors and dequeue the runs."""
    beats = [b.timestamp for b in instance.get_daemon_heartbeats().values()]
    if not beats:
        return None
    last = max(beats)
    ours = log.stat().st_mtime if log.exists() else 0.0
    age = time.time() - last
    return age if last > ours + 10 and age < HEARTBEAT_FRESH_S else None


def _with_daemon(
    instance, watch, home: Path, log: Path, sensors: dict, until, deadline: float, append=False
) -> str | None:
    """Start the daemon with the sensor intervals `sensors`, wait for `until()`, stop it (also
    on Ctrl-C or an error). None when `until()` came true, else what went wrong."""
    from callqa.demo.daemon import DemoDaemon

    env = {settings.DATA_DIR_ENV: str(settings.data_dir()), **sensors}
    daemon = DemoDaemon(home, log, env)
    problem = "stopped by an error"
    try:
        with _signals_interrupt():
            daemon.start(append=append)
            watch.touch()
            problem = _wait(watch, daemon, log, until, deadline)
    except KeyboardInterrupt:
        problem = "interrupted"
        watch.say("\ninterrupted: stopping the Dagster daemon and the demo's runs ...")
        raise
    finally:
        with _uninterrupted():
            _stop(instance, watch, daemon, problem)
    return problem


def _wait(watch, daemon, log: Path, until, deadline: float) -> str | None:
    """Poll until `until()` (None), or say why it will not come true."""
    while True:
        watch.poll(str(log))
        if until():
            return None
        code = daemon.exit_code()
        if code is not None:
            reason = f"the Dagster daemon exited (status {code}) before the work was done"
        elif watch.idle_s() > IDLE_LIMIT_S:
            reason = f"nothing happened for {IDLE_LIMIT_S:.0f} s and no run is in progress"
        elif time.monotonic() > deadline:
            reason = "timed out"
        else:
            if time.monotonic() - watch.last_output > PROGRESS_EVERY_S:
                watch.say(watch.progress())
            time.sleep(POLL_S)
            continue
        return (
            f"{reason}:\n{watch.explain()}\n"
            f"Last lines of the daemon's log ({log}):\n{daemon.tail()}"
        )


def _stop(instance, watch, daemon, problem: str | None) -> None:
    """Stop the daemon and everything it started. Runs of this demo still going (only when it
    stops early) are cancelled, as the UI's Terminate does: they end CANCELED, or FAILURE
    marked not to be retried, and the next `callqa demo` stages their calls again."""
    import dagster as dg
    from dagster._core.storage.tags import WILL_RETRY_TAG

    from callqa.demo.watch import as_utc

    stopping = datetime.now(UTC)
    affected = {r.run_id for r in watch.unfinished_runs()}
    requested: set[str] = set()
    deadline = time.monotonic() + CANCEL_GRACE_S
    while daemon.exit_code() is None and time.monotonic() < deadline:
        unfinished = watch.unfinished_runs()  # again each time: the sensor may add one
        if not unfinished:
            break
        for run in unfinished:
            if run.run_id not in requested:
                requested.add(run.run_id)
                try:
                    instance.run_coordinator.cancel_run(run.run_id)
                except Exception as exc:  # it is marked below in any case
                    watch.say(f"  could not cancel run {run.run_id[:8]}: {exc}")
        time.sleep(0.2)
    daemon.stop()
    for record in watch.session_runs():
        run = record.dagster_run
        if run.run_id in affected | requested or as_utc(record.create_timestamp) >= stopping:
            affected.add(run.run_id)
            if not run.is_finished:
                instance.report_run_canceled(
                    run, message=f"callqa demo stopped ({problem or 'done'}) before this run ended"
                )
            elif run.status == dg.DagsterRunStatus.FAILURE:  # interrupted by the stop
                instance.add_run_tags(run.run_id, {WILL_RETRY_TAG: "false"})
    if affected:
        watch.say(f"  cancelled run(s): {', '.join(sorted(r[:8] for r in affected))}")
    left = daemon.leftovers()
    if left:
        watch.say(f"warning: processes of the Dagster daemon still running: {left}")


def _print_results(warehouse, manifest: list[dict], out) -> None:
    from callqa.calls.record import weakest_index

    out(f"\n{'call':<10} {'operator':<8} {'duration':>8} {'total':>6}  weakest criterion")
    for m in manifest:
        record = warehouse.analysis(TENANT, m["external_id"])
        staged = warehouse.staged_call(TENANT, m["external_id"])
        if record is None:
            error = (staged or {}).get("error") or "not processed"
            out(f"{m['external_id']:<10} {m.get('operator') or '-':<8} {'':>8} {'-':>6}  {error}")
            continue
        weakest = record["scores"]["criteria"][weakest_index(record["scores"]["criteria"])]
        out(
            f"{m['external_id']:<10} {m.get('operator') or '-':<8} "
            f"{record['call']['audio']['duration_s']:>7.1f}s {record['scores']['total']:>6.1f}  "
            f"{weakest['name']} ({weakest['score']})"
        )

    out(f"\nTenant aggregate ({TENANT}), table daily_aggregates:")
    out(f"{'day':<11} {'operator':<8} {'calls':>5} {'mean':>6} {'min':>6} {'max':>6}")
    for row in warehouse.daily_aggregates(TENANT):
        out(
            f"{row['day']!s:<11} {row['operator']:<8} {row['calls']:>5} {row['mean_total']:>6.1f} "
            f"{row['min_total']:>6.1f} {row['max_total']:>6.1f}"
        )
    team = {}
    for row in warehouse.daily_criterion_aggregates(TENANT):
        if row["operator"] == "*":
            team.setdefault(row["criterion"], []).append((row["calls"], row["mean_score"]))
    if team:
        out(
            "\nMean score per criterion (all days, all operators), table daily_criterion_aggregates:"
        )
        for criterion, vals in team.items():
            calls = sum(c for c, _ in vals)
            out(f"  {criterion:<20} {sum(c * m for c, m in vals) / calls:.2f}")
