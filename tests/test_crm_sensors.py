"""Per-tenant CRM sensors (`crm_<tenant>_sensor`) against a fake HubSpot on loopback:
small cursors, paging across ticks, dedupe, and failures that lose nothing."""

from __future__ import annotations

import json
import time

import dagster as dg
import pytest

from callqa.config.registry import default_registry
from callqa.definitions import defs as load_defs
from callqa.resources import WarehouseResource
from callqa.sensors.crm_sources import MAX_CALLS_PER_TICK, CrmCursor, build_crm_sensor
from callqa.sensors.staged_calls import build_staged_calls_sensor
from callqa.storage.warehouse import Warehouse
from tests.fakes.hubspot import FakeHubSpot
from tests.tenants import use_tenants

TOKEN = "pat-na1-sensor-test-token-0042"
T0 = 1_726_000_000_000  # long settled in HubSpot's search index


@pytest.fixture
def hubspot():
    with FakeHubSpot(TOKEN, recordings_need_auth=False) as server:
        yield server


def _tenant(tenant_id: str, base_url: str, token_env: str, **extra) -> dict:
    return {
        "id": tenant_id,
        "name": tenant_id.title(),
        "crm": {
            "adapter": "hubspot",
            "base_url": base_url,
            "token": {"env": token_env},
            "page_size": 200,
            "poll_interval_s": 30,
        },
        **extra,
    }


@pytest.fixture
def acme(tmp_path, monkeypatch, hubspot):
    monkeypatch.setenv("ACME_HUBSPOT_TOKEN", TOKEN)
    monkeypatch.setenv("CALLQA_ALLOW_PRIVATE_URLS", "127.0.0.1")
    use_tenants(
        tmp_path / "config", monkeypatch, _tenant("acme", hubspot.url(""), "ACME_HUBSPOT_TOKEN")
    )
    yield default_registry().tenant("acme")
    default_registry.cache_clear()


def _tick(sensor, db_url: str, cursor: str | None, instance=None):
    resources = {"warehouse": WarehouseResource(database_url=db_url)}
    with dg.build_sensor_context(
        instance=instance or dg.DagsterInstance.ephemeral(), cursor=cursor, resources=resources
    ) as context:
        return sensor(context)


def _staged_ids(db_url: str, tenant: str) -> list[str]:
    wh = Warehouse.from_url(db_url)
    try:
        return [r["external_id"] for r in wh.staged_calls(tenant)]
    finally:
        wh.dispose()


