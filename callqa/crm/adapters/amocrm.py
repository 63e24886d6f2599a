"""AmoCRM (amoCRM.ru, amoCRM.com, Kommo) as a call source: the call notes on its cards.

Telephony integrations log each call as a `call_in` / `call_out` note on a lead, contact or
company card, with the recording's URL in `params.link`. This adapter polls those notes,
takes AmoCRM's pushes of them, and writes the score back as one `common` note per card.

What it speaks (API v4, long-lived token of a private integration as `Authorization:
Bearer`):

- Polling: `GET /api/v4/{entity_type}/notes` with `filter[note_type][]=call_in&
  filter[note_type][]=call_out`, `filter[updated_at][from]` / `[to]` (unix seconds, a
  range "from ... to", read as inclusive), one `order[updated_at]` or `order[id]`
  (`asc`), `page` and `limit` (at most 250). The answer is HAL, the notes in
  `_embedded.notes`; an empty result is HTTP 204 with no body.
  Sources: amocrm.ru/developers/content/crm_platform/events-and-notes ("Список примечаний
  по типу сущности"), developers.kommo.com/reference/notes-by-entity-type, the official
  client's `NotesFilter` (github.com/amocrm/amocrm-api-php, src/AmoCRM/Filters), and
  developers.kommo.com/reference/notes-types for the call note `params` (uniq, duration,
  source, link, phone).
- Write-back: `POST /api/v4/{entity_type}/notes` with `[{"entity_id", "note_type":
  "common", "params": {"text"}}]` (the new id is `_embedded.notes[0].id`), and `PATCH
  /api/v4/{entity_type}/notes/{id}` to edit the note a previous push wrote (same pages).
- Limits: at most 7 requests a second per integration, 429 beyond that
  (developers.kommo.com/docs/limitations); `CrmHttp` turns 429 into `CrmRateLimited` with
  its Retry-After and 401 (expired or revoked token) into `CrmAuthError`. One
  `list_calls` makes one request, two while paging a crowded second (below).

The call's id (`external_id`) is `<entity_type>-<note id>`, e.g. `leads-7712`: v4
addresses a note by card type and id, and the webhook names both, so a push and a later
poll of the same note give the same id (and the same partition key). A call noted on two
cards is two notes, so two calls.

Cursor: JSON, `{"v": 1, "at": <entity type being read>, "s": {<entity type>: {"done": T,
"tie": ...}}}`, one small entry per configured entity type, whatever the account holds.
The entity types are read one after the other; `more` stays True until the last is caught
up. For one entity type:

- `done` = T: every call note with `updated_at <= T` has been listed (or rejected). A
  poll asks for `updated_at` in [T+1, now - SETTLE_S], ordered by `updated_at`, page 1.
  A short page is everything in that window: all of it is listed and T becomes the
  window's end. A full page lists only the notes before its last second (the API orders
  ties in no documented order, so a second cut by the page end is not trusted) and T
  becomes that second - 1. No offset paging here, so a note edited meanwhile cannot shift
  others out of reach: an edit moves it past the window, and it is listed again later,
  as a changed call (that is how a note whose link arrived late gets in).
- The window's end stays SETTLE_S behind the clock, so no note can still appear in a
  second the cursor has passed (a slow commit, our clock a little ahead of AmoCRM's).
- `tie`: when a full page holds a single second u (more notes in one second than a page),
  that second is paged on its own by `order[id]=asc` with `page` numbers, keeping the
  highest id listed (`after_id`: notes at or below it are never listed again) and the id
  of the last note read (`anchor_id`). The second is in the past, so notes can only leave
  it (edited or deleted), never join it. Leaving shifts later notes one place forward,
  and a plain next page would skip them; so after reading page p, the note just before it
  (`page=(p-1)*size&limit=1`) must still be the anchor, else the page is thrown away and
  the second is read again from page 1 (notes at or below `after_id` skipped: no
  duplicates). When a page comes back short the second is done and T = u.

Rejected notes (no recording link, a duration that is not a number...) count as listed:
each is reported once, with its id, and the cursor moves past it.

Webhooks ("note added" events): AmoCRM posts application/x-www-form-urlencoded bodies
with PHP-style keys, `account[subdomain]`, `account[id]` and, per note,
`leads[note][0][note][id|element_id|element_type|note_type|text|created_at|updated_at|
main_user_id|created_by|...]` (or `contacts[note]...`, `companies[note]...`). AmoCRM does
not document the note fields of this push. The shape followed here is the one captured
from live pushes in public code (e.g. `leads[note][0][note][note_type]` "10" incoming /
"11" outgoing, the legacy numbering, with `text` a JSON object holding the call's
`LINK`, `DURATION`, `PHONE`, `UNIQ`, `SRC`), plus the v4 type names and lower-case keys in
case the push follows v4 naming. Call notes whose push carries no usable recording link
or duration are skipped, not failed: a poll lists (or rejects, with the reason) that same
note, and failing the push would only make AmoCRM retry it and, after repeated failures,
turn the webhook off.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal
from urllib.parse import parse_qsl

from pydantic import BaseModel, Field, ValidationError

from callqa.config.crm import AmoCrmConfig
from callqa.crm.base import CallResult, CrmCall, CrmPage, RejectedRecord
from callqa.crm.fetch import fetch_url, safe_url
from callqa.crm.http import CrmHttp
from callqa.errors import (
    CrmAuthError,
    CrmError,
    CrmPayloadError,
    CrmRateLimited,
    CrmUnavailable,
)

DIRECTIONS = {"call_in": "inbound", "call_out": "outbound"}
LEGACY_NOTE_TYPES = {"10": "call_in", "11": "call_out"}  # the push's numeric note_type
NOTE_ENTITIES = ("leads", "contacts", "companies")
MAX_PAGE = 250  # AmoCRM's limit per request
SETTLE_S = 30  # how far behind the clock a poll's window ends
CURSOR_VERSION = 1
MAX_PUSHED_NOTES = 1000
_PUSH_KEY = re.compile(
    r"^(?P<entity>[a-z_]+)\[note\]\[(?P<index>\d+)\](?:\[note\])?\[(?P<field>[a-z_]+)\]$", re.I
)


class _Tie(BaseModel):
    """Paging through one crowded second by note id (see the module docstring)."""

    page: int = Field(ge=1)
    size: int = Field(ge=1, le=MAX_PAGE)
    after_id: int = Field(0, ge=0)
    anchor_id: int = Field(0, ge=0)


class _EntityState(BaseModel):
    done: int = Field(0, ge=0)
    tie: _Tie | None = None


class _Cursor(BaseModel):
    v: Literal[1] = CURSOR_VERSION
    at: str
    s: dict[str, _EntityState] = Field(default_factory=dict)


class _Unusable(Exception):
    """A call note that cannot become a CrmCall; the message says why."""


class AmoCrmAdapter:
    name: ClassVar[str] = "amocrm"

    def __init__(self, tenant_id: str, config: AmoCrmConfig):
        self.tenant_id = tenant_id
        self.config = config
        self.source = f"amocrm {tenant_id}"
        self.entity_types = list(dict.fromkeys(config.entity_types))
        self.settle_s = SETTLE_S
        self.clock: Callable[[], float] = time.time  # AmoCRM's clock, as near as we know it
        self._client: CrmHttp | None = None  # made on first use: a push needs no token

    def __repr__(self) -> str:
        return f"AmoCrmAdapter(tenant={self.tenant_id!r}, api={safe_url(self.config.api_base)!r})"

    @property
    def _http(self) -> CrmHttp:
        if self._client is None:
            token = self.config.token.resolve(f"tenant {self.tenant_id} crm.token")
            self._client = CrmHttp(self.source, self.config.api_base, token)
        return self._client

    # --- polling ---------------------------------------------------------------------

    def list_calls(self, cursor: str | None, limit: int) -> CrmPage:
        state = self._load(cursor)
        entity = state.at
        current = state.s.setdefault(entity, _EntityState())
        size = max(1, min(limit, self.config.page_size, MAX_PAGE))
        if current.tie is not None:
            notes, caught_up = self._tie_step(entity, current, size)
        else:
            notes, caught_up = self._window_step(entity, current, size)
        calls, rejected = self._convert(entity, notes)
        more = True
        if caught_up:
            following = self.entity_types.index(entity) + 1
            more = following < len(self.entity_types)
            state.at = self.entity_types[following % len(self.entity_types)]
        return CrmPage(calls=calls, rejected=rejected, cursor=self._dump(state), more=more)

    def _window_step(self, entity: str, current: _EntityState, size: int) -> tuple[list, bool]:
        """One page of [done+1, now-settle] by updated_at: (notes to list, caught up)."""
        until = int(self.clock()) - self.settle_s
        if until <= current.done:
            return [], True
        notes = self._notes(
            entity,
            [
                ("filter[updated_at][from]", current.done + 1),
                ("filter[updated_at][to]", until),
                ("order[updated_at]", "asc"),
                ("page", 1),
                ("limit", size),
            ],
        )
        if len(notes) < size:
            current.done = until
            return notes, True
        last = max((s for s in map(_stamp, notes) if s is not None), default=None)
        if last is None:
            raise CrmPayloadError(
                f"{self.source}: GET /api/v4/{entity}/notes: a full page of notes without "
                "a numeric updated_at"
            )
        cut = next(i for i, note in enumerate(notes) if _stamp(note) == last)
        current.done = last - 1
        if cut == 0:  # the whole page is one second: page through it by id
            current.tie = _Tie(page=1, size=size)
        return notes[:cut], False

    def _tie_step(self, entity: str, current: _EntityState, size: int) -> tuple[list, bool]:
        """One page of the crowded second done+1, by id: (notes to list, caught up)."""
        tie = current.tie
        assert tie is not None
        if size < tie.size:  # a smaller limit than the pages so far: start the second over
            tie = current.tie = _Tie(page=1, size=size, after_id=tie.after_id)
        second = current.done + 1
        window = [("filter[updated_at][from]", second), ("filter[updated_at][to]", second)]
        order = [("order[id]", "asc")]
        notes = self._notes(entity, [*window, *order, ("page", tie.page), ("limit", tie.size)])
        if tie.page > 1:
            before = self._notes(
                entity, [*window, *order, ("page", (tie.page - 1) * tie.size), ("limit", 1)]
            )
            if not before or (_note_id(before[0]) or 0) != tie.anchor_id:
                # A note read earlier left this second: later ones moved forward, so this
                # page may have skipped some. Read the second again from the start.
                current.tie = _Tie(page=1, size=tie.size, after_id=tie.after_id)
                return [], False
        fresh = [n for n in notes if (_note_id(n) or tie.after_id + 1) > tie.after_id]
        ids = [_note_id(n) or 0 for n in notes]
        if len(notes) < tie.size:
            current.done, current.tie = second, None
        else:
            current.tie = _Tie(
                page=tie.page + 1,
                size=tie.size,
                after_id=max([tie.after_id, *ids]),
                anchor_id=ids[-1],
            )
        return fresh, False

    def _notes(self, entity: str, params: list[tuple[str, Any]]) -> list:
        types = [("filter[note_type][]", t) for t in DIRECTIONS]
        answer = self._http.request("GET", f"/api/v4/{entity}/notes", params=types + params)
        if answer is None:  # 204: nothing matches
            return []
        embedded = answer.get("_embedded") if isinstance(answer, dict) else None
        notes = embedded.get("notes") if isinstance(embedded, dict) else None
        if not isinstance(notes, list):
            raise CrmPayloadError(
                f"{self.source}: GET /api/v4/{entity}/notes: answer has no _embedded.notes list"
            )
        return notes

    def _convert(self, entity: str, notes: list) -> tuple[list[CrmCall], list[RejectedRecord]]:
        calls, rejected = [], []
        for note in notes:
            note_id = _note_id(note)
            external_id = f"{entity}-{note_id}" if note_id is not None else None
            try:
                call = self._note_call(entity, note)
            except _Unusable as exc:
                rejected.append(RejectedRecord(external_id=external_id, problem=str(exc)))
                continue
            if call is not None:
                calls.append(call)
        return calls, rejected

    def _note_call(self, entity: str, note: Any) -> CrmCall | None:
        """The call in one note of the notes API; None for a note that is no call."""
        if not isinstance(note, dict):
            raise _Unusable(f"{entity} note is not a JSON object")
        if _note_id(note) is None:
            raise _Unusable(f"{entity} note without a numeric id: {str(note.get('id'))[:40]!r}")
        note_type = note.get("note_type")
        if not isinstance(note_type, str) or note_type not in DIRECTIONS:
            return None
        params = note.get("params")
        if not isinstance(params, dict):
            raise _Unusable("call note has no params object")
        return self._call(
            entity,
            note_id=note["id"],
            entity_id=note.get("entity_id"),
            note_type=note_type,
            link=params.get("link"),
            duration=params.get("duration"),
            created_at=note.get("created_at"),
            operator=note.get("responsible_user_id") or note.get("created_by"),
        )

    def _call(
        self,
        entity: str,
        *,
        note_id: int,
        entity_id: Any,
        note_type: str,
        link: Any,
        duration: Any,
        created_at: Any,
        operator: Any,
    ) -> CrmCall:
        if not isinstance(link, str) or not link.strip():
            raise _Unusable("call note has no recording link (params.link)")
        link = link.strip()
        if not link.lower().startswith(("http://", "https://")):
            raise _Unusable(f"recording link {safe_url(link)!r} is not an http(s) URL")
        card = _integer(entity_id)
        if card is None:
            raise _Unusable(f"call note has no numeric entity_id: {str(entity_id)[:40]!r}")
        try:
            return CrmCall(
                external_id=f"{entity}-{note_id}",
                recording_url=link,
                started_at=_unix(created_at),
                operator=str(operator) if _integer(operator) else None,
                category=self.config.category,
                duration_s=_seconds(duration),
                direction=DIRECTIONS[note_type],
                links={entity: str(card)},
            )
        except ValidationError as exc:
            raise _Unusable(
                "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            ) from None

    # --- cursor ----------------------------------------------------------------------

    def _load(self, cursor: str | None) -> _Cursor:
        if cursor is None:
            return _Cursor(at=self.entity_types[0])
        try:
            state = _Cursor.model_validate_json(cursor)
        except ValidationError as exc:
            raise CrmPayloadError(
                f"{self.source}: cursor {cursor[:80]!r} was not written by this adapter "
                f"({exc.error_count()} problem(s), first: {exc.errors()[0]['msg']})"
            ) from None
        # Entity types dropped from the config are forgotten; a new one starts at the
        # beginning of its notes.
        state.s = {k: v for k, v in state.s.items() if k in self.entity_types}
        if state.at not in self.entity_types:
            state.at = self.entity_types[0]
        return state

    @staticmethod
    def _dump(state: _Cursor) -> str:
        return state.model_dump_json(exclude_none=True, exclude_defaults=False)

    # --- recordings ------------------------------------------------------------------

    def fetch_recording(self, source_uri: str, max_bytes: int) -> bytes:
        # The link points at the telephony provider's host, named by CRM data: it gets no
        # Authorization header (fetch_url would carry one through redirects, too).
        return fetch_url(source_uri, max_bytes=max_bytes)

    # --- write-back ------------------------------------------------------------------

    def write_result(
        self, links: dict[str, str], result: CallResult, existing: dict[str, str]
    ) -> dict[str, str]:
        text = result.note_text()
        written: dict[str, str] = {}
        try:
            self._write_notes(links, text, existing, written)
        except CrmError as exc:
            exc.written = dict(written)  # what reached the CRM before the failure
            raise
        return written

    def _write_notes(
        self, links: dict[str, str], text: str, existing: dict[str, str], written: dict[str, str]
    ) -> None:
        for entity, card in links.items():
            entity_id = _integer(card)
            if entity not in NOTE_ENTITIES or entity_id is None:
                raise CrmPayloadError(
                    f"{self.source}: cannot write a note to card {entity}:{card} (cards are "
                    f"{', '.join(NOTE_ENTITIES)} with a numeric id)"
                )
            key = f"{entity}:{entity_id}"
            note_id = existing.get(key)
            if note_id and self._edit_note(entity, entity_id, note_id, text):
                written[key] = note_id
            else:
                written[key] = self._add_note(entity, entity_id, text)

    def _edit_note(self, entity: str, entity_id: int, note_id: str, text: str) -> bool:
        """Edit our earlier note; False when it is gone from the card (then add one)."""
        if _integer(note_id) is None:
            return False
        body = {"entity_id": entity_id, "note_type": "common", "params": {"text": text}}
        try:
            self._http.request("PATCH", f"/api/v4/{entity}/notes/{note_id}", json=body)
        except (CrmAuthError, CrmRateLimited, CrmUnavailable, CrmPayloadError):
            raise
        except CrmError:
            # A 4xx: most likely 404, the note was deleted in AmoCRM. Only if the note is
            # really gone is a new one added; otherwise the error stands.
            if self._note_exists(entity, entity_id, int(note_id)):
                raise
            return False
        return True

    def _note_exists(self, entity: str, entity_id: int, note_id: int) -> bool:
        answer = self._http.request(
            "GET", f"/api/v4/{entity}/notes", params=[("filter[id][]", note_id)]
        )
        embedded = answer.get("_embedded") if isinstance(answer, dict) else None
        notes = embedded.get("notes") if isinstance(embedded, dict) else None
        return any(
            isinstance(n, dict) and n.get("id") == note_id and n.get("entity_id") == entity_id
            for n in notes or []
        )

    def _add_note(self, entity: str, entity_id: int, text: str) -> str:
        body = [{"entity_id": entity_id, "note_type": "common", "params": {"text": text}}]
        answer = self._http.request("POST", f"/api/v4/{entity}/notes", json=body)
        try:
            return str(int(answer["_embedded"]["notes"][0]["id"]))
        except (TypeError, KeyError, IndexError, ValueError):
            raise CrmPayloadError(
                f"{self.source}: POST /api/v4/{entity}/notes: answer has no _embedded.notes[0].id"
            ) from None

    # --- webhooks --------------------------------------------------------------------

    def parse_webhook(self, body: bytes, content_type: str) -> list[CrmCall]:
        media = content_type.split(";")[0].strip().lower()
        if media != "application/x-www-form-urlencoded":
            raise CrmPayloadError(
                f"AmoCRM pushes are application/x-www-form-urlencoded, not {media or 'untyped'}"
            )
        try:
            pairs = parse_qsl(
                body.decode("utf-8"),
                keep_blank_values=True,
                max_num_fields=50 * MAX_PUSHED_NOTES,
            )
        except (UnicodeDecodeError, ValueError) as exc:
            raise CrmPayloadError(f"body is not form-encoded UTF-8 ({exc})"[:200]) from None
        fields = dict(pairs)
        subdomain = fields.get("account[subdomain]", "").strip().lower()
        if not subdomain:
            raise CrmPayloadError("push has no account[subdomain]")
        if subdomain != self.config.subdomain:
            raise CrmPayloadError(
                f"push is from AmoCRM account {subdomain!r}, but tenant {self.tenant_id} "
                f"reads {self.config.subdomain!r}"
            )
        calls: dict[str, CrmCall] = {}
        for (entity, index), note in _pushed_notes(pairs).items():
            call = self._pushed_call(entity, f"{entity}[note][{index}]", note)
            if call is not None:
                calls.setdefault(call.external_id, call)
        return list(calls.values())

    def _pushed_call(self, entity: str, where: str, note: dict[str, str]) -> CrmCall | None:
        if entity not in self.entity_types:
            return None  # a card type this tenant does not read
        note_type = note.get("note_type", "").strip()
        note_type = LEGACY_NOTE_TYPES.get(note_type, note_type)
        if not note_type:
            raise CrmPayloadError(f"{where}: note has no note_type")
        if note_type not in DIRECTIONS:
            return None
        note_id, entity_id = _integer(note.get("id")), _integer(note.get("element_id"))
        if note_id is None:
            raise CrmPayloadError(f"{where}: call note has no numeric id")
        if entity_id is None:
            raise CrmPayloadError(f"{where}: call note {note_id} has no numeric element_id")
        params = _call_params(note.get("text", ""))
        try:
            return self._call(
                entity,
                note_id=note_id,
                entity_id=entity_id,
                note_type=note_type,
                link=params.get("LINK"),
                duration=params.get("DURATION"),
                created_at=note.get("created_at"),
                operator=note.get("main_user_id")
                or note.get("responsible_user_id")
                or note.get("created_by"),
            )
        except _Unusable:
            return None  # the poll reports it, with the reason


def _pushed_notes(pairs: list[tuple[str, str]]) -> dict[tuple[str, str], dict[str, str]]:
    """`leads[note][0][note][id]=7` ... as {("leads", "0"): {"id": "7", ...}}."""
    notes: dict[tuple[str, str], dict[str, str]] = {}
    for key, value in pairs:
        match = _PUSH_KEY.match(key)
        if match is not None:
            slot = (match["entity"].lower(), match["index"])
            notes.setdefault(slot, {})[match["field"].lower()] = value
    if len(notes) > MAX_PUSHED_NOTES:
        raise CrmPayloadError(f"{len(notes)} notes in one push (at most {MAX_PUSHED_NOTES})")
    return notes


def _call_params(text: str) -> dict[str, Any]:
    """A pushed call note's `text`: a JSON object of LINK, DURATION, PHONE... ({} if not)."""
    try:
        params = json.loads(text) if text.strip() else {}
    except ValueError:
        return {}
    return {str(k).upper(): v for k, v in params.items()} if isinstance(params, dict) else {}


def _integer(value: Any) -> int | None:
    """A positive integer id from an int or a string of digits (bools are not ids)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip()) or None
    return None


def _note_id(note: Any) -> int | None:
    return _integer(note.get("id")) if isinstance(note, dict) else None


def _stamp(note: Any) -> int | None:
    value = note.get("updated_at") if isinstance(note, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _unix(value: Any) -> datetime | None:
    seconds = _integer(value)
    return datetime.fromtimestamp(seconds, tz=UTC) if seconds is not None else None


def _seconds(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _Unusable(f"duration {str(value)[:40]!r} is not a number of seconds")
    try:
        seconds = float(value)
    except ValueError:
        raise _Unusable(f"duration {value[:40]!r} is not a number of seconds") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise _Unusable(f"duration {str(value)[:40]!r} is not a number of seconds")
    return seconds
