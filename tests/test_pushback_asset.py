"""The crm_pushback asset end to end for one CRM call: recording fetched from a fake
AmoCRM's file host, transcribed by the real model, scored, and the result written to the
lead as one note (updated, never duplicated, when run again), with the call's HTML report
in the report store and a failed write-back recorded and retryable."""

from __future__ import annotations

import dagster as dg
import pytest

from callqa.config.registry import default_registry
from callqa.storage.warehouse import Warehouse
from tests.call_assets import materialize_call
from tests.fakes.amocrm import FakeAmoCrm
from tests.tenants import use_tenants

TOKEN = "amo-token-pushback-asset-test-5555"
KEY = "acme__leads-9001"
STAGES = ["raw_audio", "transcript", "diarized_transcript", "scored_analysis", "crm_pushback"]


@pytest.fixture
def amo(tmp_path, monkeypatch):
    with FakeAmoCrm(TOKEN) as fake:
        monkeypatch.setenv("ACME_AMO_TOKEN", TOKEN)
        monkeypatch.setenv("CALLQA_ALLOW_PRIVATE_URLS", "127.0.0.1")
        monkeypatch.setenv("CALLQA_REPORT_STORE", str(tmp_path / "reports"))
        monkeypatch.setenv("CALLQA_REPORT_BASE_URL", "https://reports.example.com/qa/")
        monkeypatch.setenv("CALLQA_REPORT_LINK_KEY", "link-key-for-tests")
        use_tenants(
            tmp_path / "config",
            monkeypatch,
            {
                "id": "acme",
                "name": "Acme",
                "crm": {
                    "adapter": "amocrm",
                    "subdomain": "acme",
                    "base_url": fake.api_base,
                    "token": {"env": "ACME_AMO_TOKEN"},
                },
            },
        )
        yield fake
        default_registry.cache_clear()


def _pushback_meta(result) -> dict:
    [event] = [
        e
        for e in result.get_asset_materialization_events()
        if e.materialization.asset_key == dg.AssetKey("crm_pushback")
    ]
    return {k: getattr(v, "value", v) for k, v in event.materialization.metadata.items()}


@pytest.mark.model
def test_score_lands_on_the_lead_once_and_retries_after_an_outage(amo, tmp_path):
    db_url = f"sqlite:///{tmp_path / 'wh.db'}"
    wh = Warehouse.from_url(db_url)
    wh.stage_call(
        tenant="acme",
        external_id="leads-9001",
        source="crm",
        source_uri=amo.recording_url("call-006.flac"),
        links={"leads": "42"},
    )
    instance = dg.DagsterInstance.ephemeral()
    first = materialize_call(STAGES, KEY, db_url, tmp_path, instance)
    assert first.success
    [note] = amo.notes_on("leads", 42)
    total = wh.analysis("acme", "leads-9001")["scores"]["total"]
    assert f"callqa score: {total:.1f}/100" in note["params"]["text"]
    meta = _pushback_meta(first)
    assert meta["crm"] == "amocrm" and meta["crm_notes"] == 1 and meta["written_back"] is True
    url = meta["report_url"]
    assert (
        url.startswith("https://reports.example.com/qa/acme/leads-9001-")
        and url in note["params"]["text"]
    )
    report = tmp_path / "reports" / url.removeprefix("https://reports.example.com/qa/")
    html = report.read_text()
    assert "operator" in html and "customer" in html and f"{total:.1f}" in html
    row = wh.pushback("acme", "leads-9001")
    assert row["note_ids"] == {"leads:42": str(note["id"])}
    assert TOKEN not in str(meta)

    # Run again (a re-score, a retry): the same note is updated, no second note appears.
    again = materialize_call(["crm_pushback"], KEY, db_url, tmp_path, instance)
    assert again.success and len(amo.notes_on("leads", 42)) == 1

    # The CRM is down: the call fails at crm_pushback with the reason; a later run works.
    amo.fail_next(503, times=10)
    down = materialize_call(["crm_pushback"], KEY, db_url, tmp_path, instance)
    assert not down.success
    staged = wh.staged_call("acme", "leads-9001")
    assert staged["status"] == "failed" and staged["error"].startswith("crm_pushback:")
    assert "HTTP 503" in staged["error"] and TOKEN not in staged["error"]
    amo.failures.clear()
    assert materialize_call(["crm_pushback"], KEY, db_url, tmp_path, instance).success
    assert len(amo.notes_on("leads", 42)) == 1
    assert wh.staged_call("acme", "leads-9001")["status"] == "processed"
    wh.dispose()
