"""The HubSpot adapter against a fake HubSpot API served over HTTP on loopback."""

from __future__ import annotations

import json

import pytest
import requests

from callqa.config.crm import HubSpotConfig
from callqa.crm.adapters.hubspot import HubSpotAdapter
from callqa.crm.base import CallResult, CrmPage
from callqa.errors import (
    CrmAuthError,
    CrmError,
    CrmPayloadError,
    CrmRateLimited,
    CrmUnavailable,
)
from tests import crm_paging as paging
from tests.crm_paging import listed_ids
from tests.fakes.hubspot import FakeHubSpot
from tests.paths import DEMO_CALLS

TOKEN = "pat-na1-0b5e1c2d-3f4a-4b6c-8d9e-0f1a2b3c4d5e"
T0 = 1_726_000_000_000  # 2024-09-10, long settled in HubSpot's search index
SEARCH = "/crm/v3/objects/calls/search"


@pytest.fixture
def fake():
    with FakeHubSpot(TOKEN) as server:
        yield server


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    monkeypatch.setenv("HUBSPOT_TOKEN", TOKEN)
    monkeypatch.setenv("CALLQA_ALLOW_PRIVATE_URLS", "127.0.0.1")


def make_adapter(fake: FakeHubSpot, **kwargs) -> HubSpotAdapter:
    config = HubSpotConfig(
        adapter="hubspot", base_url=fake.url(""), token={"env": "HUBSPOT_TOKEN"}, category="sales"
    )
    return HubSpotAdapter("acme", config, **kwargs)


def drain(adapter, cursor=None, limit=10) -> tuple[list[CrmPage], str | None]:
    return paging.drain(adapter, cursor, limit, max_pages=1000)


def searches(fake: FakeHubSpot) -> list[dict]:
    return [body for method, path, body in fake.requests if path == SEARCH]


def test_pages_through_many_calls_sharing_one_modification_time(fake):
    for i in range(1, 26):
        fake.add_call(100 + i, T0 + i * 1000)
    for i in range(57):  # a bulk update: 57 calls modified in the same millisecond
        fake.add_call(500 + i, T0 + 30_000)
    for i in range(8):
        fake.add_call(900 + i, T0 + 40_000 + i)
    pages, cursor = drain(make_adapter(fake), limit=10)

    ids = listed_ids(pages)
    assert sorted(ids) == sorted(fake.calls)  # every call ...
    assert len(ids) == len(set(ids))  # ... exactly once
    assert all(len(p.calls) <= 10 for p in pages)
    assert all(len(p.cursor) < 60 for p in pages)  # a watermark and an id, never a set
    assert all("after" not in body for body in searches(fake))


def test_calls_changed_while_paging_are_neither_lost_nor_skipped_past(fake):
    for i in range(20):
        fake.add_call(100 + i, T0 + i)
    for i in range(25):
        fake.add_call(200 + i, T0 + 50)  # a tie group, walked by id
    adapter = make_adapter(fake)
    first = [adapter.list_calls(None, 10)]
    seen = listed_ids(first)
    assert seen == [str(100 + i) for i in range(9)]  # 109 may share its time with 110
    # Between two pages, a listed call and two calls not listed yet change (one of them
    # inside the tie group that is still to come): each moves to the end of the order.
    for call_id in ("104", "115", "207"):
        fake.touch(call_id, T0 + 10_000)
    rest, _ = drain(adapter, first[0].cursor, limit=10)
    later = listed_ids(rest)
    assert sorted(set(seen + later)) == sorted(fake.calls)  # nothing lost
    assert later.count("115") == 1 and later.count("207") == 1
    assert later.count("104") == 1  # listed again: it changed after it was listed


