"""HubSpot: calls polled with the CRM search API, results written back as one note.

The API, as documented by HubSpot (private app token as `Authorization: Bearer`):

- Calls: `POST /crm/v3/objects/calls/search`
  (https://developers.hubspot.com/docs/api-reference/search/guide): filterGroups (OR of
  ANDed filters; datetimes as epoch-millisecond strings), ONE sort rule, `limit` <= 200, an
  `after` offset, and at most 10,000 results per query ("attempting to page beyond 10,000
  will result in a 400 error"); rate limited to five requests a second per account; "it
  may take a few moments for newly created or updated CRM objects to appear in search
  results". Call properties (https://developers.hubspot.com/docs/api/crm/calls):
  hs_call_recording_url, hs_call_duration (milliseconds), hs_call_direction
  (INBOUND/OUTBOUND), hs_timestamp, hubspot_owner_id, hs_call_status.
- Cards of a page of calls: `POST /crm/v4/associations/calls/{deals|contacts}/batch/read`
  (https://developers.hubspot.com/docs/api-reference/legacy/crm/associations/associate-records/batch/get-associations),
  one request per card type per page, never one per call.
- Results: `POST /crm/v3/objects/notes` with `associations` (note-to-deal 214,
  note-to-contact 202, note-to-company 190, HUBSPOT_DEFINED), `PATCH
  /crm/v3/objects/notes/{id}` on a re-run, `POST /crm/v3/objects/notes/batch/read` to tell
  a deleted note from another refusal (https://developers.hubspot.com/docs/api-reference/crm-notes-v3/guide).

The cursor is `{"ms": M}` or `{"ms": M, "id": I}`: every call ordered by
(hs_lastmodifieddate, id) after (M, I) is still to come. Search allows one sort rule, and
calls sharing one modification time come back in no particular order, so a page never
ends in the middle of such a group: a full page returns only the calls modified before
its last timestamp, and a whole page of one timestamp is re-read by id instead
(`hs_lastmodifieddate == M AND hs_object_id > I`, sorted by id). Each page is a fresh
query from the cursor, never an `after` offset, so the 10,000-result cap is never reached
and a call modified while paging moves forward in the order (listed again, as a change)
instead of shifting an offset and hiding a neighbour. Calls modified within the last
`index_lag_s` seconds are left for a later poll, so one that HubSpot indexes late cannot
fall behind a watermark that has moved on.

Webhooks: HubSpot's events name a call's id and one changed property, never the
recording, duration or cards, and fetching them would not fit the webhook's time budget.
Staging such a half-known call would also shadow the complete record the poll lists (a
call is staged once), so `parse_webhook` acknowledges well-formed HubSpot events with no
calls, and this tenant's sensor picks the calls up on its next poll; a body that is not
HubSpot's event array is a CrmPayloadError.
"""

from __future__ import annotations

import html
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from callqa.config.crm import HubSpotConfig
from callqa.crm.base import CallResult, CrmCall, CrmPage, RejectedRecord
from callqa.crm.http import CrmHttp
from callqa.errors import CrmError, CrmPayloadError

log = logging.getLogger(__name__)

