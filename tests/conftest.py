"""Shared fixtures: throwaway databases (SQLite and a real PostgreSQL), sample calls,
and a fake OpenAI-compatible LLM server on loopback."""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from callqa.storage.warehouse import Warehouse  # noqa: E402

PG_ADMIN_URL = os.environ.get(
    "CALLQA_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
DEMO_CALLS = Path(__file__).resolve().parents[1] / "callqa" / "demo" / "calls"


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path, monkeypatch):
    """Every test gets its own data folder; nothing leaks into the working tree."""
    monkeypatch.setenv("CALLQA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("CALLQA_DATABASE_URL", raising=False)
    monkeypatch.delenv("CALLQA_AUDIO_STORE", raising=False)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    import sqlalchemy as sa

    engine = sa.create_engine(PG_ADMIN_URL)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
    except Exception as exc:  # the suite needs the real server; say which one
        pytest.fail(
            f"PostgreSQL at {PG_ADMIN_URL} is not reachable ({exc.__class__.__name__}); "
            "set CALLQA_TEST_PG_URL"
        )
    finally:
        engine.dispose()
    return PG_ADMIN_URL


@pytest.fixture
def pg_url(pg_server_url) -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    import sqlalchemy as sa

    name = f"callqa_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(pg_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(pg_server_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'warehouse.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def warehouse(db_url) -> Iterator[Warehouse]:
    wh = Warehouse.from_url(db_url)
    yield wh
    wh.dispose()


@pytest.fixture(scope="session")
def manifest() -> list[dict]:
    return json.loads((DEMO_CALLS / "manifest.json").read_text())


@pytest.fixture(scope="session")
def good_call(manifest) -> dict:
    return next(m for m in manifest if m["expected_quality"] == "good")


@pytest.fixture(scope="session")
def poor_call(manifest) -> dict:
    return next(m for m in manifest if m["expected_quality"] == "poor")


def send_json(handler: BaseHTTPRequestHandler, status: int, payload: dict) -> None:
    """Answer a request of a fake HTTP service with a JSON body."""
    data = json.dumps(payload).encode()
    handler.send_response(status)
    handler.send_header("content-type", "application/json")
    handler.send_header("content-length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


class FakeLLM:
    """An OpenAI-compatible /v1/chat/completions endpoint with scripted replies.

    Each queued item is either a string (the assistant message content), or a tuple
    (http_status, body_dict) for error responses. Every request body is recorded.
    """

    def __init__(self) -> None:
        self.replies: list = []
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                fake.requests.append(body)
                fake.headers.append(dict(self.headers))
                reply = (
                    fake.replies.pop(0)
                    if fake.replies
                    else (
                        500,
                        {"error": {"message": "no scripted reply left", "type": "server_error"}},
                    )
                )
                if isinstance(reply, tuple):
                    status, payload = reply
                else:
                    status, payload = (
                        200,
                        {
                            "id": f"chatcmpl-{uuid.uuid4().hex[:8]}",
                            "object": "chat.completion",
                            "created": 1_700_000_000,
                            "model": body.get("model", "fake"),
                            "choices": [
                                {
                                    "index": 0,
                                    "finish_reason": "stop",
                                    "message": {"role": "assistant", "content": reply},
                                }
                            ],
                            "usage": {
                                "prompt_tokens": 1200,
                                "completion_tokens": 300,
                                "total_tokens": 1500,
                            },
                        },
                    )
                send_json(self, status, payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_llm() -> Iterator[FakeLLM]:
    server = FakeLLM()
    yield server
    server.close()
