"""The AmoCRM adapter against a fake AmoCRM API v4 on loopback (tests/fakes/amocrm.py)."""

from __future__ import annotations

import json
import time
from collections import Counter
from urllib.parse import urlencode

import pytest

from callqa.config.crm import AmoCrmConfig
from callqa.crm.adapters.amocrm import AmoCrmAdapter
from callqa.crm.base import CallResult
from callqa.crm.registry import adapter_class
from callqa.errors import (
    CrmAuthError,
    CrmError,
    CrmPayloadError,
    CrmRateLimited,
    CrmUnavailable,
)
from tests.fakes.amocrm import FakeAmoCrm
from tests.paths import DEMO_CALLS

TOKEN = "amo-long-lived-token-0123456789abcdef"
T0 = 1_700_000_000  # the notes' seconds
NOW = T0 + 60  # the adapter's clock: notes up to T0 + 30 have settled
FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def fake():
    with FakeAmoCrm(TOKEN) as server:
        yield server


@pytest.fixture
def make(fake, monkeypatch):
    def build(token: str = TOKEN, **overrides) -> AmoCrmAdapter:
        monkeypatch.setenv("AMO_TEST_TOKEN", token)
        config = AmoCrmConfig(
            adapter="amocrm",
            subdomain="acme",
            base_url=fake.api_base,
            token={"env": "AMO_TEST_TOKEN"},
            **overrides,
        )
        adapter = AmoCrmAdapter("acme", config)
        adapter.clock = lambda: NOW
        return adapter

    return build


def drain(adapter, fake, cursor=None, limits=(3,), max_pages=200):
    """Every page until caught up: (external ids in order, rejected, cursor, pages)."""
    ids, rejected, pages = [], [], 0
    for page_no in range(max_pages):
        limit = limits[page_no % len(limits)]
        before = len(fake.requests)
        page = adapter.list_calls(cursor, limit)
        # A bounded number of requests per call: one, two while paging a crowded second.
        assert len(fake.requests) - before <= 2
        assert len(page.calls) <= limit
        assert page.cursor is not None and len(page.cursor) < 400
        ids += [c.external_id for c in page.calls]
        rejected += page.rejected
        cursor, pages = page.cursor, pages + 1
        if not page.more:
            return ids, rejected, cursor, pages
    raise AssertionError(f"not caught up after {max_pages} pages")


def result(total: float = 72.5) -> CallResult:
    return CallResult(
        partition_key="acme__leads-1",
        total=total,
        summary="Greeted well, no next step.",
        report_url="https://qa.example.com/r/acme__leads-1",
        preset="sales",
        weakest_criterion="closing",
    )


def test_registry_names_this_adapter():
    assert adapter_class("amocrm") is AmoCrmAdapter


@pytest.mark.parametrize("limits", [(3,), (3, 2, 4, 1)])
def test_paging_lists_every_note_once_across_entity_types_and_ties(fake, make, limits):
    expected = []
    # Leads: a second holding more notes than a page, a few before and after it.
    for _ in range(2):
        expected.append(f"leads-{fake.add_call('leads', 11, T0 + 5)['id']}")
    for i in range(7):
        expected.append(f"leads-{fake.add_call('leads', 12 + i, T0 + 10)['id']}")
    for _ in range(4):
        note = fake.add_call("leads", 30, T0 + 20, note_type="call_out")
        expected.append(f"leads-{note['id']}")
    # Contacts: the same crowded second, then one more; companies: none at all.
    for _ in range(5):
        expected.append(f"contacts-{fake.add_call('contacts', 40, T0 + 10)['id']}")
    expected.append(f"contacts-{fake.add_call('contacts', 41, T0 + 11)['id']}")
    fake.add_call("leads", 50, T0 + 6, note_type="common")  # no call: never listed
    adapter = make(entity_types=["leads", "contacts", "companies"])

    ids, rejected, cursor, pages = drain(adapter, fake, limits=limits)

    assert sorted(ids) == sorted(expected) and len(ids) == len(set(ids))
    assert rejected == [] and pages > 2
    # The crowded second was paged by id, as the cursor docs say.
    assert any("order[id]" in query for _, _, query in fake.requests)
    state = json.loads(cursor)
    assert set(state["s"]) == {"leads", "contacts", "companies"}
    # Caught up: the next poll finds nothing and says so.
    again = adapter.list_calls(cursor, 3)
    assert again.calls == [] and again.rejected == []


