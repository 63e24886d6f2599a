"""The CRM adapter interface: how calls arrive from a call source and how results go back.

An adapter is chosen by name in the tenant's config (`crm: {adapter: amocrm, ...}`,
`callqa.crm.registry`). It does four things, each small and bounded:

- `list_calls(cursor, limit)`: one page of calls changed since the cursor. The cursor is a
  small opaque string (a watermark plus what is needed to page), never a set of ids, so a
  sensor can keep it in its cursor however many calls a source holds.
- `fetch_recording(source_uri)`: the bytes of a recording the adapter listed.
- `write_result(links, result, existing)`: put score, summary and report link on the
  call's cards, updating the notes named in `existing` (idempotent); returns the note ids.
- `parse_webhook(body, content_type)`: the calls in a push from the CRM.

Errors are `callqa.errors.CrmError` subclasses (outage, 429 with Retry-After, refused
token, malformed payload), each naming the source and the problem without the token.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator


class CrmCall(BaseModel):
    """One call as a source lists it, before it is staged."""

    model_config = ConfigDict(frozen=True)

    external_id: str = Field(
        min_length=1,
        max_length=128,
        description="the source's id of the call; with the tenant, the key",
    )
    recording_url: str = Field(min_length=1, description="where fetch_recording reads it")
    started_at: datetime | None = None
    operator: str | None = Field(None, max_length=128)
    category: str | None = Field(None, max_length=64)
    duration_s: float | None = Field(None, ge=0)
    direction: Literal["inbound", "outbound"] | None = None
    links: dict[str, str] = Field(
        default_factory=dict,
        description="cards to write the result back to, e.g. {'leads': '123', 'contacts': '9'}",
    )

    @field_validator("external_id")
    @classmethod
    def _valid_id(cls, value: str) -> str:
        from callqa.calls.keys import EXTERNAL_ID_RE, SEPARATOR

        # It becomes part of a Dagster partition key: refuse it here, at the boundary.
        if not EXTERNAL_ID_RE.fullmatch(value) or SEPARATOR in value:
            raise ValueError(
                "must be 1-128 letters, digits, '.' or '-', starting with a letter or digit, "
                f"without {SEPARATOR!r}"
            )
        return value

    @field_validator("started_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        from datetime import UTC

        return value.replace(tzinfo=UTC) if value and value.tzinfo is None else value

    def as_staged(self, default_category: str | None = None) -> dict:
        """The call as a `staged_calls` row's fields (`Warehouse.stage_calls`); a call whose
        record names no category gets the tenant's default (`crm.category`)."""
        return {
            **self.model_dump(exclude={"recording_url"}),
            "source_uri": self.recording_url,
            "category": self.category or default_category,
        }


class RejectedRecord(BaseModel):
    """A record the source listed that cannot be staged: shown on the tick, never dropped
    silently. `external_id` is the source's id where the record had one."""

    external_id: str | None
    problem: str


class CrmPage(BaseModel):
    calls: list[CrmCall] = Field(default_factory=list)
    rejected: list[RejectedRecord] = Field(default_factory=list)
    cursor: str | None = Field(
        description="where the next page starts; small, never a growing set of ids"
    )
    more: bool = Field(description="another page is ready now (False: caught up)")


class CallResult(BaseModel):
    """What goes back onto the CRM card."""

    partition_key: str
    total: float
    summary: str
    report_url: str
    preset: str
    weakest_criterion: str | None = None

    def note_text(self) -> str:
        return (
            f"callqa score: {self.total:.1f}/100"
            + (f" (weakest: {self.weakest_criterion})" if self.weakest_criterion else "")
            + f"\n{self.summary}\nReport: {self.report_url}"
        )


class CrmAdapter(Protocol):
    name: ClassVar[str]

    def list_calls(self, cursor: str | None, limit: int) -> CrmPage:
        """Calls changed since `cursor` (None: from the beginning), at most `limit`."""
        ...

    def fetch_recording(self, source_uri: str, max_bytes: int) -> bytes: ...

    def write_result(
        self, links: dict[str, str], result: CallResult, existing: dict[str, str]
    ) -> dict[str, str]:
        """Write the result to each linked card, updating the notes in `existing`
        (card -> note id) instead of adding new ones; return card -> note id."""
        ...

    def parse_webhook(self, body: bytes, content_type: str) -> list[CrmCall]:
        """The calls in one push; raises CrmPayloadError naming what is wrong."""
        ...
