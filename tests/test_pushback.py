"""Pushing results back: CRM notes written once and then updated, the low-score alert sent
once per call through real HTTP to a fake Telegram Bot API or webhook, and no secret in any
error. Runs on SQLite and PostgreSQL (the `warehouse` fixture)."""

from __future__ import annotations

import logging
import socket
import traceback
from typing import ClassVar

import pytest

from callqa.config.models import Tenant
from callqa.config.secrets import mask
from callqa.crm.alerts import LowScoreAlert, send_alert
from callqa.crm.base import CallResult, CrmPage
from callqa.crm.pushback import SKIP_NO_CRM, SKIP_NO_LINKS, push_result
from callqa.errors import CrmAuthError, CrmError, CrmRateLimited, CrmUnavailable
from tests.fakes.alerts import FakeAlertWebhook, FakeTelegram
from tests.records import sample_record

TENANT = "acme"
BOT_TOKEN = "7123456789:AAHsecretBotTokenValue_0123456789xyz"
BOT_TOKEN_ENV = "CALLQA_TEST_BOT_TOKEN"
HOOK_ENV = "CALLQA_TEST_ALERT_HOOK"
HOOK_PATH = "/hooks/T0001/B0002/webhook-secret-key-98765"
CHAT = "-1001234567890"
LINKS = {"leads": "101", "contacts": "9"}
REPORT = "https://reports.example.com/acme/call-1-0123456789abcdef.html"
LOW = {"greeting": 1, "closing": 2}  # total 12.5
HIGH = {"greeting": 5, "closing": 4}  # total 87.5


class RecordingAdapter:
    """The write-back half of a CRM adapter: records each call and answers note ids like a
    CRM (a new id per card without a note, the same id for a note it updates)."""

    name: ClassVar[str] = "fakecrm"

    def __init__(self, fail_with: CrmError | None = None) -> None:
        self.calls: list[tuple[dict, CallResult, dict]] = []
        self.fail_with = fail_with
        self._next = 500

    def write_result(
        self, links: dict[str, str], result: CallResult, existing: dict[str, str]
    ) -> dict[str, str]:
        self.calls.append((dict(links), result, dict(existing)))
        if self.fail_with is not None:
            raise self.fail_with
        notes = {}
        for card in links:
            if card not in existing:
                self._next += 1
            notes[card] = existing.get(card, str(self._next))
        return notes

    def list_calls(self, cursor: str | None, limit: int) -> CrmPage:
        raise NotImplementedError

    def fetch_recording(self, source_uri: str, max_bytes: int) -> bytes:
        raise NotImplementedError

    def parse_webhook(self, body: bytes, content_type: str) -> list:
        raise NotImplementedError


@pytest.fixture
def telegram(monkeypatch):
    monkeypatch.setenv(BOT_TOKEN_ENV, BOT_TOKEN)
    with FakeTelegram(BOT_TOKEN) as fake:
        yield fake


@pytest.fixture
def hook(monkeypatch):
    with FakeAlertWebhook() as fake:
        monkeypatch.setenv(HOOK_ENV, fake.url(HOOK_PATH))
        yield fake


def telegram_destination(fake: FakeTelegram, *, api_base: str | None = None) -> dict:
    return {
        "type": "telegram",
        "token": {"env": BOT_TOKEN_ENV},
        "chat_id": CHAT,
        "api_base": api_base or fake.api_base,
    }


def tenant(destination: dict | None, threshold: float = 50.0) -> Tenant:
    return Tenant(
        id=TENANT,
        name="Acme",
        alerts={"low_score_threshold": threshold, "destination": destination},
    )


def record(scores: dict[str, int], external_id: str = "call-1") -> dict:
    return sample_record(TENANT, external_id, scores, operator="ann", summary="Rude and rushed.")


def push(warehouse, tenant_, adapter, rec: dict, links=LINKS):
    external_id = rec["call"]["external_id"]
    return push_result(
        warehouse,
        tenant_,
        adapter,
        external_id=external_id,
        partition_key=f"{TENANT}__{external_id}",
        record=rec,
        links=links,
        report_url=REPORT,
    )


def error_text(exc: BaseException) -> str:
    """Everything a log or the Dagster UI could show of an exception, chain included."""
    return "".join(traceback.format_exception(exc)) + repr(exc)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- CRM notes ----------------------------------------------------------------------------