def test_notes_edited_or_deleted_while_a_crowded_second_is_paged(fake, make):
    notes = [fake.add_call("leads", 100 + i, T0 + 10) for i in range(8)]
    first, second, *rest = [n["id"] for n in notes]
    adapter = make(entity_types=["leads"])
    page = adapter.list_calls(None, 3)  # a full page of one second: switch to id paging
    assert page.calls == [] and page.more
    page = adapter.list_calls(page.cursor, 3)
    assert [c.external_id for c in page.calls] == [f"leads-{i}" for i in (first, second, rest[0])]
    # Meanwhile someone edits one listed note and deletes another: the later notes of that
    # second move forward by two places.
    fake.update(first, T0 + 25, duration=99)
    fake.delete(second)

    ids, _, _, _ = drain(adapter, fake, cursor=page.cursor)

    counts = Counter(ids)
    # Nothing lost, nothing repeated; the edited note comes again, as a changed call.
    assert counts == Counter({f"leads-{i}": 1 for i in [first, *rest[1:]]})


def test_the_watermark_finds_new_and_changed_notes_and_nothing_else(fake, make):
    old = [fake.add_call("leads", 7, T0 + s) for s in (1, 2, 2, 3)]
    adapter = make(entity_types=["leads", "contacts"])
    ids, _, cursor, _ = drain(adapter, fake)
    assert sorted(ids) == sorted(f"leads-{n['id']}" for n in old)

    new = [fake.add_call("contacts", 8, T0 + 100) for _ in range(4)]
    new.append(fake.add_call("leads", 9, T0 + 100))
    fake.update(old[1]["id"], T0 + 101, link=fake.recording_url("call-002.flac"))
    adapter.clock = lambda: T0 + 200
    ids, _, cursor, _ = drain(adapter, fake, cursor=cursor)

    expected = [f"contacts-{n['id']}" for n in new[:4]] + [f"leads-{new[4]['id']}"]
    assert sorted(ids) == sorted([*expected, f"leads-{old[1]['id']}"])
    ids, rejected, _, pages = drain(adapter, fake, cursor=cursor)
    assert ids == [] and rejected == [] and pages == 2  # one look at each entity type


def test_notes_of_the_last_seconds_wait_until_they_settle(fake, make):
    recent = fake.add_call("leads", 5, NOW - 3)
    adapter = make(entity_types=["leads"])
    ids, _, cursor, _ = drain(adapter, fake)
    assert ids == []  # that second could still be joined by notes committed late
    assert json.loads(cursor)["s"]["leads"]["done"] == NOW - 30 < recent["updated_at"]
    adapter.clock = lambda: NOW + 30
    ids, _, _, _ = drain(adapter, fake, cursor=cursor)
    assert ids == [f"leads-{recent['id']}"]


def test_the_real_clock_is_the_default(fake, make):
    adapter = AmoCrmAdapter("acme", make(entity_types=["leads"]).config)  # clock: time.time
    fake.add_call("leads", 5, int(time.time()) - 3600)
    fresh = fake.add_call("leads", 6, int(time.time()) + 5)
    ids, _, _, _ = drain(adapter, fake)
    assert len(ids) == 1 and ids != [f"leads-{fresh['id']}"]


def test_a_call_note_becomes_a_call(fake, make):
    note = fake.add_call(
        "contacts", 77, T0 + 9, note_type="call_out", duration=125, responsible_user_id=31
    )
    (call,) = make(entity_types=["contacts"], category="sales").list_calls(None, 10).calls
    assert call.external_id == f"contacts-{note['id']}"
    assert call.recording_url == fake.recording_url("call-001.flac")
    assert call.direction == "outbound" and call.duration_s == 125
    assert call.operator == "31" and call.category == "sales"
    assert call.links == {"contacts": "77"}
    assert call.started_at is not None and call.started_at.timestamp() == T0 + 4