def test_more_matching_calls_than_the_search_cap_are_all_listed(fake):
    fake.cap = 25  # stands in for HubSpot's 10,000 results per query
    for i in range(60):
        fake.add_call(1000 + i, T0 + i * 10)
    for i in range(40):
        fake.add_call(2000 + i, T0 + 5_000)  # and more ties than the cap allows
    pages, _ = drain(make_adapter(fake), limit=10)

    ids = listed_ids(pages)
    assert sorted(ids) == sorted(fake.calls) and len(ids) == 100
    assert all(int(b.get("after") or 0) + b["limit"] <= fake.cap for b in searches(fake))
    # The fake does refuse to page past its cap, so the adapter must have re-queried from
    # its watermark instead of following `after` offsets.
    body = {"limit": 10, "after": "20"}
    refused = requests.post(
        fake.url(SEARCH), json=body, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5
    )
    assert refused.status_code == 400 and "limited to 25" in refused.json()["message"]


def test_the_next_poll_lists_only_calls_changed_since_the_cursor(fake):
    now = [T0 / 1000 + 100]
    adapter = make_adapter(fake, clock=lambda: now[0])
    for i in range(12):
        fake.add_call(300 + i, T0 + i * 1000)
    first, cursor = drain(adapter, limit=5)
    assert len(listed_ids(first)) == 12

    now[0] += 300  # HubSpot changes calls at its "now", after the poll
    fake.add_call(400, T0 + 200_000)
    fake.add_call(401, T0 + 200_000)
    fake.touch(303, T0 + 220_000)  # its recording was replaced: a change to list again
    second, cursor = drain(adapter, cursor, limit=5)
    assert sorted(listed_ids(second)) == ["303", "400", "401"]

    third, _ = drain(adapter, cursor, limit=5)
    assert listed_ids(third) == []


def test_a_change_is_listed_only_once_search_has_had_time_to_index_it(fake):
    now = [T0 / 1000 + 3600]
    adapter = make_adapter(fake, index_lag_s=60, clock=lambda: now[0])
    fake.add_call(1, T0)
    fake.add_call(2, int(now[0] * 1000) - 5_000)  # changed 5 s ago: maybe not indexed yet
    first, cursor = drain(adapter)
    assert listed_ids(first) == ["1"]

    now[0] += 120
    second, _ = drain(adapter, cursor)
    assert listed_ids(second) == ["2"]


def test_deals_and_contacts_of_a_page_become_links_in_two_batch_requests(fake):
    for i in (1, 2, 3):
        fake.add_call(i, T0 + i)
    fake.associations["deals"] = {"1": ["501"]}
    fake.associations["contacts"] = {"1": ["9", "12"], "2": ["9"]}
    page = make_adapter(fake).list_calls(None, 10)

    links = {c.external_id: c.links for c in page.calls}
    assert links == {"1": {"deals": "501", "contacts": "9,12"}, "2": {"contacts": "9"}, "3": {}}
    batch = [path for _, path, _ in fake.requests if path.startswith("/crm/v4/")]
    assert batch == [
        "/crm/v4/associations/calls/deals/batch/read",
        "/crm/v4/associations/calls/contacts/batch/read",
    ]


def test_a_call_maps_to_a_crm_call(fake):
    fake.add_call(7, T0, hs_call_direction="INBOUND", hs_call_duration="61500")
    (call,) = make_adapter(fake).list_calls(None, 10).calls
    assert call.external_id == "7"
    assert call.recording_url == fake.url("/recordings/call-001.flac")
    assert call.duration_s == 61.5
    assert call.direction == "inbound"
    assert call.operator == "77"
    assert call.category == "sales"
    assert int(call.started_at.timestamp() * 1000) == T0 - 600_000


def test_an_expired_token_is_an_auth_error_without_the_token(fake):
    fake.add_call(1, T0)
    fake.token = "pat-na1-rotated"
    with pytest.raises(CrmAuthError) as raised:
        make_adapter(fake).list_calls(None, 10)
    assert "401" in str(raised.value) and TOKEN not in str(raised.value)


