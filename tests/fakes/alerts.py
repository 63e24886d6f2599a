"""Fake alert destinations on loopback: the Telegram Bot API's sendMessage and a webhook.

`FakeTelegram` speaks the Bot API's wire shape (https://core.telegram.org/bots/api#making-requests):
`POST /bot<token>/sendMessage` with a JSON body `{"chat_id", "text"}` answers
`{"ok": true, "result": Message}`; a wrong token answers 401 `Unauthorized`, a path that
is no bot method 404 `Not Found`, and scripted errors take the error shape
`{"ok": false, "error_code", "description"[, "parameters": {"retry_after"}]}`.

`FakeAlertWebhook` records every JSON POST (path and body) and answers 200 `{"ok": true}`,
or a scripted status.
"""

from __future__ import annotations

import json
import re
import threading

from tests.fakes import LoopbackServer, _QuietHandler, send_json

_METHOD_PATH = re.compile(r"^/bot(?P<token>[^/]+)/(?P<method>[A-Za-z]+)$")


def telegram_error(code: int, description: str, retry_after: int | None = None) -> dict:
    """A Bot API error answer."""
    body: dict = {"ok": False, "error_code": code, "description": description}
    if retry_after is not None:
        body["parameters"] = {"retry_after": retry_after}
    return body


class FakeTelegram(LoopbackServer):
    """The Bot API for one bot `token`. `messages` holds each accepted sendMessage body;
    `requests` every request's path. Queue `(status, body)` answers in `script` to make
    the next requests fail (e.g. `FakeTelegram.rate_limited(7)`)."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.messages: list[dict] = []
        self.requests: list[str] = []
        self.script: list[tuple[int, dict]] = []
        self._lock = threading.Lock()
        self._next_id = 1
        fake = self

        class Handler(_QuietHandler):
            def do_POST(self):
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                fake.requests.append(self.path)
                match = _METHOD_PATH.match(self.path)
                if match is None:
                    return send_json(self, 404, telegram_error(404, "Not Found"))
                if match["token"] != fake.token:
                    return send_json(self, 401, telegram_error(401, "Unauthorized"))
                if match["method"].lower() != "sendmessage":
                    return send_json(self, 404, telegram_error(404, "Not Found"))
                if fake.script:
                    status, body = fake.script.pop(0)
                    return send_json(self, status, body)
                try:
                    body = json.loads(raw)
                except ValueError:
                    return send_json(self, 400, telegram_error(400, "Bad Request: invalid JSON"))
                if not body.get("chat_id"):
                    return send_json(self, 400, telegram_error(400, "Bad Request: chat not found"))
                text = body.get("text") or ""
                if not 1 <= len(text) <= 4096:
                    return send_json(
                        self, 400, telegram_error(400, "Bad Request: message text is empty")
                    )
                send_json(self, 200, {"ok": True, "result": fake._message(body)})

        super().__init__(Handler)

    def _message(self, body: dict) -> dict:
        with self._lock:
            message_id, self._next_id = self._next_id, self._next_id + 1
            self.messages.append(body)
        return {
            "message_id": message_id,
            "date": 1_700_000_000,
            "chat": {"id": body["chat_id"], "type": "group", "title": "QA alerts"},
            "from": {"id": 1, "is_bot": True, "first_name": "callqa"},
            "text": body["text"],
        }

    @staticmethod
    def rate_limited(retry_after: int) -> tuple[int, dict]:
        return 429, telegram_error(
            429, f"Too Many Requests: retry after {retry_after}", retry_after
        )

    @staticmethod
    def server_error() -> tuple[int, dict]:
        return 502, telegram_error(502, "Bad Gateway")

    @property
    def api_base(self) -> str:
        return self.url("")


class FakeAlertWebhook(LoopbackServer):
    """Receives alert POSTs: `posts` holds {path, json, content_type} of each; queue
    statuses in `script` (e.g. 500) to make the next requests fail."""

    def __init__(self) -> None:
        self.posts: list[dict] = []
        self.script: list[int] = []
        fake = self

        class Handler(_QuietHandler):
            def do_POST(self):
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                if fake.script:
                    status = fake.script.pop(0)
                    return send_json(self, status, {"error": f"scripted {status}"})
                fake.posts.append(
                    {
                        "path": self.path,
                        "json": json.loads(raw),
                        "content_type": self.headers.get("content-type"),
                    }
                )
                send_json(self, 200, {"ok": True})

        super().__init__(Handler)