def test_refused_token_is_an_auth_error_without_the_token(fake, make):
    wrong = "amo-wrong-token-fedcba9876543210"
    with pytest.raises(CrmAuthError) as refused:
        make(token=wrong).list_calls(None, 10)
    fake.fail_next(401)  # the right token, expired meanwhile
    with pytest.raises(CrmAuthError) as expired:
        make().list_calls(None, 10)
    for exc in (refused.value, expired.value):
        assert "401" in str(exc) and "amocrm acme" in str(exc)
        assert TOKEN not in str(exc) and wrong not in str(exc)


def test_rate_limit_then_the_same_cursor_goes_on(fake, make):
    first = [fake.add_call("leads", 1, T0 + s)["id"] for s in (1, 2, 3)]
    later = [fake.add_call("leads", 1, T0 + s)["id"] for s in (4, 5)]
    adapter = make(entity_types=["leads"])
    page = adapter.list_calls(None, 3)
    assert [c.external_id for c in page.calls] == [f"leads-{i}" for i in first[:2]]
    fake.fail_next(429, headers={"Retry-After": "3"})
    with pytest.raises(CrmRateLimited) as limited:
        adapter.list_calls(page.cursor, 3)
    assert limited.value.retry_after_s == 3
    fake.fail_next(429)  # no Retry-After: the default wait
    with pytest.raises(CrmRateLimited) as default:
        adapter.list_calls(page.cursor, 3)
    assert default.value.retry_after_s > 0
    ids, _, _, _ = drain(adapter, fake, cursor=page.cursor)
    assert ids == [f"leads-{i}" for i in [first[2], *later]]


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_unavailable(fake, make, status):
    fake.fail_next(status)
    with pytest.raises(CrmUnavailable, match=f"HTTP {status}"):
        make().list_calls(None, 10)


def test_malformed_notes_are_rejected_once_with_their_ids(fake, make):
    good = fake.add_call("leads", 1, T0 + 1)
    bad = {
        "no link": fake.add_call("leads", 2, T0 + 2, link=""),
        "null link": fake.add_call("leads", 3, T0 + 2, link=None),
        "duration abc": fake.add_call("leads", 4, T0 + 3, duration="abc"),
        "negative duration": fake.add_call("leads", 5, T0 + 3, duration=-4),
        "ftp link": fake.add_call("leads", 6, T0 + 4, link="ftp://pbx.example.com/a.mp3"),
        "no card": fake.add_call("leads", None, T0 + 4),
    }
    params_not_object = fake.add_call("leads", 7, T0 + 5)
    fake.find(params_not_object["id"])["params"] = "LINK=https://pbx.example.com/a.mp3"
    also_good = fake.add_call("leads", 8, T0 + 6, duration="42")
    adapter = make(entity_types=["leads"])

    ids, rejected, cursor, _ = drain(adapter, fake, limits=(10,))

    assert ids == [f"leads-{good['id']}", f"leads-{also_good['id']}"]
    problems = {r.external_id: r.problem for r in rejected}
    assert len(rejected) == len(problems) == 7
    assert "recording link" in problems[f"leads-{bad['no link']['id']}"]
    assert "recording link" in problems[f"leads-{bad['null link']['id']}"]
    assert "'abc'" in problems[f"leads-{bad['duration abc']['id']}"]
    assert "duration" in problems[f"leads-{bad['negative duration']['id']}"]
    assert "http(s)" in problems[f"leads-{bad['ftp link']['id']}"]
    assert "entity_id" in problems[f"leads-{bad['no card']['id']}"]
    assert "params" in problems[f"leads-{params_not_object['id']}"]
    again, rejected_again, _, _ = drain(adapter, fake, cursor=cursor)
    assert again == [] and rejected_again == []  # reported once, not on every poll


