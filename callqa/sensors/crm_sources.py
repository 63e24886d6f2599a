"""One sensor per tenant with a call source: poll it, stage what is new.

`build_crm_sensors` makes `crm_<tenant>_sensor` for every tenant whose config has a `crm:`
section. A tick pages through the source from the cursor and stages each call into
`staged_calls` (one row per (tenant, external id): a call listed twice is staged once).
Turning staged calls into partitions and runs is `staged_calls_sensor`'s job, for every
source alike (CLI, webhooks, CRMs), so batching, pools and the staging gate live in one
place.

The cursor is small and bounded: the adapter's own cursor (a watermark plus what it needs
to page) and, after a 429, the time before which the tenant's source is left alone. A
tick stops after MAX_CALLS_PER_TICK calls or TICK_BUDGET_S seconds, well inside Dagster's
sensor timeout, and the next tick goes on from the cursor, so a backlog of 10,000 calls is
staged over a few ticks in bounded memory (one page at a time).

A failing source never loses or duplicates a call: the cursor only moves past pages that
were staged. An outage, an expired token or a 429 is logged; a tick that made progress
before the error keeps it (its skip reason names the error); a tick that made none fails,
so the tick history shows the error in red, and the next tick tries again. Each tenant
has its own sensor, so one tenant's outage never holds up another's.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import dagster as dg
from pydantic import BaseModel

from callqa.config.models import Tenant
from callqa.crm.base import CrmPage
from callqa.crm.registry import adapter_for
from callqa.errors import CrmError, CrmRateLimited
from callqa.resources import WarehouseResource

MAX_CALLS_PER_TICK = 2000
TICK_BUDGET_S = 20.0  # Dagster's default sensor evaluation timeout is 60 s


class CrmCursor(BaseModel):
    source: str | None = None  # the adapter's cursor
    not_before: float = 0.0  # epoch seconds: a 429 asked us to wait until then

    @classmethod
    def parse(cls, raw: str | None) -> CrmCursor:
        return cls.model_validate_json(raw) if raw else cls()

    def dump(self) -> str:
        return self.model_dump_json(exclude_defaults=True)


def sensor_name(tenant_id: str) -> str:
    # Dagster names allow letters, digits and underscores; tenant ids also hold '-'.
    return f"crm_{tenant_id.replace('-', '_')}_sensor"


class TickReport(BaseModel):
    pages: int = 0
    listed: int = 0
    staged: int = 0
    rejected: int = 0
    error: str | None = None

    def line(self) -> str:
        text = (
            f"{self.staged} new call(s) staged of {self.listed} listed in {self.pages} page(s)"
            + (f", {self.rejected} record(s) rejected" if self.rejected else "")
        )
        return text + (f"; {self.error}" if self.error else "")


def poll_source(
    tenant: Tenant,
    cursor: CrmCursor,
    warehouse,
    log,
    *,
    max_calls: int | None = None,
    budget_s: float = TICK_BUDGET_S,
    now: float | None = None,
) -> tuple[CrmCursor, TickReport]:
    """Page through the tenant's source from `cursor`, staging each page before moving the
    cursor past it. Returns the new cursor and what happened."""
    report = TickReport()
    max_calls = max_calls or MAX_CALLS_PER_TICK
    adapter = adapter_for(tenant)  # a missing secret is a ConfigError: the tick fails
    page_size = tenant.crm.page_size
    started = time.monotonic()
    state = cursor.source
    while report.listed < max_calls and time.monotonic() - started < budget_s:
        try:
            page: CrmPage = adapter.list_calls(state, min(page_size, max_calls - report.listed))
        except CrmRateLimited as exc:
            report.error = str(exc)
            log.warning(str(exc))
            wait_from = time.time() if now is None else now
            return CrmCursor(source=state, not_before=wait_from + exc.retry_after_s), report
        except CrmError as exc:
            report.error = str(exc)
            log.error(str(exc))
            break
        report.pages += 1
        report.listed += len(page.calls)
        new = warehouse.stage_calls(
            tenant.id, "crm", [c.as_staged(tenant.crm.category) for c in page.calls]
        )
        report.staged += len(new)
        for bad in page.rejected:
            report.rejected += 1
            log.warning(
                f"tenant {tenant.id}: record {bad.external_id or '?'} rejected: {bad.problem}"
            )
        state = page.cursor
        if not page.more:
            break
    return CrmCursor(source=state), report


def build_crm_sensor(tenant: Tenant) -> dg.SensorDefinition:
    assert tenant.crm is not None
    name = sensor_name(tenant.id)

    @dg.sensor(
        name=name,
        minimum_interval_seconds=tenant.crm.poll_interval_s,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Polls tenant {tenant.id}'s {tenant.crm.adapter} source every "
            f"{tenant.crm.poll_interval_s} s and stages new calls in staged_calls; "
            "staged_calls_sensor turns them into partitions and runs."
        ),
        tags={"callqa/tenant": tenant.id, "callqa/adapter": tenant.crm.adapter},
    )
    def crm_sensor(
        context: dg.SensorEvaluationContext, warehouse: WarehouseResource
    ) -> dg.SensorResult:
        cursor = CrmCursor.parse(context.cursor)
        if cursor.not_before > time.time():
            until = datetime.fromtimestamp(cursor.not_before, UTC).isoformat(timespec="seconds")
            return dg.SensorResult(
                skip_reason=f"{tenant.crm.adapter} asked to wait (HTTP 429) until {until}",
                cursor=cursor.dump(),
            )
        new_cursor, report = poll_source(tenant, cursor, warehouse.get(), context.log)
        context.log.info(f"tenant {tenant.id}: {report.line()}")
        if report.error and report.pages == 0 and new_cursor.not_before == 0.0:
            # No progress: fail the tick so its history shows the error; same cursor next time.
            raise CrmTickFailed(f"tenant {tenant.id}: {report.error}")
        return dg.SensorResult(skip_reason=report.line(), cursor=new_cursor.dump())

    return crm_sensor


class CrmTickFailed(Exception):
    """A tick that could not read its source at all (the message names the problem)."""


def build_crm_sensors(tenants: list[Tenant]) -> list[dg.SensorDefinition]:
    return [build_crm_sensor(t) for t in tenants if t.crm is not None]