def test_after_a_429_the_same_cursor_lists_the_same_calls(fake):
    for i in range(6):
        fake.add_call(10 + i, T0 + i)
    adapter = make_adapter(fake)
    first = adapter.list_calls(None, 4)
    fake.script.append((429, {"status": "error", "policyName": "SECONDLY"}, {"Retry-After": "7"}))
    with pytest.raises(CrmRateLimited) as raised:
        adapter.list_calls(first.cursor, 4)
    assert raised.value.retry_after_s == 7
    second = adapter.list_calls(first.cursor, 4)
    assert sorted(listed_ids([first, second])) == [str(10 + i) for i in range(6)]


def test_a_server_error_is_an_outage(fake):
    fake.script.append((503, {"status": "error", "message": "Service Unavailable"}))
    with pytest.raises(CrmUnavailable, match="503"):
        make_adapter(fake).list_calls(None, 10)


def test_malformed_calls_are_rejected_by_id_and_the_rest_are_listed(fake):
    fake.add_call(1, T0 + 1)
    fake.add_call(2, T0 + 2, hs_call_recording_url=None, hs_call_status="NO_ANSWER")
    fake.add_call(3, T0 + 3, hs_call_duration="abc")
    fake.add_call(4, T0 + 4, hs_timestamp="yesterday")
    fake.add_call(5, T0 + 5)
    adapter = make_adapter(fake)
    page = adapter.list_calls(None, 10)

    assert [c.external_id for c in page.calls] == ["1", "5"]
    problems = {r.external_id: r.problem for r in page.rejected}
    assert set(problems) == {"2", "3", "4"}
    assert "no recording" in problems["2"] and "NO_ANSWER" in problems["2"]
    assert "'abc'" in problems["3"] and "'yesterday'" in problems["4"]
    # Reported once: the cursor has moved past them.
    assert adapter.list_calls(page.cursor, 10).rejected == []


def test_a_hubspot_hosted_recording_is_fetched_with_the_token(fake):
    fake.add_call(1, T0, hs_call_recording_url=fake.url("/recordings/call-003.flac"))
    adapter = make_adapter(fake)
    (call,) = adapter.list_calls(None, 10).calls
    data = adapter.fetch_recording(call.recording_url, max_bytes=5_000_000)
    assert data == (DEMO_CALLS / "call-003.flac").read_bytes()
    assert fake.recording_headers[-1]["Authorization"] == f"Bearer {TOKEN}"


def test_a_recording_elsewhere_never_sees_the_token(fake):
    with FakeHubSpot("unused", recordings_need_auth=False) as elsewhere:
        adapter = make_adapter(fake)
        data = adapter.fetch_recording(elsewhere.url("/recordings/call-002.flac"), 5_000_000)
        assert data == (DEMO_CALLS / "call-002.flac").read_bytes()
        # Redirected there by the API host: the token stays behind too.
        target = elsewhere.url("/recordings/call-004.flac")
        data = adapter.fetch_recording(fake.url(f"/redirect?to={target}"), 5_000_000)
        assert data == (DEMO_CALLS / "call-004.flac").read_bytes()
        assert len(elsewhere.recording_headers) == 2
        assert all("Authorization" not in h for h in elsewhere.recording_headers)


def result(total: float = 72.5, summary: str = "Good discovery, weak close.") -> CallResult:
    return CallResult(
        partition_key="acme__1",
        total=total,
        summary=summary,
        report_url="https://qa.example.com/r/acme__1.html",
        preset="sales",
        weakest_criterion="closing",
    )


