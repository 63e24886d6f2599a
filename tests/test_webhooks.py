"""`callqa webhook serve`'s app over real HTTP on loopback (uvicorn in a thread)."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time

import pytest
import requests

from callqa.config.registry import default_registry
from callqa.crm.webhooks import MAX_BODY_BYTES, Intake, create_app, sign
from callqa.storage.warehouse import Warehouse
from tests.tenants import use_tenants

SECRET = "whsec-acme-0123456789-abcdef"
OTHER_SECRET = "whsec-beta-9876543210-fedcba"


@pytest.fixture
def intake(tmp_path, monkeypatch):
    monkeypatch.setenv("ACME_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("BETA_WEBHOOK_SECRET", OTHER_SECRET)
    monkeypatch.setenv("ACME_AMO_TOKEN", "amo-token-never-shown-1234")
    use_tenants(
        tmp_path / "config",
        monkeypatch,
        {
            "id": "acme",
            "name": "Acme",
            "auto_process": False,
            "crm": {
                "adapter": "amocrm",
                "subdomain": "acme",
                "token": {"env": "ACME_AMO_TOKEN"},
                "webhook_secret": {"env": "ACME_WEBHOOK_SECRET"},
            },
        },
        {
            "id": "beta",
            "name": "Beta",
            "crm": {
                "adapter": "file_drop",
                "url": str(tmp_path / "drop"),
                "webhook_secret": {"env": "BETA_WEBHOOK_SECRET"},
            },
        },
    )
    warehouse = Warehouse.from_url(f"sqlite:///{tmp_path / 'wh.db'}")
    yield Intake.load(default_registry(), warehouse)
    warehouse.dispose()
    default_registry.cache_clear()


@pytest.fixture
def server(intake):
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(create_app(intake), log_level="warning", access_log=False)
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    srv.should_exit = True
    thread.join(5)


def _call(external_id: str, **extra) -> dict:
    return {
        "external_id": external_id,
        "recording_url": f"https://recordings.example.com/{external_id}.mp3",
        "operator": "anna",
        "category": "sales",
        "duration_s": 93,
        "started_at": "2026-11-20T10:00:00Z",
        "links": {"leads": "4242"},
        **extra,
    }


def test_json_push_with_secret_in_path_is_staged_once(server, intake):
    body = {"calls": [_call("c-1"), _call("c-2")]}
    first = requests.post(f"{server}/webhooks/acme/{SECRET}", json=body, timeout=5)
    assert first.status_code == 202, first.text
    assert first.json() == {"received": 2, "staged": 2, "duplicates": 0}
    # A replay (CRMs retry) is harmless: nothing new, nothing changed.
    replay = requests.post(f"{server}/webhooks/acme/{SECRET}", json=body, timeout=5)
    assert replay.json() == {"received": 2, "staged": 0, "duplicates": 2}
    rows = intake.warehouse.staged_calls("acme")
    assert [(r["external_id"], r["source"], r["status"]) for r in rows] == [
        ("c-1", "webhook", "staged"),
        ("c-2", "webhook", "staged"),
    ]
    assert rows[0]["links"] == {"leads": "4242"} and rows[0]["duration_s"] == 93
    assert rows[0]["operator"] == "anna" and rows[0]["started_at"].isoformat().startswith(
        "2026-11-20T10:00"
    )


def test_signature_header_authenticates_the_body(server, intake):
    body = json.dumps(_call("c-9")).encode()
    headers = {"content-type": "application/json", "X-Callqa-Signature": sign(SECRET, body)}
    ok = requests.post(f"{server}/webhooks/acme", data=body, headers=headers, timeout=5)
    assert ok.status_code == 202 and ok.json()["staged"] == 1
    tampered = body.replace(b"c-9", b"c-8")
    bad = requests.post(f"{server}/webhooks/acme", data=tampered, headers=headers, timeout=5)
    assert bad.status_code == 401
    assert [r["external_id"] for r in intake.warehouse.staged_calls("acme")] == ["c-9"]


def test_auth_failures_and_tenants_stay_apart(server, intake, caplog):
    caplog.set_level(logging.INFO, logger="callqa.webhooks")
    body = {"calls": [_call("x-1")]}
    # Another tenant's secret does not open this tenant's door.
    assert (
        requests.post(f"{server}/webhooks/acme/{OTHER_SECRET}", json=body, timeout=5).status_code
        == 401
    )
    assert requests.post(f"{server}/webhooks/acme", json=body, timeout=5).status_code == 401
    # demo has no webhook secret; nobody has heard of ghost.
    assert (
        requests.post(f"{server}/webhooks/demo/{SECRET}", json=body, timeout=5).status_code == 404
    )
    assert (
        requests.post(f"{server}/webhooks/ghost/{SECRET}", json=body, timeout=5).status_code == 404
    )
    ok = requests.post(f"{server}/webhooks/beta/{OTHER_SECRET}", json=body, timeout=5)
    assert ok.status_code == 202
    assert intake.warehouse.staged_calls("acme") == []
    assert [r["external_id"] for r in intake.warehouse.staged_calls("beta")] == ["x-1"]
    logged = caplog.text
    assert "status=401" in logged and "status=404" in logged
    assert SECRET not in logged and OTHER_SECRET not in logged


@pytest.mark.parametrize(
    ("body", "content_type", "problem"),
    [
        (b"{not json", "application/json", "not valid JSON"),
        (json.dumps({"calls": "c-1"}).encode(), "application/json", "'calls' must be a list"),
        (
            json.dumps({"calls": [{"external_id": "c-1"}]}).encode(),
            "application/json",
            "recording_url",
        ),
        (
            json.dumps({"calls": [_call("c-1", duration_s="long")]}).encode(),
            "application/json",
            "duration_s",
        ),
        (json.dumps({"calls": [_call("")]}).encode(), "application/json", "external_id"),
    ],
)
def test_malformed_payloads_are_400_with_the_problem(
    server, intake, caplog, body, content_type, problem
):
    caplog.set_level(logging.INFO, logger="callqa.webhooks")
    answer = requests.post(
        f"{server}/webhooks/acme/{SECRET}",
        data=body,
        headers={"content-type": content_type},
        timeout=5,
    )
    assert answer.status_code == 400, answer.text
    assert problem in answer.json()["error"]
    assert "malformed payload" in caplog.text
    assert intake.warehouse.staged_calls("acme") == []


def test_oversized_body_is_413(server):
    big = b"x" * (MAX_BODY_BYTES + 1)
    answer = requests.post(
        f"{server}/webhooks/acme/{SECRET}",
        data=big,
        headers={"content-type": "application/json"},
        timeout=10,
    )
    assert answer.status_code == 413


def test_database_outage_is_503_not_500(server, intake):
    intake.warehouse.engine.dispose()
    intake.warehouse.engine = __import__("sqlalchemy").create_engine(
        "sqlite:////nonexistent/dir/wh.db"
    )
    answer = requests.post(
        f"{server}/webhooks/acme/{SECRET}", json={"calls": [_call("c-1")]}, timeout=5
    )
    assert answer.status_code == 503 and "retry" in answer.json()["error"]
