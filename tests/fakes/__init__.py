"""Fake outside services, served for real over HTTP on loopback.

Each fake speaks the wire shape of the service it stands in for, so the code under test
runs its real HTTP client against it:

- `FakeLLM`: an OpenAI-compatible `/v1/chat/completions` endpoint (what litellm calls).
- `FakeTranscriptionAPI`: an OpenAI-compatible `/v1/audio/transcriptions` endpoint
  (multipart request, `verbose_json` reply).
- `FakeRecordingServer`: a CRM's recording download host (redirects, size tricks, errors).

Fixtures that start them live in conftest.py or in the test module that needs them.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

# How often a server loop checks for shutdown; small so closing a fake is instant.
_POLL_INTERVAL_S = 0.05


def send_json(
    handler: BaseHTTPRequestHandler,
    status: int,
    payload: dict,
    headers: dict[str, str] | None = None,
) -> None:
    """Answer a request of a fake HTTP service with a JSON body (and extra headers)."""
    data = json.dumps(payload).encode()
    handler.send_response(status)
    handler.send_header("content-type", "application/json")
    handler.send_header("content-length", str(len(data)))
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    # A client that gave up (timeout) has closed the connection; that is not an error here.
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        handler.wfile.write(data)


class _QuietHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass


class LoopbackServer:
    """A threaded HTTP server on 127.0.0.1 with a free port, started at construction."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.closing = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, args=(_POLL_INTERVAL_S,), daemon=True
        )
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def close(self) -> None:
        self.closing.set()  # releases handlers that are holding back a delayed reply
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --- LLM: OpenAI-compatible chat completions ----------------------------------------


@dataclass
class Reply:
    """One scripted answer of `FakeLLM`.

    With `content`, a 200 chat completion whose assistant message is that text; otherwise
    `status` with `body` as the JSON error body. `headers` are added to the response
    (e.g. `{"Retry-After": "1"}`), and the answer is held back `delay_s` seconds (longer
    than the client's timeout makes it a timeout).
    """

    content: str | None = None
    status: int = 200
    body: dict | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0

    @classmethod
    def error(cls, status: int, message: str, type_: str = "server_error", **kwargs) -> Reply:
        """An error reply in OpenAI's error body shape."""
        return cls(status=status, body={"error": {"message": message, "type": type_}}, **kwargs)


def _as_reply(item) -> Reply:
    if isinstance(item, Reply):
        return item
    if isinstance(item, str):
        return Reply(content=item)
    if isinstance(item, tuple):  # (status, body) or (status, body, headers)
        status, body, *rest = item
        return Reply(status=status, body=body, headers=rest[0] if rest else {})
    raise TypeError(f"cannot script a FakeLLM reply from {item!r}")


class FakeLLM(LoopbackServer):
    """An OpenAI-compatible /v1/chat/completions endpoint with scripted replies.

    Each queued item in `replies` is a string (the assistant message content), a tuple
    (http_status, body_dict[, headers]) for error responses, a `Reply`, or a callable
    that computes one of those from the request body (a fake "model" that reads what it
    is sent). Every request body, its headers and its arrival time (`time.monotonic()`)
    are recorded. With the queue empty, `responder` answers when set (a callable as
    above), else a 500.
    """

    def __init__(self) -> None:
        self.replies: list = []
        self.responder = None
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.times: list[float] = []
        fake = self

        class Handler(_QuietHandler):
            def do_POST(self):
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                fake.requests.append(body)
                fake.headers.append(dict(self.headers))
                fake.times.append(time.monotonic())
                if fake.replies:
                    item = fake.replies.pop(0)
                elif fake.responder is not None:
                    item = fake.responder
                else:
                    item = Reply.error(500, "no scripted reply left")
                reply = _as_reply(item(body) if callable(item) else item)
                if reply.delay_s and fake.closing.wait(reply.delay_s):
                    return  # the fake is shutting down; nobody waits for this answer
                payload = reply.body if reply.content is None else fake.completion(body, reply)
                send_json(self, reply.status, payload or {}, reply.headers)

        super().__init__(Handler)

    @staticmethod
    def completion(request: dict, reply: Reply) -> dict:
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:8]}",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": request.get("model", "fake"),
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": reply.content},
                }
            ],
            "usage": {"prompt_tokens": 1200, "completion_tokens": 300, "total_tokens": 1500},
        }

    @property
    def api_base(self) -> str:
        return self.url("/v1")


# --- Speech to text: OpenAI-compatible audio transcriptions -------------------------


def verbose_json(lines: list[dict]) -> dict:
    """OpenAI's verbose_json for script lines ({start_s, end_s, text}): segments plus a
    flat word list with timestamps."""
    segments, words = [], []
    for i, line in enumerate(lines):
        start, end = line["start_s"], line["end_s"]
        segments.append(
            {
                "id": i,
                "seek": 0,
                "start": start,
                "end": end,
                "text": " " + line["text"],
                "avg_logprob": -0.2,
                "no_speech_prob": 0.01,
            }
        )
        tokens = line["text"].split()
        step = (end - start) / len(tokens)
        words += [
            {
                "word": w,
                "start": round(start + k * step, 2),
                "end": round(start + (k + 1) * step, 2),
            }
            for k, w in enumerate(tokens)
        ]
    return {
        "task": "transcribe",
        "language": "english",
        "duration": 1.0,
        "text": " ".join(x["text"] for x in lines),
        "segments": segments,
        "words": words,
    }


