"""A fake HubSpot CRM API on loopback, speaking the documented wire shapes:

- `POST /crm/v3/objects/calls/search`: filterGroups (OR of ANDed filters), one sort rule,
  `limit` <= 200, `after` offsets, `{total, results, paging.next.after}`; paging past the
  cap (10,000 results for a query, lowered in tests) is a 400, as documented
  (https://developers.hubspot.com/docs/api-reference/search/guide, "Limits"). Results with
  the same sort value come back in an order that is stable but not by id, because HubSpot
  promises no order within ties.
- `POST /crm/v4/associations/calls/{deals|contacts}/batch/read`: the v4 batch answer; calls
  without associations are listed under `errors` with HTTP 207.
- `POST /crm/v3/objects/notes`, `PATCH /crm/v3/objects/notes/{id}` (404 for an unknown
  note), `POST /crm/v3/objects/notes/batch/read`: notes, kept in `notes` as written.
- `GET /recordings/<file>`: a demo FLAC from callqa/demo/calls (bearer token required when
  `recordings_need_auth`, the HubSpot-hosted case).

Every API request needs `Authorization: Bearer <token>` (else 401). `script` holds failures
answered to the next API requests: (status, body, headers) tuples.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

from tests.fakes import LoopbackServer, _QuietHandler, send_json
from tests.paths import DEMO_CALLS

SEARCH_CAP = 10_000
DEFAULT_PROPERTIES = ("hs_createdate", "hs_lastmodifieddate", "hs_object_id")
DATETIMES = {"hs_createdate", "hs_lastmodifieddate", "hs_timestamp"}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
NOTE_TYPES = {214: "deals", 202: "contacts", 190: "companies"}  # note-to-<object> type ids
CALL_TYPES = {"deals": 206, "contacts": 194}  # call-to-<object> type ids


def iso(ms: int) -> str:
    """HubSpot's datetime property format, e.g. 2024-09-13T20:23:03.333Z."""
    return (EPOCH + timedelta(milliseconds=ms)).isoformat(timespec="milliseconds")[:-6] + "Z"


def error(message: str, category: str = "VALIDATION_ERROR") -> dict:
    return {
        "status": "error",
        "message": message,
        "correlationId": str(uuid.uuid4()),
        "category": category,
    }


def _number(name: str, value: object) -> float | None:
    """A property value as a number for comparisons (datetimes as exact epoch milliseconds)."""
    if value in (None, ""):
        return None
    if name in DATETIMES and not str(value).isdigit():
        when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        return (when - EPOCH) // timedelta(milliseconds=1)
    return float(value)


_OPS = {
    "EQ": lambda a, b: a == b,
    "NEQ": lambda a, b: a != b,
    "GT": lambda a, b: a > b,
    "GTE": lambda a, b: a >= b,
    "LT": lambda a, b: a < b,
    "LTE": lambda a, b: a <= b,
}