SEARCH_PATH = "/crm/v3/objects/calls/search"
NOTES_PATH = "/crm/v3/objects/notes"
MAX_LIMIT = 200  # search's largest page
INDEX_LAG_S = 60.0  # how long a change may take to reach search results, with room
MODIFIED = "hs_lastmodifieddate"
CALL_PROPERTIES = [
    "hs_call_recording_url",
    "hs_call_duration",
    "hs_call_direction",
    "hs_call_status",
    "hs_call_title",
    "hs_timestamp",
    "hubspot_owner_id",
    MODIFIED,
]
LINKED_CARDS = ("deals", "contacts")  # what list_calls puts in links
NOTE_TYPE_IDS = {"deals": 214, "contacts": 202, "companies": 190}  # note -> card
NOTE_KEY = "note"  # write_result's answer: {"note": id}, one note on every linked card
MAX_SUMMARY_CHARS = 10_000  # hs_note_body holds 65,536 characters, escaping included
DIRECTIONS = {"INBOUND": "inbound", "OUTBOUND": "outbound"}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class _Cursor(BaseModel):
    """Calls after (ms, id) in (hs_lastmodifieddate, id) order are still to come; without
    `id`, every call modified at `ms` or later is."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ms: int = Field(0, ge=0)
    id: int | None = Field(None, ge=0)

    @classmethod
    def parse(cls, raw: str | None) -> _Cursor:
        if not raw:
            return cls()
        try:
            return cls.model_validate_json(raw)
        except ValidationError:
            raise CrmPayloadError(
                f"{raw[:80]!r} is not a HubSpot cursor (expected {{'ms': ..., 'id': ...}})"
            ) from None

    def dump(self) -> str:
        return self.model_dump_json(exclude_none=True)


class _Record(BaseModel):
    """One search result; properties stay raw, mapping decides what is wrong with them."""

    id: str = Field(pattern=r"^[0-9]{1,20}$")
    properties: dict[str, Any] = Field(default_factory=dict)
    updatedAt: str | None = None

    @property
    def number(self) -> int:
        return int(self.id)

    @property
    def modified_ms(self) -> int:
        value = self.properties.get(MODIFIED) or self.updatedAt
        when = _datetime(value) if value else None
        if when is None:
            raise CrmPayloadError(f"call {self.id}: no usable {MODIFIED} ({value!r}) in search")
        return (when - _EPOCH) // timedelta(milliseconds=1)


class _SearchAnswer(BaseModel):
    results: list[_Record]


class _ObjectRef(BaseModel):
    id: str


class _AssociatedTo(BaseModel):
    toObjectId: int | str


class _AssociationResult(BaseModel):
    from_: _ObjectRef = Field(alias="from")
    to: list[_AssociatedTo] = Field(default_factory=list)


class _AssociationAnswer(BaseModel):
    results: list[_AssociationResult] = Field(default_factory=list)


class _WebhookEvent(BaseModel):
    """One event of HubSpot's webhook array (v3 subscriptions); other fields pass."""

    objectId: int
    subscriptionType: str
    occurredAt: int
    propertyName: str | None = None


_WEBHOOK_EVENTS = TypeAdapter(list[_WebhookEvent])


