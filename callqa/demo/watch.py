"""What `callqa demo` watches while the Dagster daemon works: the bundled calls' status in
the warehouse and the runs the sensors launch, printed as progress lines, and when all of it
is done (or cannot finish)."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

import dagster as dg

from callqa.jobs import TENANT_AGGREGATES

LOCATION = "callqa"
STAGED_CALLS_SENSOR = "staged_calls_sensor"
AGGREGATES_SENSOR = "tenant_aggregates_sensor"
SENSOR_TAG = "dagster/sensor_name"
PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
DONE = ("processed", "failed")
_EXCEPTION_PREFIX = re.compile(r"^[\w.]+: ")


def sensor_cursor(instance: dg.DagsterInstance, name: str) -> str | None:
    """The stored cursor of sensor `name` in the `callqa` code location (None before its
    first tick)."""
    from dagster._core.scheduler.instigation import InstigatorType

    for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
        origin = state.origin.repository_origin.code_location_origin
        if state.instigator_name == name and origin.location_name == LOCATION:
            return state.instigator_data.cursor if state.instigator_data else None
    return None


def run_scope(run: dg.DagsterRun) -> str:
    """The partitions a run covers: one key, or `first..last` for a range run."""
    tags = run.tags
    if RANGE_START_TAG in tags:
        calls = tags.get("callqa/calls")
        suffix = f" ({calls} calls)" if calls else ""
        return f"{tags[RANGE_START_TAG]}..{tags[RANGE_END_TAG]}{suffix}"
    return tags.get(PARTITION_TAG, "-")


def launched_by(run: dg.DagsterRun) -> str:
    if run.tags.get("dagster/parent_run_id"):
        return f"re-execution of run {run.tags['dagster/parent_run_id'][:8]}"
    if SENSOR_TAG in run.tags:
        return f"launched by {run.tags[SENSOR_TAG]}"
    return "launched by hand"


def failure_reason(instance: dg.DagsterInstance, run_id: str) -> str:
    """The first failed step's error (its first line), else the run's failure message."""
    try:
        records = instance.event_log_storage.get_records_for_run(
            run_id,
            of_type={dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.RUN_FAILURE},
            limit=20,
        ).records
    except Exception:  # an explanation must not fail the demo
        return ""
    for record in records:
        event = record.event_log_entry.dagster_event
        if event and event.event_type == dg.DagsterEventType.STEP_FAILURE:
            error = event.step_failure_data.error
            if error and error.message:
                # "dagster._core.definitions.events.Failure: call ...": the message only.
                return _EXCEPTION_PREFIX.sub("", error.message.strip().splitlines()[0])
    for record in records:
        event = record.event_log_entry.dagster_event
        if event and event.message:
            return event.message.strip().splitlines()[0]
    return ""


def as_utc(value: datetime) -> datetime:
    """SQLite hands timestamps back naive; Dagster and callqa store them in UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class Watch:
    """Follows `calls` (external ids of tenant `tenant`) and the runs created since `since`:
    `poll()` prints what changed, `calls_settled()` and `done()` say how far the work is."""

    def __init__(self, instance, warehouse, tenant: str, calls: list[str], since: datetime, out):
        self.instance = instance
        self.warehouse = warehouse
        self.tenant = tenant
        self.calls = calls
        self.since = since
        self.out = out
        self.started = time.monotonic()
        self.last_change = self.started
        self.last_output = self.started
        self.status: dict[str, str] = {}
        self.rows: dict[str, dict] = {}
        self.run_status: dict[str, dg.DagsterRunStatus] = {}
        self.failed_runs: list[str] = []
        self.failed_calls: list[str] = []

    # what is there --------------------------------------------------------------------------
    def session_runs(self) -> list[dg.RunRecord]:
        return list(
            self.instance.get_run_records(
                filters=dg.RunsFilter(created_after=self.since), ascending=True
            )
        )

    def unfinished_runs(self) -> list[dg.DagsterRun]:
        return [r.dagster_run for r in self.session_runs() if not r.dagster_run.is_finished]

    def pending(self) -> list[str]:
        return [c for c in self.calls if self.status.get(c) not in DONE]

    def aggregates_state(self) -> str:
        """`current` when a tenant_aggregates run created after the tenant's last analysis has
        finished successfully; `failed` if it finished otherwise; `due` if there is none."""
        last = self.warehouse.latest_analysis_times().get(self.tenant)
        if last is None:
            return "current"
        records = self.instance.get_run_records(
            filters=dg.RunsFilter(
                job_name=TENANT_AGGREGATES,
                tags={PARTITION_TAG: self.tenant},
                created_after=as_utc(last),
            ),
            limit=1,
        )
        if not records:
            return "due"
        run = records[0].dagster_run
        if not run.is_finished:
            return "due"
        return "current" if run.status == dg.DagsterRunStatus.SUCCESS else "failed"

    # what changed ---------------------------------------------------------------------------
    def touch(self) -> None:
        """Something happened (a change, or a daemon started): the idle clock starts again."""
        self.last_change = time.monotonic()

    def say(self, line: str) -> None:
        self.out(line)
        self.last_output = time.monotonic()

    def _poll_calls(self) -> None:
        rows = {r["external_id"]: r for r in self.warehouse.staged_calls(self.tenant)}
        for call in self.calls:
            row = rows.get(call)
            if row is None:
                continue
            self.rows[call] = row
            status, before = row["status"], self.status.get(call)
            if status == before:
                continue
            self.status[call] = status
            self.touch()
            if status == "processed":
                record = self.warehouse.analysis(self.tenant, call)
                total = f"total {record['scores']['total']:.1f}" if record else ""
                self.say(f"  ok   {self.tenant}__{call:<14} processed  {total}")
            elif status == "failed":
                self.failed_calls.append(call)
                self.say(f"  FAIL {self.tenant}__{call:<14} failed: {row['error'] or '?'}")

    def _poll_runs(self, log_hint: str) -> None:
        for record in self.session_runs():
            run = record.dagster_run
            before = self.run_status.get(run.run_id)
            if run.status == before:
                continue
            self.run_status[run.run_id] = run.status
            self.touch()
            head = f"  run {run.run_id[:8]} {run.job_name:<17}"
            if before is None:
                self.say(f"{head} {run_scope(run)}, {launched_by(run)}")
            if not run.is_finished:
                continue
            took = (
                f" in {record.end_time - record.start_time:.1f} s"
                if record.start_time and record.end_time
                else ""
            )
            if run.status == dg.DagsterRunStatus.SUCCESS:
                self.say(f"{head} succeeded{took}")
                continue
            self.failed_runs.append(run.run_id)
            reason = failure_reason(self.instance, run.run_id)
            self.say(
                f"{head} {run.status.value}{took}{': ' + reason if reason else ''}\n"
                f"       run {run.run_id} ({run_scope(run)}): its event log is in the Dagster "
                f"UI (`./dev ui`, Runs); process output in {log_hint}"
            )

    def poll(self, log_hint: str) -> None:
        """Print what changed since the last poll."""
        self._poll_calls()
        self._poll_runs(log_hint)

    def calls_settled(self) -> bool:
        """Every call processed or failed, and no run left queued or in progress."""
        return not self.pending() and not self.unfinished_runs()

    def done(self) -> bool:
        """`calls_settled`, and the tenant's aggregates rebuilt after its last analysis."""
        return self.calls_settled() and self.aggregates_state() != "due"

    def progress(self) -> str:
        done = len(self.calls) - len(self.pending())
        running = len(self.unfinished_runs())
        return (
            f"  ... {done}/{len(self.calls)} calls done, {running} run(s) queued or in progress, "
            f"{time.monotonic() - self.started:.0f} s"
        )

    def idle_s(self) -> float:
        """Seconds since anything changed, 0 while a run is queued or in progress."""
        if self.unfinished_runs():
            return 0.0
        return time.monotonic() - self.last_change

    def explain(self) -> str:
        """What is still missing, for a demo that stops waiting."""
        cursor = sensor_cursor(self.instance, STAGED_CALLS_SENSOR)
        handed_out = int(cursor) if cursor and cursor.isdigit() else 0
        lines = []
        for call in self.pending():
            row = self.rows.get(call, {})
            where = (
                "handed to a run that did not finish it"
                if row.get("id", 0) <= handed_out
                else f"not yet picked up by {STAGED_CALLS_SENSOR} (cursor {cursor or 'none'})"
            )
            lines.append(f"  {self.tenant}__{call}: {row.get('status', 'not staged')}, {where}")
        if not self.pending() and self.aggregates_state() == "due":
            lines.append(
                f"  the {self.tenant} aggregates: no {TENANT_AGGREGATES} run since the last "
                f"analysis ({AGGREGATES_SENSOR})"
            )
        unfinished = self.unfinished_runs()
        if unfinished:
            lines.append(
                "  runs still in progress: "
                + ", ".join(f"{r.run_id[:8]} {r.status.value}" for r in unfinished)
            )
        return "\n".join(lines)
