"""A fake AmoCRM API v4 account on loopback: call notes to poll, notes to write, recordings.

It speaks the documented wire shape (amocrm.ru/developers/content/crm_platform/events-and-notes,
developers.kommo.com/reference/notes-by-entity-type): `GET /api/v4/{entity}/notes` takes
`filter[note_type][]`, `filter[id][]`, `filter[updated_at][from|to]` (inclusive), one
`order[updated_at|id]=asc|desc`, `page` and `limit` (at most 250) and answers HAL
`{"_page", "_links": {"self", "next"}, "_embedded": {"notes": [...]}}`, or 204 with no body
when nothing matches. The filtering, ordering and paging are real, over `notes`; ties on
`updated_at` come out in descending id order, so a client that assumes id order within a
second finds out. `POST /api/v4/{entity}/notes` adds notes, `PATCH
/api/v4/{entity}/notes/{id}` edits one (404 when it is gone). Errors take the
application/problem+json shape. A wrong bearer token answers 401; `fail_next` queues
failures (429 with Retry-After, 503, 401) for the next API requests. `/recordings/<file>`
serves the demo FLAC files without auth, as a telephony host would.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from urllib.parse import parse_qs, urlsplit

from tests.fakes import LoopbackServer, _QuietHandler, send_json
from tests.paths import DEMO_CALLS

ENTITIES = ("leads", "contacts", "companies")
NOTE_TYPES = {"common", "call_in", "call_out", "service_message", "sms_in", "sms_out"}
_NOTES_PATH = re.compile(r"^/api/v4/(?P<entity>[a-z]+)/notes(?:/(?P<id>\d+))?$")


def problem(status: int, title: str, detail: str) -> dict:
    return {
        "title": title,
        "type": f"https://httpstatus.es/{status}",
        "status": status,
        "detail": detail,
    }


class FakeAmoCrm(LoopbackServer):
    """One account. `notes` holds every note as the API shows it plus `_entity` (its card
    type); `requests` each API request as (method, path, query); `writes` each POST/PATCH
    as (method, path, body); `recording_headers` the headers of each recording download."""

    def __init__(self, token: str, subdomain: str = "acme") -> None:
        self.token, self.subdomain = token, subdomain
        self.notes: list[dict] = []
        self.requests: list[tuple[str, str, dict]] = []
        self.writes: list[tuple[str, str, object]] = []
        self.recording_headers: list[dict] = []
        self.failures: list[tuple[int, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._next_id = 7001
        fake = self

        class Handler(_QuietHandler):
            def do_GET(self):
                fake._serve(self, "GET")

            def do_POST(self):
                fake._serve(self, "POST")

            def do_PATCH(self):
                fake._serve(self, "PATCH")

        super().__init__(Handler)

    # --- what a test sets up -----------------------------------------------------------

    def add_call(self, entity: str, entity_id: int, updated_at: int, **fields) -> dict:
        """A call note; `fields` override the note's keys or its params (link, duration...)."""
        note_id = fields.pop("id", None) or self._new_id()
        params = {
            "uniq": f"uniq-{note_id}",
            "duration": 61,
            "source": "fake-pbx",
            "link": self.recording_url("call-001.flac"),
            "phone": "+79001234567",
        }
        params.update({k: fields.pop(k) for k in list(fields) if k in params})
        note = {
            "id": note_id,
            "entity_id": entity_id,
            "created_by": 0,
            "updated_by": 0,
            "created_at": updated_at - 5,
            "updated_at": updated_at,
            "responsible_user_id": 504141,
            "group_id": 0,
            "note_type": "call_in",
            "params": params,
            "account_id": 29001,
        }
        note.update(fields)
        return self.add_raw(entity, note)

    def add_raw(self, entity: str, note: dict) -> dict:
        with self._lock:
            self.notes.append({**note, "_entity": entity})
        return note

    def update(self, note_id: int, updated_at: int, **params) -> None:
        note = self.find(note_id)
        note["params"] = {**note["params"], **params}
        note["updated_at"] = updated_at

    def delete(self, note_id: int) -> None:
        with self._lock:
            self.notes = [n for n in self.notes if n["id"] != note_id]

    def find(self, note_id: int) -> dict:
        return next(n for n in self.notes if n["id"] == note_id)

    def notes_on(self, entity: str, entity_id: int, note_type: str = "common") -> list[dict]:
        return [
            n
            for n in self.notes
            if (n["_entity"], n["entity_id"], n["note_type"]) == (entity, entity_id, note_type)
        ]

    def fail_next(self, status: int, times: int = 1, headers: dict | None = None) -> None:
        self.failures += [(status, headers or {})] * times

    def recording_url(self, name: str) -> str:
        return self.url(f"/recordings/{name}")

    @property
    def api_base(self) -> str:
        return self.url("")

    # --- the server side ---------------------------------------------------------------

    def _new_id(self) -> int:
        with self._lock:
            self._next_id += 1
            return self._next_id

    def _serve(self, handler, method: str) -> None:
        parts = urlsplit(handler.path)
        if method == "GET" and parts.path.startswith("/recordings/"):
            return self._recording(handler, parts.path.rsplit("/", 1)[1])
        query = parse_qs(parts.query, keep_blank_values=True)
        self.requests.append((method, parts.path, query))
        length = int(handler.headers.get("content-length") or 0)
        raw = handler.rfile.read(length) if length else b""
        if self.failures:
            status, headers = self.failures.pop(0)
            return send_json(handler, status, problem(status, "Scripted", "failure"), headers)
        if handler.headers.get("authorization") != f"Bearer {self.token}":
            return send_json(handler, 401, problem(401, "Unauthorized", "Invalid token"))
        match = _NOTES_PATH.match(parts.path)
        if match is None or match["entity"] not in ENTITIES:
            return send_json(handler, 404, problem(404, "Not Found", parts.path))
        entity, note_id = match["entity"], match["id"]
        try:
            body = json.loads(raw) if raw else None
            if method == "GET" and note_id is None:
                return self._list(handler, entity, query, parts.path)
            if method == "POST" and note_id is None:
                return self._add(handler, entity, body, parts.path)
            if method == "PATCH" and note_id is not None:
                return self._edit(handler, entity, int(note_id), body, parts.path)
        except (ValueError, KeyError, TypeError) as exc:
            return send_json(handler, 400, problem(400, "Bad Request", repr(exc)))
        send_json(handler, 405, problem(405, "Method Not Allowed", method))

    def _list(self, handler, entity: str, query: dict, path: str) -> None:
        def one(key: str) -> str | None:
            return query[key][0] if key in query else None

        limit, page = int(one("limit") or 50), int(one("page") or 1)
        if not 1 <= limit <= 250 or page < 1:
            raise ValueError(f"limit {limit} / page {page} out of range")
        orders = [(k[6:-1], v[0]) for k, v in query.items() if k.startswith("order[")]
        if len(orders) > 1 or any(
            f not in ("updated_at", "id") or d not in ("asc", "desc") for f, d in orders
        ):
            raise ValueError(f"unsupported order {orders}")
        field, direction = orders[0] if orders else ("id", "asc")
        types = set(query.get("filter[note_type][]", []) + query.get("filter[note_type]", []))
        ids = {int(i) for i in query.get("filter[id][]", [])}
        low = int(one("filter[updated_at][from]") or one("filter[updated_at]") or 0)
        high = int(one("filter[updated_at][to]") or 2**62)
        rows = [
            n
            for n in self.notes
            if n["_entity"] == entity
            and (not types or n["note_type"] in types)
            and (not ids or n["id"] in ids)
            and low <= n["updated_at"] <= high
        ]
        # Within one second, newest id first: real ties come in no documented order.
        key = (lambda n: (n["updated_at"], -n["id"])) if field == "updated_at" else None
        rows.sort(key=key or (lambda n: n["id"]), reverse=direction == "desc")
        chunk = rows[(page - 1) * limit : page * limit]
        if not chunk:
            handler.send_response(204)
            handler.end_headers()
            return None
        links = {"self": {"href": self.url(f"{path}?page={page}")}}
        if page * limit < len(rows):
            links["next"] = {"href": self.url(f"{path}?page={page + 1}")}
        notes = [{k: v for k, v in n.items() if not k.startswith("_")} for n in chunk]
        send_json(handler, 200, {"_page": page, "_links": links, "_embedded": {"notes": notes}})

    def _add(self, handler, entity: str, body: list, path: str) -> None:
        self.writes.append(("POST", path, body))
        added, now = [], int(time.time())
        for i, item in enumerate(body):
            if item["note_type"] not in NOTE_TYPES or not isinstance(item["entity_id"], int):
                raise ValueError(f"note {i}: bad note_type or entity_id")
            note = {
                "id": self._new_id(),
                "entity_id": item["entity_id"],
                "note_type": item["note_type"],
                "params": dict(item["params"]),
                "created_at": now,
                "updated_at": now,
                "responsible_user_id": 0,
            }
            self.add_raw(entity, note)
            added.append({"id": note["id"], "entity_id": note["entity_id"], "request_id": str(i)})
        send_json(handler, 200, {"_links": {"self": {"href": path}}, "_embedded": {"notes": added}})

    def _edit(self, handler, entity: str, note_id: int, body: dict, path: str) -> None:
        self.writes.append(("PATCH", path, body))
        note = next((n for n in self.notes if n["id"] == note_id and n["_entity"] == entity), None)
        if note is None:
            return send_json(handler, 404, problem(404, "Not Found", f"note {note_id}"))
        note["params"] = dict(body.get("params") or note["params"])
        note["updated_at"] = int(time.time())
        send_json(handler, 200, {"id": note_id, "entity_id": note["entity_id"]})

    def _recording(self, handler, name: str) -> None:
        self.recording_headers.append(dict(handler.headers))
        path = DEMO_CALLS / name
        data = path.read_bytes() if name.endswith(".flac") and path.is_file() else None
        handler.send_response(200 if data else 404)
        handler.send_header("content-type", "audio/flac")
        handler.send_header("content-length", str(len(data or b"")))
        handler.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            handler.wfile.write(data or b"")