class HubSpotAdapter:
    name: ClassVar[str] = "hubspot"

    def __init__(
        self,
        tenant_id: str,
        config: HubSpotConfig,
        *,
        index_lag_s: float = INDEX_LAG_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.tenant_id = tenant_id
        self.config = config
        self.index_lag_s = index_lag_s
        self._clock = clock
        self._token = config.token.resolve(f"tenant {tenant_id} crm.token")
        self._http = CrmHttp(f"hubspot {tenant_id}", config.base_url, self._token)
        self._api_origin = _origin(config.base_url)

    def __repr__(self) -> str:
        return f"HubSpotAdapter(tenant={self.tenant_id!r}, base_url={self.config.base_url!r})"

    # --- polling ---------------------------------------------------------------------

    def list_calls(self, cursor: str | None, limit: int) -> CrmPage:
        at = _Cursor.parse(cursor)
        limit = max(1, min(limit, MAX_LIMIT))
        done: list[_Record] = []
        if at.id is not None:  # inside a group of calls sharing one timestamp
            done = self._search_instant(at.ms, at.id, limit)
            if len(done) == limit:
                return self._page(done, _Cursor(ms=at.ms, id=done[-1].number), more=True)
            at = _Cursor(ms=at.ms + 1)  # that instant is finished
        horizon = int(self._clock() * 1000 - self.index_lag_s * 1000)
        room = limit - len(done)
        if at.ms >= horizon:
            return self._page(done, at, more=False)
        found = self._search_since(at.ms, horizon, room)
        if len(found) < room:  # everything settled up to the horizon is listed
            return self._page(done + found, _Cursor(ms=horizon), more=False)
        last_ms = found[-1].modified_ms
        before_last = [r for r in found if r.modified_ms < last_ms]
        if before_last or done:
            # The last timestamp's calls may go on past this page, in any order: they
            # start the next page instead.
            return self._page(done + before_last, _Cursor(ms=last_ms), more=True)
        # A whole page shares one timestamp: walk that instant by id.
        group = self._search_instant(last_ms, None, limit)
        if len(group) == limit:
            return self._page(group, _Cursor(ms=last_ms, id=group[-1].number), more=True)
        return self._page(group, _Cursor(ms=last_ms + 1), more=True)

    def _search_since(self, from_ms: int, before_ms: int, limit: int) -> list[_Record]:
        filters = [_filter(MODIFIED, "GTE", from_ms), _filter(MODIFIED, "LT", before_ms)]
        return self._search(filters, MODIFIED, limit)

    def _search_instant(self, ms: int, after_id: int | None, limit: int) -> list[_Record]:
        filters = [_filter(MODIFIED, "GTE", ms), _filter(MODIFIED, "LTE", ms)]
        if after_id is not None:
            filters.append(_filter("hs_object_id", "GT", after_id))
        return self._search(filters, "hs_object_id", limit)

    def _search(self, filters: list[dict], sort_by: str, limit: int) -> list[_Record]:
        body = {
            "filterGroups": [{"filters": filters}],
            "sorts": [{"propertyName": sort_by, "direction": "ASCENDING"}],
            "properties": CALL_PROPERTIES,
            "limit": limit,
        }
        answer = self._http.request("POST", SEARCH_PATH, json=body)
        try:
            return _SearchAnswer.model_validate(answer).results
        except ValidationError as exc:
            raise CrmPayloadError(
                f"hubspot {self.tenant_id}: calls search answer: {_problems(exc)}"
            ) from None

    def _page(self, records: list[_Record], cursor: _Cursor, *, more: bool) -> CrmPage:
        calls, rejected = [], []
        for record in records:
            try:
                calls.append(self._call(record))
            except (ValueError, ValidationError) as exc:
                problem = _problems(exc) if isinstance(exc, ValidationError) else str(exc)
                rejected.append(RejectedRecord(external_id=record.id, problem=problem))
        if calls:
            cards = self._cards([c.external_id for c in calls])
            calls = [c.model_copy(update={"links": cards.get(c.external_id, {})}) for c in calls]
        return CrmPage(calls=calls, rejected=rejected, cursor=cursor.dump(), more=more)

    def _call(self, record: _Record) -> CrmCall:
        """The CrmCall of one search result; ValueError names what is wrong with it."""
        props = record.properties
        url = props.get("hs_call_recording_url")
        if not isinstance(url, str) or not url.strip():
            status = props.get("hs_call_status") or "unknown"
            raise ValueError(f"no recording (hs_call_recording_url is empty; status {status})")
        duration = props.get("hs_call_duration")
        try:
            duration_s = float(duration) / 1000 if duration not in (None, "") else None
        except (TypeError, ValueError):
            raise ValueError(f"hs_call_duration {duration!r} is not milliseconds") from None
        started = props.get("hs_timestamp")
        started_at = _datetime(started) if started else None
        if started and started_at is None:
            raise ValueError(f"hs_timestamp {started!r} is not a date and time")
        direction = str(props.get("hs_call_direction") or "").upper()
        return CrmCall(
            external_id=record.id,
            recording_url=url.strip(),
            started_at=started_at,
            operator=props.get("hubspot_owner_id") or None,
            category=self.config.category,
            duration_s=duration_s,
            direction=DIRECTIONS.get(direction),
        )

    def _cards(self, call_ids: list[str]) -> dict[str, dict[str, str]]:
        """call id -> {"deals": "1,2", "contacts": "9"}: every associated card, so the note
        reaches all of them (HubSpot ids are digits, so a comma cannot be part of one)."""
        cards: dict[str, dict[str, str]] = {}
        for kind in LINKED_CARDS:
            path = f"/crm/v4/associations/calls/{kind}/batch/read"
            # 207 Multi-Status lists calls without such cards under `errors`: not a failure.
            answer = self._http.request(
                "POST", path, json={"inputs": [{"id": i} for i in call_ids]}
            )
            try:
                results = _AssociationAnswer.model_validate(answer or {}).results
            except ValidationError as exc:
                raise CrmPayloadError(
                    f"hubspot {self.tenant_id}: {path} answer: {_problems(exc)}"
                ) from None
            for result in results:
                ids = list(dict.fromkeys(str(t.toObjectId) for t in result.to))
                if ids:
                    cards.setdefault(result.from_.id, {})[kind] = ",".join(ids)
        return cards

    # --- recordings --------------------------------------------------------------------

    def fetch_recording(self, source_uri: str, max_bytes: int) -> bytes:
        from callqa.crm.fetch import fetch_url

        # HubSpot-hosted recordings need the token; any other host (a telephony
        # provider's) must never see it.
        headers = None
        if _origin(source_uri) == self._api_origin:
            headers = {"Authorization": f"Bearer {self._token.reveal()}"}
        return fetch_url(source_uri, max_bytes=max_bytes, headers=headers)

    # --- results -----------------------------------------------------------------------

    def write_result(
        self, links: dict[str, str], result: CallResult, existing: dict[str, str]
    ) -> dict[str, str]:
        """One note on every linked card: {"note": id}, updated in place on a re-run and
        created again if it was deleted. No linked card: nothing to write, {}."""
        associations = _note_associations(links)
        if not associations:
            return {}
        properties = {"hs_note_body": note_html(result)}
        note_id = existing.get(NOTE_KEY, "")
        if note_id.isdigit() and self._update_note(note_id, properties):
            return {NOTE_KEY: note_id}
        now_ms = int(self._clock() * 1000)
        body = {
            "properties": {**properties, "hs_timestamp": str(now_ms)},
            "associations": associations,
        }
        created = self._http.request("POST", NOTES_PATH, json=body)
        try:
            return {NOTE_KEY: _ObjectRef.model_validate(created).id}
        except ValidationError as exc:
            raise CrmPayloadError(
                f"hubspot {self.tenant_id}: note create answer: {_problems(exc)}"
            ) from None

    def _update_note(self, note_id: str, properties: dict[str, str]) -> bool:
        """False when the note is gone (deleted in HubSpot): write a new one."""
        try:
            self._http.request("PATCH", f"{NOTES_PATH}/{note_id}", json={"properties": properties})
            return True
        except CrmError as exc:
            # Outages, 429 and refused tokens are subclasses and mean retry later. A plain
            # CrmError is another 4xx; only a note that no longer exists means write anew.
            if type(exc) is not CrmError or self._note_exists(note_id):
                raise
            return False

    def _note_exists(self, note_id: str) -> bool:
        answer = self._http.request(
            "POST", f"{NOTES_PATH}/batch/read", json={"inputs": [{"id": note_id}], "properties": []}
        )
        results = (answer or {}).get("results") or []
        return any(isinstance(r, dict) and str(r.get("id")) == note_id for r in results)

    # --- webhooks ----------------------------------------------------------------------

    def parse_webhook(self, body: bytes, content_type: str) -> list[CrmCall]:
        """No calls: HubSpot's events carry no recording (see the module docstring); a
        well-formed event array is acknowledged and the poll lists the calls."""
        try:
            events = _WEBHOOK_EVENTS.validate_json(body)
        except ValidationError as exc:
            raise CrmPayloadError(
                f"not a HubSpot webhook event array ({_problems(exc)}); HubSpot calls are "
                "listed by polling, push them in callqa's own format instead"
            ) from None
        log.info(
            "hubspot %s: %d webhook event(s) acknowledged; the poll lists their calls",
            self.tenant_id,
            len(events),
        )
        return []


def note_html(result: CallResult) -> str:
    """hs_note_body is HTML: every line escaped, the report a link."""
    summary = result.summary
    if len(summary) > MAX_SUMMARY_CHARS:
        summary = summary[:MAX_SUMMARY_CHARS] + "…"
    text = result.model_copy(update={"summary": summary}).note_text()
    lines = [html.escape(line) for line in text.splitlines()]
    if urlsplit(result.report_url).scheme in ("http", "https") and lines:
        url = html.escape(result.report_url, quote=True)
        lines[-1] = f'Report: <a href="{url}">{html.escape(result.report_url)}</a>'
    return "<p>" + "<br>".join(lines) + "</p>"


def _note_associations(links: dict[str, str]) -> list[dict]:
    associations = []
    for kind, ids in links.items():
        type_id = NOTE_TYPE_IDS.get(kind)
        if type_id is None:
            raise CrmPayloadError(
                f"links key {kind!r} is not a HubSpot card type ({', '.join(NOTE_TYPE_IDS)})"
            )
        for card in (i.strip() for i in str(ids).split(",")):
            if not card.isdigit():
                raise CrmPayloadError(f"links {kind}: {card!r} is not a HubSpot record id")
            associations.append(
                {
                    "to": {"id": card},
                    "types": [
                        {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}
                    ],
                }
            )
    return associations


def _filter(name: str, operator: str, value: int) -> dict:
    return {"propertyName": name, "operator": operator, "value": str(value)}


def _datetime(value: object) -> datetime | None:
    """HubSpot's datetime values: ISO 8601 (2024-09-13T20:23:03.333Z) or epoch ms."""
    text = str(value).strip()
    try:
        if text.isdigit():
            return _EPOCH + timedelta(milliseconds=int(text))
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, OverflowError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _origin(url: str) -> tuple[str, str, int] | None:
    parts = urlsplit(url)
    try:
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower())
    except ValueError:
        return None
    if not parts.hostname or port is None:
        return None
    return parts.scheme.lower(), parts.hostname.lower(), port


def _problems(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in exc.errors()
    )[:300]