def test_first_push_creates_notes_and_a_rerun_updates_them(warehouse):
    adapter = RecordingAdapter()
    rec = record(HIGH)
    first = push(warehouse, tenant(None), adapter, rec)
    assert first.note_ids == {"leads": "501", "contacts": "502"}
    assert first.alerted is False and first.skipped is None

    links, result, existing = adapter.calls[0]
    assert links == LINKS and existing == {}
    assert result == CallResult(
        partition_key=f"{TENANT}__call-1",
        total=87.5,
        summary="Rude and rushed.",
        report_url=REPORT,
        preset="p1",
        weakest_criterion="Closing",
    )
    row = warehouse.pushback(TENANT, "call-1")
    assert row["note_ids"] == first.note_ids
    assert (row["adapter"], row["total"], row["report_url"]) == ("fakecrm", 87.5, REPORT)
    assert row["alerted_at"] is None

    # The re-run hands the stored note ids back, so the CRM updates instead of adding.
    second = push(warehouse, tenant(None), adapter, rec)
    assert adapter.calls[1][2] == first.note_ids
    assert second.note_ids == first.note_ids
    assert warehouse.pushback(TENANT, "call-1")["note_ids"] == first.note_ids


def test_notes_of_cards_no_longer_linked_are_kept(warehouse):
    adapter = RecordingAdapter()
    rec = record(HIGH)
    push(warehouse, tenant(None), adapter, rec)
    push(warehouse, tenant(None), adapter, rec, links={"leads": "101"})
    assert adapter.calls[1][2] == {"leads": "501", "contacts": "502"}
    assert warehouse.pushback(TENANT, "call-1")["note_ids"] == {"leads": "501", "contacts": "502"}


def test_record_of_another_call_is_refused(warehouse):
    adapter = RecordingAdapter()
    rec = record(HIGH, external_id="call-2")
    with pytest.raises(ValueError, match="acme/call-1 was given the record of acme/call-2"):
        push_result(
            warehouse,
            tenant(None),
            adapter,
            external_id="call-1",
            partition_key=f"{TENANT}__call-1",
            record=rec,
            links=LINKS,
            report_url=REPORT,
        )
    assert adapter.calls == [] and warehouse.pushback(TENANT, "call-1") is None


# --- low-score alerts -----------------------------------------------------------------------


def test_low_score_alerts_once_through_telegram(warehouse, telegram):
    adapter = RecordingAdapter()
    rec = record(LOW)
    outcome = push(warehouse, tenant(telegram_destination(telegram)), adapter, rec)
    assert outcome.alerted is True
    assert telegram.requests == [f"/bot{BOT_TOKEN}/sendMessage"]
    (message,) = telegram.messages
    assert message["chat_id"] == CHAT
    text = message["text"]
    for part in (
        "12.5/100",
        "threshold 50",
        f"{TENANT}__call-1",
        "ann",
        "Rude and rushed.",
        REPORT,
    ):
        assert part in text
    row = warehouse.pushback(TENANT, "call-1")
    assert row["alerted_at"] is not None and row["alert_destination"] == "telegram"

    # The step runs again (a retry, a re-score): notes updated, no second alert.
    again = push(warehouse, tenant(telegram_destination(telegram)), adapter, rec)
    assert again.alerted is False
    assert len(telegram.messages) == 1 and len(telegram.requests) == 1
    assert warehouse.pushback(TENANT, "call-1")["alerted_at"] == row["alerted_at"]


def test_high_score_sends_no_alert(warehouse, telegram):
    outcome = push(
        warehouse, tenant(telegram_destination(telegram)), RecordingAdapter(), record(HIGH)
    )
    assert outcome.alerted is False
    assert telegram.requests == []
    assert warehouse.pushback(TENANT, "call-1")["alerted_at"] is None


def test_threshold_is_strict_and_configurable(warehouse, telegram):
    # 87.5 is below 90: alerted; a total equal to the threshold is not.
    dest = telegram_destination(telegram)
    assert push(warehouse, tenant(dest, threshold=90), RecordingAdapter(), record(HIGH)).alerted
    equal = record(HIGH, external_id="call-2")
    assert not push(warehouse, tenant(dest, threshold=87.5), RecordingAdapter(), equal).alerted
    assert len(telegram.messages) == 1


