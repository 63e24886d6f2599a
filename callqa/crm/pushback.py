"""Push a scored call's result back: a note on its CRM cards, and a low-score alert.

`push_result` is safe to run again for the same call (a retried step, a re-scored call):

- The CRM notes are written through `adapter.write_result(links, result, existing)`, with
  `existing` the note ids the previous push stored (`crm_pushbacks.note_ids`), so a re-run
  updates the same notes instead of adding a second one. The ids it returns are stored.
- The alert goes out at most once per call: only while `crm_pushbacks.alerted_at` is
  empty, and `mark_alerted` is set after the destination accepted it. A failed send raises
  (the call fails at crm_pushback; re-materializing crm_pushback, from the UI or
  `callqa backfill --assets crm_pushback`, or `callqa retry` pushes again), and the next
  push sends it. Two pushes of the same call
  running at the same moment could both send (at least once, not exactly once); Dagster
  does not run one partition twice at once.

Calls that cannot be written back, because the tenant has no CRM (`adapter` None) or the
call names no cards (`links` empty), still get their row (report URL, total, previous
note ids kept) and still get their alert: a manager wants to hear about a bad call
whether or not a CRM card exists for it. The outcome says why the write-back was skipped.

The CRM and the alert destination fail independently: if the CRM write fails (an outage,
an expired token), the alert is still sent, then the CRM error is raised so the call fails
at crm_pushback and the next push retries it; the stored note ids keep the earlier notes
and those the adapter wrote before failing (`CrmError.written`), so the retry updates, not
adds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from callqa.calls.record import AnalysisRecord
from callqa.crm.alerts import LowScoreAlert, send_alert
from callqa.crm.base import CallResult, CrmAdapter
from callqa.errors import CrmError

if TYPE_CHECKING:
    from callqa.config.models import Tenant
    from callqa.storage.warehouse import Warehouse

NO_ADAPTER = "none"  # crm_pushbacks.adapter of a tenant without a CRM
SKIP_NO_CRM = "tenant has no CRM"
SKIP_NO_LINKS = "the call is linked to no CRM card"


class PushOutcome(BaseModel):
    note_ids: dict[str, str] = Field(description="CRM card -> note id now stored for the call")
    alerted: bool = Field(description="a low-score alert was sent by this push")
    skipped: str | None = Field(None, description="why the CRM write-back was skipped")


def call_result(record: AnalysisRecord, partition_key: str, report_url: str) -> CallResult:
    return CallResult(
        partition_key=partition_key,
        total=record.scores.total,
        summary=record.summary,
        report_url=report_url,
        preset=record.scoring.preset,
        weakest_criterion=record.weakest.name,
    )


def _checked_record(record: dict, tenant: Tenant, external_id: str) -> AnalysisRecord:
    rec = AnalysisRecord.model_validate(record)
    if (rec.call.tenant, rec.call.external_id) != (tenant.id, external_id):
        # Writing one tenant's result onto another's card would leak it: refuse.
        raise ValueError(
            f"push_result for {tenant.id}/{external_id} was given the record of "
            f"{rec.call.tenant}/{rec.call.external_id}"
        )
    return rec


def _alert_due(tenant: Tenant, total: float, previous: dict | None) -> bool:
    return (
        tenant.alerts.destination is not None
        and total < tenant.alerts.low_score_threshold
        and (previous is None or previous["alerted_at"] is None)
    )


def push_result(
    warehouse: Warehouse,
    tenant: Tenant,
    adapter: CrmAdapter | None,
    *,
    external_id: str,
    partition_key: str,
    record: dict,
    links: dict[str, str],
    report_url: str,
) -> PushOutcome:
    """Write the result to the call's CRM cards (updating earlier notes), remember the
    note ids, and send the low-score alert if it is due and was not sent before."""
    rec = _checked_record(record, tenant, external_id)
    total = rec.scores.total
    previous = warehouse.pushback(tenant.id, external_id)
    existing: dict[str, str] = dict(previous["note_ids"]) if previous else {}

    note_ids, skipped, write_error = existing, None, None
    if adapter is None:
        skipped = SKIP_NO_CRM
    elif not links:
        skipped = SKIP_NO_LINKS
    else:
        try:
            note_ids = adapter.write_result(
                links, call_result(rec, partition_key, report_url), existing
            )
        except CrmError as exc:
            write_error = exc
            # Notes written before a later card failed are kept, so the retry updates them.
            note_ids = dict(exc.written)

    # Earlier notes on cards this push did not touch are kept: a later push with those
    # links updates them rather than adding new ones. The row is stored even when the
    # write failed (mark_alerted needs it).
    note_ids = {**existing, **note_ids}
    warehouse.save_pushback(
        tenant.id,
        external_id,
        adapter=adapter.name if adapter is not None else NO_ADAPTER,
        note_ids=note_ids,
        total=total,
        report_url=report_url,
    )

    alerted = False
    if _alert_due(tenant, total, previous):
        alerted = _send(warehouse, tenant, rec, partition_key, report_url, write_error)

    if write_error is not None:
        raise write_error
    return PushOutcome(note_ids=note_ids, alerted=alerted, skipped=skipped)


def _send(
    warehouse: Warehouse,
    tenant: Tenant,
    rec: AnalysisRecord,
    partition_key: str,
    report_url: str,
    write_error: CrmError | None,
) -> bool:
    destination = tenant.alerts.destination
    assert destination is not None  # _alert_due checked it
    alert = LowScoreAlert(
        tenant=tenant.id,
        partition_key=partition_key,
        total=rec.scores.total,
        threshold=tenant.alerts.low_score_threshold,
        summary=rec.summary,
        report_url=report_url,
        operator=rec.call.operator,
    )
    try:
        send_alert(destination, alert, where=f"tenant {tenant.id} alerts")
    except CrmError as exc:
        if write_error is None:
            raise
        # Both failed: one error that says so (neither message holds a secret).
        raise CrmError(f"{write_error}; the low-score alert failed too: {exc}") from None
    warehouse.mark_alerted(tenant.id, rec.call.external_id, destination.type)
    return True