class FakeHubSpot(LoopbackServer):
    def __init__(
        self,
        token: str = "pat-na1-fake-token-0001",
        *,
        cap: int = SEARCH_CAP,
        recordings_need_auth: bool = True,
    ) -> None:
        self.token = token
        self.cap = cap
        self.recordings_need_auth = recordings_need_auth
        self.calls: dict[str, dict] = {}  # id -> properties
        self.associations: dict[str, dict[str, list[str]]] = {"deals": {}, "contacts": {}}
        self.notes: dict[str, dict] = {}  # id -> {"properties", "associations"}
        self.script: list[tuple] = []
        self.requests: list[tuple[str, str, dict | None]] = []  # (method, path, json body)
        self.recording_headers: list[dict] = []
        self._next_note = 9000
        fake = self

        class Handler(_QuietHandler):
            def do_GET(self):
                fake._recording(self)

            def do_POST(self):
                fake._api(self, "POST")

            def do_PATCH(self):
                fake._api(self, "PATCH")

        super().__init__(Handler)

    def add_call(self, call_id: int | str, modified_ms: int, **properties: object) -> None:
        """A call object; `properties` override the defaults (None removes one)."""
        props = {
            "hs_object_id": str(call_id),
            "hs_createdate": iso(modified_ms),
            "hs_lastmodifieddate": iso(modified_ms),
            "hs_timestamp": iso(modified_ms - 600_000),
            "hs_call_recording_url": self.url("/recordings/call-001.flac"),
            "hs_call_duration": "46960",
            "hs_call_direction": "OUTBOUND",
            "hs_call_status": "COMPLETED",
            "hs_call_title": f"call {call_id}",
            "hubspot_owner_id": "77",
        }
        props.update({k: None if v is None else str(v) for k, v in properties.items()})
        self.calls[str(call_id)] = props

    def touch(self, call_id: int | str, modified_ms: int) -> None:
        self.calls[str(call_id)]["hs_lastmodifieddate"] = iso(modified_ms)

    # --- HTTP ------------------------------------------------------------------------

    def _authorized(self, handler) -> bool:
        return handler.headers.get("authorization") == f"Bearer {self.token}"

    def _recording(self, handler) -> None:
        self.recording_headers.append(dict(handler.headers))
        parts = urlsplit(handler.path)
        if parts.path == "/redirect":  # a file host that hands the download on elsewhere
            target = parse_qs(parts.query)["to"][0]
            handler.send_response(302)
            handler.send_header("location", target)
            handler.send_header("content-length", "0")
            handler.end_headers()
            return
        if self.recordings_need_auth and not self._authorized(handler):
            return send_json(
                handler, 401, error("Authentication required", "INVALID_AUTHENTICATION")
            )
        name = parts.path.removeprefix("/recordings/")
        path = DEMO_CALLS / name
        if "/" in name or not path.is_file():
            return send_json(handler, 404, error("resource not found", "OBJECT_NOT_FOUND"))
        data = path.read_bytes()
        handler.send_response(200)
        handler.send_header("content-type", "audio/flac")
        handler.send_header("content-length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _api(self, handler, method: str) -> None:
        raw = handler.rfile.read(int(handler.headers.get("content-length") or 0))
        body = json.loads(raw) if raw else None
        path = urlsplit(handler.path).path
        self.requests.append((method, path, body))
        if not self._authorized(handler):
            message = "Authentication credentials not found or expired."
            return send_json(handler, 401, error(message, "INVALID_AUTHENTICATION"))
        if self.script:
            status, payload, *headers = self.script.pop(0)
            return send_json(handler, status, payload, headers[0] if headers else None)
        if method == "POST" and path == "/crm/v3/objects/calls/search":
            if len(raw) > 3000:
                return send_json(handler, 400, error("query exceeds 3,000 characters"))
            return send_json(handler, *self._search(body))
        parts = path.strip("/").split("/")
        if method == "POST" and parts[:4] == ["crm", "v4", "associations", "calls"]:
            return send_json(handler, *self._associations(parts[4], body))
        if method == "POST" and path == "/crm/v3/objects/notes":
            return send_json(handler, *self._create_note(body))
        if method == "POST" and path == "/crm/v3/objects/notes/batch/read":
            found = [{"id": i} for i in (x["id"] for x in body["inputs"]) if i in self.notes]
            return send_json(handler, 200, {"status": "COMPLETE", "results": found})
        if method == "PATCH" and path.startswith("/crm/v3/objects/notes/"):
            note = self.notes.get(parts[-1])
            if note is None:
                return send_json(handler, 404, error("resource not found", "OBJECT_NOT_FOUND"))
            note["properties"].update(body["properties"])
            return send_json(handler, 200, {"id": parts[-1], "properties": note["properties"]})
        send_json(handler, 404, error(f"no route {method} {path}", "OBJECT_NOT_FOUND"))

    # --- endpoints -------------------------------------------------------------------

    def _matches(self, props: dict, group: dict) -> bool:
        for f in group["filters"]:
            have = _number(f["propertyName"], props.get(f["propertyName"]))
            want = _number(f["propertyName"], f.get("value"))
            if have is None or not _OPS[f["operator"]](have, want):
                return False
        return True

    def _search(self, body: dict) -> tuple[int, dict]:
        limit, after = int(body.get("limit", 10)), int(body.get("after") or 0)
        sorts = body.get("sorts") or [{"propertyName": "hs_createdate"}]
        if limit > 200 or len(sorts) > 1:
            return 400, error("limit is at most 200; only one sorting rule can be applied")
        if after + limit > self.cap:
            return 400, error(f"Results are limited to {self.cap} for a query; narrow it")
        groups = body.get("filterGroups") or [{"filters": []}]
        found = [p for p in self.calls.values() if any(self._matches(p, g) for g in groups)]
        key = sorts[0]["propertyName"]
        found.sort(key=lambda p: hashlib.md5(p["hs_object_id"].encode()).hexdigest())
        found.sort(
            key=lambda p: _number(key, p.get(key)) or 0,
            reverse=sorts[0].get("direction") == "DESCENDING",
        )
        wanted = list(DEFAULT_PROPERTIES) + list(body.get("properties") or [])
        results = [
            {
                "id": p["hs_object_id"],
                "properties": {name: p.get(name) for name in wanted},
                "createdAt": p["hs_createdate"],
                "updatedAt": p["hs_lastmodifieddate"],
                "archived": False,
            }
            for p in found[after : after + limit]
        ]
        answer: dict = {"total": len(found), "results": results}
        if after + limit < len(found):
            answer["paging"] = {"next": {"after": str(after + limit)}}
        return 200, answer

    def _associations(self, to_type: str, body: dict) -> tuple[int, dict]:
        results, errors = [], []
        for item in body["inputs"]:
            ids = self.associations.get(to_type, {}).get(item["id"])
            if not ids:
                errors.append(
                    {
                        "status": "error",
                        "category": "OBJECT_NOT_FOUND",
                        "message": f"No {to_type} is associated with call {item['id']}",
                        "context": {"fromObjectId": [item["id"]]},
                    }
                )
                continue
            type_id = CALL_TYPES[to_type]
            results.append(
                {
                    "from": {"id": item["id"]},
                    "to": [
                        {
                            "toObjectId": int(i),
                            "associationTypes": [
                                {"category": "HUBSPOT_DEFINED", "typeId": type_id, "label": None}
                            ],
                        }
                        for i in ids
                    ],
                }
            )
        now = iso(1_700_000_000_000)
        answer = {"status": "COMPLETE", "results": results, "startedAt": now, "completedAt": now}
        if errors:
            answer.update(errors=errors, numErrors=len(errors))
        return (207 if errors else 200), answer

    def _create_note(self, body: dict) -> tuple[int, dict]:
        props = body.get("properties") or {}
        if not props.get("hs_timestamp"):
            return 400, error("Property hs_timestamp is required")
        known = {
            kind: {i for ids in self.associations.get(kind, {}).values() for i in ids}
            for kind in ("deals", "contacts")
        }
        for assoc in body.get("associations") or []:
            for t in assoc["types"]:
                kind = NOTE_TYPES.get(t["associationTypeId"])
                if (
                    t.get("associationCategory") != "HUBSPOT_DEFINED"
                    or kind is None
                    or (kind in known and str(assoc["to"]["id"]) not in known[kind])
                ):
                    return 400, error(f"invalid association {assoc}")
        self._next_note += 1
        note_id = str(self._next_note)
        self.notes[note_id] = {"properties": dict(props), "associations": body.get("associations")}
        return 201, {"id": note_id, "properties": props, "archived": False}