def test_failed_alert_raises_and_the_next_push_sends_it(warehouse, telegram):
    adapter = RecordingAdapter()
    rec = record(LOW)
    acme = tenant(telegram_destination(telegram))
    telegram.script.append(FakeTelegram.rate_limited(7))
    with pytest.raises(CrmRateLimited) as caught:
        push(warehouse, acme, adapter, rec)
    assert caught.value.retry_after_s == 7
    assert "rate limited" in str(caught.value) and "127.0.0.1" in str(caught.value)
    # The notes were written and kept; the alert is still owed.
    row = warehouse.pushback(TENANT, "call-1")
    assert row["note_ids"] == {"leads": "501", "contacts": "502"} and row["alerted_at"] is None
    assert telegram.messages == []

    telegram.script.append(FakeTelegram.server_error())
    with pytest.raises(CrmUnavailable, match="HTTP 502"):
        push(warehouse, acme, adapter, rec)

    outcome = push(warehouse, acme, adapter, rec)
    assert outcome.alerted is True and len(telegram.messages) == 1
    assert adapter.calls[-1][2] == {"leads": "501", "contacts": "502"}  # still updates
    assert warehouse.pushback(TENANT, "call-1")["alerted_at"] is not None


def test_webhook_destination(warehouse, hook):
    dest = {"type": "webhook", "url": {"env": HOOK_ENV}}
    rec = record(LOW)
    outcome = push(warehouse, tenant(dest), RecordingAdapter(), rec)
    assert outcome.alerted is True
    (post,) = hook.posts
    assert post["path"] == HOOK_PATH and post["content_type"] == "application/json"
    assert post["json"] == {
        "kind": "low_score",
        "tenant": TENANT,
        "partition_key": f"{TENANT}__call-1",
        "total": 12.5,
        "threshold": 50.0,
        "summary": "Rude and rushed.",
        "report_url": REPORT,
        "operator": "ann",
    }
    assert warehouse.pushback(TENANT, "call-1")["alert_destination"] == "webhook"
    push(warehouse, tenant(dest), RecordingAdapter(), rec)
    assert len(hook.posts) == 1


def test_webhook_failure_is_retried_on_the_next_push(warehouse, hook):
    dest = {"type": "webhook", "url": hook.url("/plain-hook")}  # a plain URL is fine too
    hook.script.append(500)
    with pytest.raises(
        CrmUnavailable, match=r"webhook 127\.0\.0\.1:\d+: server error \(HTTP 500\)"
    ):
        push(warehouse, tenant(dest), RecordingAdapter(), record(LOW))
    assert hook.posts == []
    assert push(warehouse, tenant(dest), RecordingAdapter(), record(LOW)).alerted
    assert [p["path"] for p in hook.posts] == ["/plain-hook"]


def test_tenant_without_crm_still_gets_its_row_and_alert(warehouse, telegram):
    outcome = push(warehouse, tenant(telegram_destination(telegram)), None, record(LOW))
    assert outcome.skipped == SKIP_NO_CRM and outcome.note_ids == {} and outcome.alerted
    row = warehouse.pushback(TENANT, "call-1")
    assert (row["adapter"], row["note_ids"], row["report_url"]) == ("none", {}, REPORT)
    assert len(telegram.messages) == 1


def test_call_without_links_skips_the_write_back(warehouse):
    adapter = RecordingAdapter()
    outcome = push(warehouse, tenant(None), adapter, record(HIGH), links={})
    assert outcome.skipped == SKIP_NO_LINKS and adapter.calls == []
    assert warehouse.pushback(TENANT, "call-1")["note_ids"] == {}


def test_crm_outage_does_not_hold_back_the_alert(warehouse, telegram):
    down = RecordingAdapter(fail_with=CrmUnavailable("fakecrm acme: server error (HTTP 503)"))
    acme = tenant(telegram_destination(telegram))
    with pytest.raises(CrmUnavailable, match="HTTP 503"):
        push(warehouse, acme, down, record(LOW))
    assert len(telegram.messages) == 1
    row = warehouse.pushback(TENANT, "call-1")
    assert row["note_ids"] == {} and row["alerted_at"] is not None

    # The CRM is back: the notes are written (created), the alert is not sent again.
    up = RecordingAdapter()
    outcome = push(warehouse, acme, up, record(LOW))
    assert up.calls[0][2] == {} and outcome.note_ids == {"leads": "501", "contacts": "502"}
    assert outcome.alerted is False and len(telegram.messages) == 1


def test_notes_written_before_a_later_card_failed_are_kept(warehouse):
    """An adapter that wrote the lead's note and then failed on the contact: the lead's
    note id is stored, so the next push updates that note rather than adding one."""
    partial = CrmUnavailable("fakecrm acme: server error (HTTP 503)")
    partial.written = {"leads": "777"}
    with pytest.raises(CrmUnavailable):
        push(warehouse, tenant(None), RecordingAdapter(fail_with=partial), record(HIGH))
    assert warehouse.pushback(TENANT, "call-1")["note_ids"] == {"leads": "777"}
    up = RecordingAdapter()
    outcome = push(warehouse, tenant(None), up, record(HIGH))
    assert up.calls[0][2] == {"leads": "777"}
    assert outcome.note_ids == {"leads": "777", "contacts": "501"}


