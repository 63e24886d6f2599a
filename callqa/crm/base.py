"""The CRM adapter interface: how calls arrive from a CRM and how results go back.

An adapter is chosen by name in the tenant's config (`Tenant.crm`). Intake today is the
file drop (`callqa.crm.file_drop`) and recording URLs fetched safely (`callqa.crm.fetch`);
adapters for AmoCRM, HubSpot and SQL sources implement this protocol.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from pydantic import BaseModel, Field


class CrmCall(BaseModel):
    """One call as a CRM lists it, before it is staged."""

    external_id: str = Field(description="the CRM's id of the call; with the tenant, the key")
    recording_url: str
    started_at: datetime | None = None
    operator: str | None = None
    category: str | None = None
    duration_s: float | None = None
    links: dict[str, str] = Field(
        default_factory=dict, description="CRM ids to write back to, e.g. deal, contact"
    )


class CrmPage(BaseModel):
    calls: list[CrmCall]
    cursor: str | None = Field(
        description="small opaque watermark to resume from; never a growing set of ids"
    )


class CrmAdapter(Protocol):
    name: str

    def list_calls(self, cursor: str | None, limit: int) -> CrmPage:
        """Calls changed since `cursor`, one bounded page at a time."""
        ...

    def fetch_recording(self, call: CrmCall) -> bytes: ...

    def write_result(self, call: CrmCall, score: float, summary: str, report_url: str) -> None:
        """Put the result on the call's card, idempotently."""
        ...