def test_write_result_adds_one_note_then_updates_it_then_recreates_it(fake):
    fake.associations["deals"] = {"1": ["501"]}
    fake.associations["contacts"] = {"1": ["9", "12"]}
    adapter = make_adapter(fake)
    links = {"deals": "501", "contacts": "9,12"}

    written = adapter.write_result(links, result(), {})
    (note_id,) = fake.notes
    assert written == {"note": note_id}
    note = fake.notes[note_id]
    assert "72.5/100" in note["properties"]["hs_note_body"]
    assert note["properties"]["hs_timestamp"].isdigit()
    assert sorted(
        (a["to"]["id"], a["types"][0]["associationTypeId"]) for a in note["associations"]
    ) == [("12", 202), ("501", 214), ("9", 202)]

    again = adapter.write_result(links, result(total=40.0), written)
    assert again == written and list(fake.notes) == [note_id]  # same note, updated
    assert "40.0/100" in fake.notes[note_id]["properties"]["hs_note_body"]

    del fake.notes[note_id]  # someone deleted it in HubSpot
    recreated = adapter.write_result(links, result(), written)
    assert recreated["note"] != note_id and list(fake.notes) == [recreated["note"]]


def test_a_refused_note_update_is_not_mistaken_for_a_deleted_note(fake):
    fake.associations["deals"] = {"1": ["501"]}
    adapter = make_adapter(fake)
    written = adapter.write_result({"deals": "501"}, result(), {})
    fake.script.append((400, {"status": "error", "message": "Property values were not valid"}))
    with pytest.raises(CrmError, match="HTTP 400"):
        adapter.write_result({"deals": "501"}, result(), written)
    assert list(fake.notes) == [written["note"]]  # no second note


def test_the_note_body_is_escaped_html(fake):
    fake.associations["contacts"] = {"1": ["9"]}
    adapter = make_adapter(fake)
    written = adapter.write_result(
        {"contacts": "9"}, result(summary="<script>alert(1)</script> & co"), {}
    )
    body = fake.notes[written["note"]]["properties"]["hs_note_body"]
    assert "<script>" not in body and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in body
    assert '<a href="https://qa.example.com/r/acme__1.html">' in body


def test_no_linked_card_means_no_note(fake):
    assert make_adapter(fake).write_result({}, result(), {}) == {}
    assert fake.notes == {}
    with pytest.raises(CrmPayloadError, match="leads"):
        make_adapter(fake).write_result({"leads": "5"}, result(), {})


def test_webhook_events_are_acknowledged_and_left_to_the_poll(fake):
    events = [
        {
            "eventId": 1,
            "subscriptionId": 2,
            "portalId": 3,
            "appId": 4,
            "occurredAt": T0,
            "subscriptionType": "object.creation",
            "attemptNumber": 0,
            "objectId": 123,
            "objectTypeId": "0-48",
            "changeSource": "CRM_UI",
        },
        {
            "eventId": 2,
            "subscriptionId": 5,
            "portalId": 3,
            "occurredAt": T0,
            "subscriptionType": "object.propertyChange",
            "objectId": 123,
            "propertyName": "hs_call_recording_url",
            "propertyValue": "https://calls.example.com/123.wav",
        },
    ]
    adapter = make_adapter(fake)
    assert adapter.parse_webhook(json.dumps(events).encode(), "application/json") == []
    assert fake.requests == []  # no HTTP inside a webhook
    for bad in (b"not json", b'{"calls": 1}', b'[{"objectId": "x"}]'):
        with pytest.raises(CrmPayloadError, match="HubSpot webhook"):
            adapter.parse_webhook(bad, "application/json")


def test_the_token_never_shows_in_repr_or_errors(fake):
    adapter = make_adapter(fake)
    assert TOKEN not in repr(adapter) and TOKEN not in str(vars(adapter))
    fake.script += [(429, {}), (503, {}), (400, {"status": "error", "message": "bad"})]
    texts = []
    for _ in range(3):
        with pytest.raises(Exception) as raised:
            adapter.list_calls(None, 10)
        texts.append(str(raised.value))
    fake.token = "rotated"
    with pytest.raises(CrmAuthError) as raised:
        adapter.list_calls(None, 10)
    texts.append(str(raised.value))
    with pytest.raises(CrmPayloadError) as raised:
        adapter.list_calls("not a cursor", 10)
    texts.append(str(raised.value))
    assert all(TOKEN not in t and TOKEN[-12:] not in t for t in texts)