def test_crm_and_alert_both_failing_say_so(warehouse, telegram):
    down = RecordingAdapter(fail_with=CrmUnavailable("fakecrm acme: server error (HTTP 503)"))
    telegram.script.append(FakeTelegram.server_error())
    with pytest.raises(CrmError) as caught:
        push(warehouse, tenant(telegram_destination(telegram)), down, record(LOW))
    message = str(caught.value)
    assert "HTTP 503" in message and "low-score alert failed too" in message
    assert "HTTP 502" in message and BOT_TOKEN not in error_text(caught.value)
    assert warehouse.pushback(TENANT, "call-1")["alerted_at"] is None


# --- no secret in any error ---------------------------------------------------------------


def _alert() -> LowScoreAlert:
    return LowScoreAlert(
        tenant=TENANT,
        partition_key=f"{TENANT}__call-1",
        total=12.5,
        threshold=50,
        summary="s",
        report_url=REPORT,
    )


def _send(destination: dict) -> CrmError:
    dest = tenant(destination).alerts.destination
    with pytest.raises(CrmError) as caught:
        send_alert(dest, _alert(), where="tenant acme alerts")
    return caught.value


def test_refused_bot_token_never_shows_in_the_error(telegram, monkeypatch):
    monkeypatch.setenv(BOT_TOKEN_ENV, BOT_TOKEN + "-revoked")
    exc = _send(telegram_destination(telegram))
    assert isinstance(exc, CrmAuthError)
    assert "HTTP 401: Unauthorized" in str(exc) and f"127.0.0.1:{telegram.port}" in str(exc)
    assert BOT_TOKEN not in error_text(exc) and "secretBotToken" not in error_text(exc)


def test_malformed_bot_token_is_an_auth_error(telegram, monkeypatch):
    monkeypatch.setenv(BOT_TOKEN_ENV, "not/a-token-at-all")
    exc = _send(telegram_destination(telegram))
    assert isinstance(exc, CrmAuthError) and "HTTP 404: Not Found" in str(exc)
    assert "not/a-token" not in error_text(exc)


def test_unreachable_telegram_never_shows_the_token(telegram):
    exc = _send(telegram_destination(telegram, api_base=f"http://127.0.0.1:{closed_port()}"))
    assert isinstance(exc, CrmUnavailable) and "cannot connect" in str(exc)
    assert BOT_TOKEN not in error_text(exc) and "secretBotToken" not in error_text(exc)
    assert exc.__context__ is None and exc.__cause__ is None


def test_secret_webhook_url_never_shows_in_the_error(hook, monkeypatch):
    url = hook.url(HOOK_PATH)
    hook.script.append(500)
    exc = _send({"type": "webhook", "url": {"env": HOOK_ENV}})
    assert isinstance(exc, CrmUnavailable)
    assert f"webhook {mask(url)}" in str(exc) and mask(url) == "****8765"
    assert "webhook-secret-key" not in error_text(exc) and str(hook.port) not in str(exc)

    monkeypatch.setenv(HOOK_ENV, f"http://127.0.0.1:{closed_port()}{HOOK_PATH}")
    exc = _send({"type": "webhook", "url": {"env": HOOK_ENV}})
    assert isinstance(exc, CrmUnavailable) and "cannot connect" in str(exc)
    assert "webhook-secret-key" not in error_text(exc)


def test_webhook_redirect_is_not_followed(hook):
    hook.script.append(307)
    exc = _send({"type": "webhook", "url": hook.url("/moved")})
    assert "redirect (HTTP 307), which is not followed" in str(exc)
    assert hook.posts == []


def test_request_logs_do_not_show_the_token(telegram, caplog):
    caplog.set_level(logging.DEBUG, logger="urllib3")
    send_alert(tenant(telegram_destination(telegram)).alerts.destination, _alert(), where="t")
    assert len(telegram.messages) == 1
    assert "sendMessage" in caplog.text  # urllib3 did log the request...
    assert BOT_TOKEN not in caplog.text  # ...without the token


def test_long_summary_fits_telegrams_limit(telegram):
    alert = _alert().model_copy(update={"summary": "word " * 3000})
    send_alert(tenant(telegram_destination(telegram)).alerts.destination, alert, where="t")
    (message,) = telegram.messages
    assert len(message["text"]) <= 4096 and message["text"].endswith(REPORT)