def test_fetch_recording_gets_the_flac_without_the_token(fake, make, monkeypatch):
    monkeypatch.setenv("CALLQA_ALLOW_PRIVATE_URLS", "127.0.0.1")
    fake.add_call("leads", 1, T0 + 1, link=fake.recording_url("call-003.flac"))
    adapter = make(entity_types=["leads"])
    (call,) = adapter.list_calls(None, 10).calls
    audio = adapter.fetch_recording(call.recording_url, 50 * 1024 * 1024)
    assert audio == (DEMO_CALLS / "call-003.flac").read_bytes()
    (headers,) = fake.recording_headers
    assert not any(name.lower() == "authorization" for name in headers)
    assert TOKEN not in json.dumps(headers)


def test_write_result_adds_one_note_then_updates_it(fake, make):
    adapter = make()
    links = {"leads": "42", "contacts": "9"}
    ids = adapter.write_result(links, result(72.5), {})
    assert set(ids) == {"leads:42", "contacts:9"}
    (lead_note,) = fake.notes_on("leads", 42)
    assert str(lead_note["id"]) == ids["leads:42"]
    assert lead_note["params"]["text"] == result(72.5).note_text()
    assert [m for m, _, _ in fake.writes] == ["POST", "POST"]
    assert fake.writes[0][2] == [
        {"entity_id": 42, "note_type": "common", "params": {"text": result(72.5).note_text()}}
    ]

    again = adapter.write_result(links, result(41.0), ids)

    assert again == ids
    for entity, card in (("leads", 42), ("contacts", 9)):
        (note,) = fake.notes_on(entity, card)  # still one note per card, with the new text
        assert note["params"]["text"].startswith("callqa score: 41.0/100")
    assert [m for m, _, _ in fake.writes[2:]] == ["PATCH", "PATCH"]


def test_write_result_adds_a_new_note_when_ours_was_deleted(fake, make):
    adapter = make()
    ids = adapter.write_result({"leads": "42", "contacts": "9"}, result(60), {})
    fake.delete(int(ids["leads:42"]))
    again = adapter.write_result({"leads": "42", "contacts": "9"}, result(55), ids)
    assert again["contacts:9"] == ids["contacts:9"]
    assert again["leads:42"] != ids["leads:42"]
    (note,) = fake.notes_on("leads", 42)
    assert str(note["id"]) == again["leads:42"]
    assert note["params"]["text"].startswith("callqa score: 55.0/100")


def test_write_result_keeps_a_real_error_when_the_note_still_exists(fake, make):
    adapter = make()
    ids = adapter.write_result({"leads": "42"}, result(60), {})
    fake.fail_next(400)  # a validation error, not a deleted note
    with pytest.raises(CrmError, match="HTTP 400"):
        adapter.write_result({"leads": "42"}, result(50), ids)
    assert len(fake.notes_on("leads", 42)) == 1
    with pytest.raises(CrmPayloadError, match="tasks:3"):
        adapter.write_result({"tasks": "3"}, result(50), {})


def _push(**notes: dict) -> bytes:
    fields = {"account[subdomain]": "acme", "account[id]": "29001"}
    for slot, note in notes.items():
        entity, index = slot.rsplit("_", 1)
        fields.update({f"{entity}[note][{index}][note][{k}]": v for k, v in note.items()})
    return urlencode(fields).encode()


def _pushed_call_note(note_id: int, element_id: int, note_type: str = "10", **text) -> dict:
    return {
        "id": str(note_id),
        "element_id": str(element_id),
        "element_type": "2",
        "note_type": note_type,
        "text": json.dumps(
            {
                "UNIQ": f"uniq-{note_id}",
                "DURATION": 61,
                "SRC": "fake-pbx",
                "LINK": "https://pbx.example.com/rec/1.mp3",
                "PHONE": "+79001234567",
                **text,
            }
        ),
        "created_at": str(T0 + 4),
        "updated_at": str(T0 + 4),
        "main_user_id": "504141",
        "created_by": "0",
        "account_id": "29001",
    }


