"""The Dagster instance callqa runs on: the local instance's config, and a run launcher that
tells run monitoring whether a run's worker process is still alive.

Dagster's DefaultRunLauncher starts each run as a process of the code server but cannot say
whether that process still exists (`supports_check_run_worker_health` is False), so run
monitoring can only end a run whose worker died once `max_runtime_seconds` passes. The code
server notices a worker that dies under it, but not one that dies with it (the host, the
container or the daemon's process group killed): nothing is left to report such a run, and
it stays STARTED. `MonitoredRunLauncher` answers the health check from the worker's PID,
which the worker records itself in its first engine event ("Started process for run
(pid: N)."), so the monitoring daemon marks the run failed within one poll interval of
starting again (and run retries re-execute it).

Both instance configs name it: the repository's dagster.yaml (production) and
`LOCAL_INSTANCE_YAML` below, which `ensure_dagster_home()` writes for `./dev ui`,
`callqa dagster-home` and `callqa demo`. Importing this module stays cheap: the webserver,
the daemon and every run worker import it when they load the instance.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import dagster as dg
from dagster._core.events import DagsterEventType
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus
from dagster._core.storage.tags import GRPC_INFO_TAG

# The local instance: Dagster's default SQLite storage inside DAGSTER_HOME, offline (no
# telemetry, no sign-up pop-up), with the same run launcher, run monitoring and run retries as
# production.
LOCAL_INSTANCE_YAML = """\
# Written by callqa (callqa/instance.py, `callqa dagster-home`): Dagster's default SQLite
# storage in this folder. Edit freely; callqa never overwrites an edited file.
telemetry:
  enabled: false
# No "new user experience" pop-up (the newsletter sign-up box) when the UI opens.
nux:
  enabled: false

# Dagster's DefaultRunLauncher, plus a worker health check: see callqa/instance.py.
run_launcher:
  module: callqa.instance
  class: MonitoredRunLauncher

# The daemon checks in-progress runs every 5 s: a run whose worker died is marked failed,
# a run over max_runtime_seconds (any run, or per run with the tag dagster/max_runtime)
# is terminated, and pool slots a dead run still held are freed after 30 s.
run_monitoring:
  enabled: true
  poll_interval_seconds: 5
  start_timeout_seconds: 180
  cancel_timeout_seconds: 180
  max_runtime_seconds: 7200
  free_slots_after_run_end_seconds: 30

# A run that failed without a failed step (its worker died, say) is re-executed from
# where it stopped, once; a call whose input makes a step fail is not retried.
run_retries:
  enabled: true
  max_retries: 1
  retry_on_asset_or_op_failure: false

# Runs wait in Dagster's queue and one starts only when the pool `callqa_calls` has a free
# slot (CALLQA_CALL_SLOTS, one per core by default), so no run worker sits waiting for one.
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
  config:
    dequeue_interval_seconds: 2
concurrency:
  pools:
    granularity: run
"""

# What earlier callqa versions wrote; such a file is upgraded in place.
_LEGACY_LOCAL_YAML = "telemetry:\n  enabled: false\n"
# The sha256 of the LOCAL_INSTANCE_YAML of callqa before batches of calls (no pool gate).
_PREVIOUS_LOCAL_YAML_SHA256 = "ec83c9bb2ad663ef5c6c2fe97965734f0d45bc98d5dfc45f9fc818db185c6e73"


# The worker's own first engine event (dagster/_grpc/impl.py), with the PID as metadata.
_WORKER_STARTED_PREFIX = "Started process for run"
# A restarted clock or a coarse boot time must not make a live worker look like a new process.
_START_TIME_SLACK_S = 60.0


def _written_by_earlier_callqa(text: str) -> bool:
    import hashlib

    digest = hashlib.sha256(text.encode()).hexdigest()
    return text == _LEGACY_LOCAL_YAML or digest == _PREVIOUS_LOCAL_YAML_SHA256


def ensure_dagster_home(home: Path | None = None) -> Path:
    """Create the local DAGSTER_HOME (default: settings.dagster_home()) with LOCAL_INSTANCE_YAML
    as its dagster.yaml unless one exists; returns the folder. A dagster.yaml written by an
    older callqa, unedited, is replaced; any other existing file is left as it is."""
    from callqa import settings

    home = (home or settings.dagster_home()).resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists() or _written_by_earlier_callqa(config.read_text()):
        config.write_text(LOCAL_INSTANCE_YAML)
    return home


def _process_start_time(pid: int) -> float | None:
    """When process `pid` started (epoch seconds), or None if it is gone or a zombie.
    Raises OSError where /proc is not available."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        if not Path("/proc/self/stat").exists():
            raise
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state is field 3 of stat(5)
    if fields[0] in ("Z", "X"):  # exited, not yet reaped by its parent
        return None
    ticks = int(fields[19])  # field 22: start time, clock ticks after boot
    boot = next(
        float(line.split()[1])
        for line in Path("/proc/stat").read_text().splitlines()
        if line.startswith("btime ")
    )
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def worker_alive(pid: int, started_by: float) -> bool:
    """Whether the process `pid` exists and is the one that was running at `started_by`
    (epoch seconds), not a later process that got the same PID."""
    if pid <= 0:
        return False
    try:
        start = _process_start_time(pid)
    except OSError:  # no /proc (macOS): existence only; zombies are reaped within seconds
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # another user's process: the PID was reused
            return False
        return True
    return start is not None and start <= started_by + _START_TIME_SLACK_S


class MonitoredRunLauncher(dg.DefaultRunLauncher):
    """DefaultRunLauncher whose run workers are health-checked by PID (see module docstring).

    Only runs launched through a code server that the daemon or `dagster dev` started on this
    machine are judged; for any other run (a code server reached by host and port, a run
    executed in process) the answer is RUNNING, which leaves it to max_runtime_seconds.
    """

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def _worker(self, run: dg.DagsterRun) -> tuple[int, float] | None:
        """The PID the run's worker recorded and when it recorded it, if it is on this machine."""
        info = run.tags.get(GRPC_INFO_TAG)
        if not info:
            return None
        # A Unix socket: a code server that the daemon (or `dagster dev`) started itself on
        # this machine, so its run workers' PIDs are ours to look up. A host and port, even
        # localhost, may be a code server in another container (another PID namespace).
        if not json.loads(info).get("socket"):
            return None
        records = self._instance.event_log_storage.get_records_for_run(
            run.run_id, of_type=DagsterEventType.ENGINE_EVENT, limit=50, ascending=True
        ).records
        for record in records:
            entry = record.event_log_entry
            event = entry.dagster_event
            if event and (event.message or "").startswith(_WORKER_STARTED_PREFIX):
                pid = event.engine_event_data.metadata.get("pid")
                if pid is not None:
                    return int(pid.value), entry.timestamp
        return None

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        worker = self._worker(run)
        if worker is None:
            return CheckRunHealthResult(
                WorkerStatus.RUNNING, "run worker not on this machine; not checked", transient=True
            )
        pid, started = worker
        if worker_alive(pid, started):
            return CheckRunHealthResult(WorkerStatus.RUNNING, run_worker_id=str(pid))
        return CheckRunHealthResult(
            WorkerStatus.FAILED,
            f"run worker process {pid} is gone: it was killed or crashed "
            "(out of memory, a restart of the host, container or Dagster daemon)",
            run_worker_id=str(pid),
        )