class FakeTranscriptionAPI(LoopbackServer):
    """/v1/audio/transcriptions: parses the multipart upload, answers the reply scripted
    for the uploaded file's channel (`channel-N.wav`), or an OpenAI error body when
    `status` is not 200. Each request is recorded as {path, fields, auth}."""

    def __init__(self, replies_by_channel: dict[int, dict] | None = None, status: int = 200):
        self.requests: list[dict] = []
        fake = self

        class Handler(_QuietHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"]))
                message = BytesParser(policy=HTTP).parsebytes(
                    f"content-type: {self.headers['content-type']}\r\n\r\n".encode() + body
                )
                fields: dict[str, list] = {}
                for part in message.iter_parts():
                    name = part.get_param("name", header="content-disposition")
                    value = part.get_payload(decode=True)
                    fields.setdefault(name, []).append(
                        (part.get_filename(), value) if part.get_filename() else value.decode()
                    )
                fake.requests.append(
                    {"path": self.path, "fields": fields, "auth": self.headers.get("authorization")}
                )
                filename = fields["file"][0][0]
                channel = int(filename.removesuffix(".wav").rsplit("-", 1)[1])
                if status != 200:
                    payload = {
                        "error": {
                            "message": "Incorrect API key provided",
                            "type": "invalid_request_error",
                        }
                    }
                else:
                    payload = (replies_by_channel or {})[channel]
                send_json(self, status, payload)

        super().__init__(Handler)
        self.api_base = self.url("/v1")


# --- Recording downloads: a CRM's file host -----------------------------------------

AUDIO = bytes(range(256)) * 20  # 5120 bytes, what the recording routes serve


class FakeRecordingServer(LoopbackServer):
    """Routes: /audio.wav (Content-Length), /stream.wav (no Content-Length, close-delimited),
    /liar.wav (declares a huge Content-Length), /garbled.wav (Content-Length: abc),
    /redirect?to=URL, /chain/N (N redirects to /audio.wav), /error (500),
    /drip?bytes=N&every=S (a slow server: N body bytes, Content-Length N, one every S
    seconds; with &headers=1 the response headers drip instead), anything else 404. Every
    requested path and its headers are recorded."""

    def __init__(self, audio: bytes = AUDIO) -> None:
        self.paths: list[str] = []
        self.headers: list[dict] = []
        owner = self

        class Handler(_QuietHandler):
            protocol_version = "HTTP/1.0"

            def _send(
                self,
                status: int,
                body: bytes = b"",
                length: int | None = None,
                headers: dict | None = None,
            ) -> None:
                self.send_response(status)
                self.send_header("content-type", "audio/wav")
                if length is not None:
                    self.send_header("content-length", str(length))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                # The client may stop reading early, as it should over the limit.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(body)

            def do_GET(self):
                owner.paths.append(self.path)
                owner.headers.append(dict(self.headers))
                parts = urlsplit(self.path)
                if parts.path == "/audio.wav":
                    self._send(200, audio, len(audio))
                elif parts.path == "/stream.wav":
                    self._send(200, audio * 4)  # no Content-Length: body ends at close
                elif parts.path == "/liar.wav":
                    self._send(200, audio, 10 * 1024 * 1024 * 1024)
                elif parts.path == "/garbled.wav":
                    self.send_response(200)
                    self.send_header("content-length", "abc")
                    self.end_headers()
                    self.wfile.write(audio)
                elif parts.path == "/redirect":
                    self._send(302, headers={"location": parse_qs(parts.query)["to"][0]}, length=0)
                elif parts.path.startswith("/chain/"):
                    n = int(parts.path.rsplit("/", 1)[1])
                    target = f"/chain/{n - 1}" if n > 1 else "/audio.wav"
                    target += f"?{parts.query}"
                    self._send(302, headers={"location": target}, length=0)
                elif parts.path == "/error":
                    self._send(500, b"boom", 4)
                elif parts.path == "/drip":
                    query = parse_qs(parts.query)
                    n, every = int(query["bytes"][0]), float(query["every"][0])
                    if "headers" in query:
                        data = b"HTTP/1.0 200 OK\r\nx-drip: " + b"x" * n + b"\r\n\r\n"
                    else:
                        self._send(200, length=n)
                        data = b"x" * n
                    for i in range(len(data)):
                        if owner.closing.wait(every):
                            return  # the fake is shutting down
                        try:
                            self.wfile.write(data[i : i + 1])
                        except (BrokenPipeError, ConnectionResetError):
                            return  # the client gave up, as it should
                else:
                    self._send(404, b"not found", 9)

        super().__init__(Handler)