def test_webhook_call_notes_become_the_same_calls_as_a_poll(fake, make):
    adapter = make(entity_types=["leads", "contacts"])
    lead = fake.add_call("leads", 12, T0 + 9, link="https://pbx.example.com/rec/1.mp3")
    body = _push(
        leads_0=_pushed_call_note(lead["id"], 12),
        contacts_0=_pushed_call_note(9001, 40, "11", DURATION="37"),
    )
    calls = adapter.parse_webhook(body, FORM + "; charset=UTF-8")
    by_id = {c.external_id: c for c in calls}
    assert set(by_id) == {f"leads-{lead['id']}", "contacts-9001"}
    pushed = by_id[f"leads-{lead['id']}"]
    assert pushed.direction == "inbound" and pushed.duration_s == 61
    assert pushed.links == {"leads": "12"} and pushed.operator == "504141"
    assert pushed.recording_url == "https://pbx.example.com/rec/1.mp3"
    assert by_id["contacts-9001"].direction == "outbound"
    assert by_id["contacts-9001"].duration_s == 37
    # A replay of the push (AmoCRM retries) gives the same calls, and so does a poll.
    assert adapter.parse_webhook(body, FORM) == calls
    (polled,) = adapter.list_calls(None, 10).calls
    assert polled == pushed


def test_webhook_ignores_notes_that_are_no_usable_calls(make):
    adapter = make(entity_types=["leads"])
    common = {"id": "5", "element_id": "12", "note_type": "4", "text": "Called back later"}
    body = _push(
        leads_0=common,
        leads_1=_pushed_call_note(6, 12, LINK=""),  # a missed call: no recording
        contacts_0=_pushed_call_note(7, 40),  # contacts are not read by this tenant
    )
    assert adapter.parse_webhook(body, FORM) == []
    status_push = urlencode({"account[subdomain]": "acme", "leads[status][0][id]": "12"})
    assert adapter.parse_webhook(status_push.encode(), FORM) == []


@pytest.mark.parametrize(
    ("body", "content_type", "problem"),
    [
        (b'{"leads": []}', "application/json", "x-www-form-urlencoded"),
        (b"\xff\xfe\x00garbage", FORM, "UTF-8"),
        (b'{"account": {"subdomain": "acme"}}', FORM, "account[subdomain]"),
        (_push(leads_0=_pushed_call_note(1, 2)).replace(b"acme", b"other"), FORM, "'other'"),
        (
            _push(leads_0={k: v for k, v in _pushed_call_note(1, 2).items() if k != "id"}),
            FORM,
            "leads[note][0]: call note has no numeric id",
        ),
        (_push(leads_3=_pushed_call_note(1, 0)), FORM, "leads[note][3]: call note 1 has no"),
        (_push(leads_0={"id": "1", "element_id": "2"}), FORM, "no note_type"),
    ],
)
def test_malformed_pushes_name_the_problem(make, body, content_type, problem):
    with pytest.raises(CrmPayloadError) as raised:
        make().parse_webhook(body, content_type)
    assert problem in str(raised.value)


def test_the_token_shows_nowhere(fake, make):
    adapter = make()
    assert TOKEN not in repr(adapter) and "acme" in repr(adapter)
    messages = []
    for status in (401, 403, 429, 503, 404):
        fake.fail_next(status)
        with pytest.raises(CrmError) as raised:
            adapter.list_calls(None, 10)
        messages.append(str(raised.value))
    with pytest.raises(CrmPayloadError) as raised:
        adapter.list_calls('{"v": 7}', 10)
    messages.append(str(raised.value))
    assert all(TOKEN not in m and TOKEN[-12:] not in m for m in messages)
    assert TOKEN not in repr(adapter.__dict__)


def test_a_write_back_failing_on_a_later_card_says_what_it_wrote(fake, make):
    """The note on the first card exists in the CRM; the error carries its id, so the
    retry updates it instead of adding a second note there."""
    adapter = make()
    with pytest.raises(CrmPayloadError) as err:
        adapter.write_result({"leads": "42", "tasks": "3"}, result(50), {})
    (note,) = fake.notes_on("leads", 42)
    assert err.value.written == {"leads:42": str(note["id"])}
    again = adapter.write_result({"leads": "42"}, result(51), err.value.written)
    assert again == err.value.written and len(fake.notes_on("leads", 42)) == 1