def test_a_backlog_of_10000_calls_is_staged_across_ticks_exactly_once(acme, hubspot, pg_url):
    """On PostgreSQL, the production warehouse (the other tests here run on both)."""
    db_url = pg_url
    for i in range(10_000):
        hubspot.add_call(100_000 + i, T0 + (i // 7) * 1000)  # ties: 7 calls per millisecond-second
    sensor = build_crm_sensor(acme)
    cursor, ticks, cursors = None, 0, []
    while True:
        result = _tick(sensor, db_url, cursor)
        ticks += 1
        cursor = result.cursor
        cursors.append(cursor)
        if result.skip_reason.skip_message.startswith("0 new call(s)"):
            break
        assert ticks < 20
    staged = _staged_ids(db_url, "acme")
    assert len(staged) == 10_000 and len(set(staged)) == 10_000
    # Bounded per tick (the rest waits for the next one), and the cursor never grows.
    assert ticks >= 10_000 // MAX_CALLS_PER_TICK
    assert max(len(c) for c in cursors) < 120, cursors[-1]
    # Calls listed again (a reset cursor, a call changed in the CRM) stay one staged call each.
    again = _tick(sensor, db_url, None)
    assert again.skip_reason.skip_message.startswith(
        f"0 new call(s) staged of {MAX_CALLS_PER_TICK} listed"
    )
    assert len(_staged_ids(db_url, "acme")) == 10_000


def test_staged_crm_calls_become_partitions_and_runs(acme, hubspot, tmp_path):
    db_url = f"sqlite:///{tmp_path / 'wh.db'}"
    for i in range(3):
        hubspot.add_call(500 + i, T0 + i * 1000)
    hubspot.associations["deals"]["500"] = ["77"]
    instance = dg.DagsterInstance.ephemeral()
    _tick(build_crm_sensor(acme), db_url, None, instance)
    runs = _tick(build_staged_calls_sensor(), db_url, None, instance)
    assert sorted(instance.get_dynamic_partitions("calls")) == [
        f"acme__{500 + i}" for i in range(3)
    ]
    assert runs.run_requests
    wh = Warehouse.from_url(db_url)
    row = wh.staged_call("acme", "500")
    wh.dispose()
    assert row["source"] == "crm" and row["links"] == {"deals": "77"}
    assert row["source_uri"].endswith("/recordings/call-001.flac")


def test_an_outage_fails_the_tick_and_the_next_tick_goes_on(acme, hubspot, db_url):
    for i in range(5):
        hubspot.add_call(700 + i, T0 + i * 1000)
    sensor = build_crm_sensor(acme)
    hubspot.script = [(503, {"status": "error", "message": "Service Unavailable"})]
    with pytest.raises(Exception, match=r"tenant acme: .*server error \(HTTP 503\)"):
        _tick(sensor, db_url, None)
    assert _staged_ids(db_url, "acme") == []
    result = _tick(sensor, db_url, None)  # same (empty) cursor: nothing was lost
    assert sorted(_staged_ids(db_url, "acme")) == [str(700 + i) for i in range(5)]
    assert "5 new call(s)" in result.skip_reason.skip_message


def test_an_expired_token_fails_the_tick_without_showing_the_token(
    acme, hubspot, db_url, monkeypatch
):
    hubspot.add_call(801, T0)
    monkeypatch.setenv("ACME_HUBSPOT_TOKEN", "pat-na1-expired-token-7777")
    default_registry.cache_clear()
    sensor = build_crm_sensor(default_registry().tenant("acme"))
    with pytest.raises(Exception) as err:
        _tick(sensor, db_url, None)
    assert "credentials refused (HTTP 401)" in str(err.value)
    assert "expired-token" not in str(err.value)
    monkeypatch.setenv("ACME_HUBSPOT_TOKEN", TOKEN)  # the admin rotates the token
    _tick(sensor, db_url, None)
    assert _staged_ids(db_url, "acme") == ["801"]


def test_a_429_waits_for_retry_after_and_then_resumes_from_the_same_place(
    acme, hubspot, db_url, monkeypatch
):
    monkeypatch.setattr("callqa.sensors.crm_sources.MAX_CALLS_PER_TICK", 200)
    for i in range(450):
        hubspot.add_call(1000 + i, T0 + i * 1000)
    sensor = build_crm_sensor(acme)
    first = _tick(sensor, db_url, None)  # 200 of the backlog
    cursor = CrmCursor.parse(first.cursor)
    assert cursor.not_before == 0.0 and len(_staged_ids(db_url, "acme")) == 200
    # Then HubSpot says: slow down for 30 s.
    hubspot.script = [(429, {"status": "error", "message": "rate limit"}, {"Retry-After": "30"})]
    limited = _tick(sensor, db_url, first.cursor)
    waiting = CrmCursor.parse(limited.cursor)
    assert waiting.not_before > time.time() + 25
    assert waiting.source == cursor.source  # the place in the CRM is kept
    assert "429" in limited.skip_reason.skip_message
    skipped = _tick(sensor, db_url, limited.cursor)
    assert "asked to wait" in skipped.skip_reason.skip_message
    assert hubspot.script == [] and len(_staged_ids(db_url, "acme")) == 200
    # Once the wait is over (pretend 30 s passed), it goes on from where it was.
    resumed = CrmCursor(source=waiting.source, not_before=time.time() - 1).dump()
    cursor = _tick(sensor, db_url, resumed).cursor
    cursor = _tick(sensor, db_url, cursor).cursor
    staged = _staged_ids(db_url, "acme")
    assert sorted(staged) == sorted(str(1000 + i) for i in range(450))


def test_malformed_records_are_reported_on_the_tick_and_passed(acme, hubspot, db_url, capfd):
    hubspot.add_call(901, T0)
    hubspot.add_call(902, T0 + 1000, hs_call_recording_url=None)
    hubspot.add_call(903, T0 + 2000, hs_call_duration="abc")
    hubspot.add_call(904, T0 + 3000)
    result = _tick(build_crm_sensor(acme), db_url, None)
    assert "2 record(s) rejected" in result.skip_reason.skip_message
    assert sorted(_staged_ids(db_url, "acme")) == ["901", "904"]
    logged = capfd.readouterr().err  # the sensor's context.log
    assert "record 902 rejected" in logged and "record 903 rejected" in logged
    # Reported once: the cursor moved past them.
    again = _tick(build_crm_sensor(acme), db_url, result.cursor)
    assert "rejected" not in again.skip_reason.skip_message


def test_one_sensor_per_crm_tenant_and_one_outage_blocks_no_other(tmp_path, monkeypatch, db_url):
    with FakeHubSpot(TOKEN, recordings_need_auth=False) as up, FakeHubSpot(TOKEN) as down:
        monkeypatch.setenv("HS_TOKEN", TOKEN)
        monkeypatch.setenv("CALLQA_ALLOW_PRIVATE_URLS", "127.0.0.1")
        use_tenants(
            tmp_path / "config",
            monkeypatch,
            _tenant("north-shop", up.url(""), "HS_TOKEN"),
            _tenant("south", down.url(""), "HS_TOKEN"),
        )
        try:
            sensors = {s.name: s for s in load_defs().sensors}
            assert {"crm_north_shop_sensor", "crm_south_sensor", "staged_calls_sensor"} <= set(
                sensors
            )
            assert sensors["crm_north_shop_sensor"].minimum_interval_seconds == 30
            up.add_call(1, T0)
            down.add_call(2, T0)
            down.script = [(502, {"message": "Bad Gateway"})] * 3
            with pytest.raises(Exception, match="HTTP 502"):
                _tick(sensors["crm_south_sensor"], db_url, None)
            _tick(sensors["crm_north_shop_sensor"], db_url, None)
            assert _staged_ids(db_url, "north-shop") == ["1"]
            assert _staged_ids(db_url, "south") == []
        finally:
            default_registry.cache_clear()


def test_cursor_is_json_with_only_a_watermark_and_a_wait():
    cursor = CrmCursor(source=json.dumps({"ms": T0, "id": "123"}), not_before=0.0)
    assert json.loads(cursor.dump()) == {"source": json.dumps({"ms": T0, "id": "123"})}
    assert CrmCursor.parse(None) == CrmCursor()
