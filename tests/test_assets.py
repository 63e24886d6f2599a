"""The per-call asset chain and the aggregate asset, materialized through Dagster."""

import json

import dagster as dg
import numpy as np
import pytest
import sqlalchemy as sa

from callqa.assets.aggregates import build_tenant_aggregates
from callqa.config.registry import default_registry
from callqa.crm.file_drop import StagedFile, stage_files
from callqa.resources import (
    ScorerResource,
)
from callqa.speech.audio import decode_file
from callqa.storage import tables as t
from callqa.storage.warehouse import Warehouse
from tests.audio_helpers import noise, write_wav
from tests.call_assets import (
    ALL_STAGES,
    InventedQuoteScorerResource,
    call_resources,
    materialize_call,
)
from tests.paths import DEMO_CALLS

tenant_daily_aggregates = build_tenant_aggregates(sorted(default_registry().tenants))


def stage(db_url, path, external_id, **kw):
    wh = Warehouse.from_url(db_url)
    [key] = stage_files(wh, "demo", [StagedFile(path=path, external_id=external_id, **kw)])
    return wh, key.partition_key


def checks_by_name(result):
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def count(wh, table, **where):
    with wh.engine.connect() as conn:
        query = sa.select(sa.func.count()).select_from(table)
        for column, value in where.items():
            query = query.where(table.c[column] == value)
        return conn.execute(query).scalar_one()


@pytest.mark.model
@pytest.mark.slow
def test_call_chain_end_to_end_and_idempotent(db_url, tmp_path, good_call):
    wh, key = stage(
        db_url,
        DEMO_CALLS / good_call["file"],
        good_call["external_id"],
        operator=good_call["operator"],
        category="sales",
    )
    instance = dg.DagsterInstance.ephemeral()
    result = materialize_call(ALL_STAGES, key, db_url, tmp_path, instance)
    assert result.success
    checks = checks_by_name(result)
    assert set(checks) == {
        "recording_decodable",
        "transcript_covers_speech",
        "both_roles_present",
        "analysis_matches_schema",
        "analysis_business_rules",
    }
    assert all(c.passed for c in checks.values()), {n: c.metadata for n, c in checks.items()}

    mats = {m.asset_key.path[-1]: m for m in result.get_asset_materialization_events()}
    audio_meta = mats["raw_audio"].materialization.metadata
    assert audio_meta["channels"].value == 2 and audio_meta["duration_s"].value > 20
    score_meta = mats["scored_analysis"].materialization.metadata
    assert 0 <= score_meta["total"].value <= 100
    assert score_meta["scorer"].value == "rules"

    record = wh.analysis("demo", good_call["external_id"])
    assert record["call"]["operator"] == good_call["operator"]
    assert wh.staged_call("demo", good_call["external_id"])["status"] == "processed"
    assert len(wh.attempts("demo", good_call["external_id"])) == 1

    # Re-materializing updates in place: still one row per call in every table.
    again = materialize_call(ALL_STAGES, key, db_url, tmp_path, instance)
    assert again.success
    for table in (t.calls, t.analyses):
        assert count(wh, table, tenant="demo") == 1
    assert count(wh, t.transcripts, tenant="demo") == 2  # stt + diarized
    assert count(wh, t.criterion_scores, tenant="demo") == 6
    assert len(wh.attempts("demo", good_call["external_id"])) == 2  # attempts are a log
    wh.dispose()


def test_corrupt_recording_fails_clearly_and_is_recorded(tmp_path):
    db_url = f"sqlite:///{tmp_path / 'wh.db'}"
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEgarbage" * 10)
    wh, key = stage(db_url, bad, "broken-1")
    result = materialize_call(ALL_STAGES, key, db_url, tmp_path, dg.DagsterInstance.ephemeral())
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = failure.step_failure_data.user_failure_data.description
    assert key in message and "not a readable audio file" in message
    assert str(bad) in message  # names the recording itself
    staged = wh.staged_call("demo", "broken-1")
    assert staged["status"] == "failed" and "raw_audio" in staged["error"]
    assert count(wh, t.calls) == 0
    wh.dispose()


@pytest.mark.model
def test_blocking_coverage_check_stops_downstream(tmp_path, good_call):
    """Noise on the customer channel is 'speech' by energy but not by the STT: the
    transcript check fails and the diarized transcript is not built from it."""
    db_url = f"sqlite:///{tmp_path / 'wh.db'}"
    left = decode_file(DEMO_CALLS / good_call["file"]).channels[0][: 16000 * 6]
    right = np.concatenate([np.zeros(16000 * 6, dtype=np.float32), noise(20, level=0.3)])
    path = write_wav(tmp_path / "noisy.wav", [left, right])
    wh, key = stage(db_url, path, "noisy-1")
    result = materialize_call(ALL_STAGES, key, db_url, tmp_path, dg.DagsterInstance.ephemeral())
    checks = checks_by_name(result)
    assert checks["recording_decodable"].passed
    coverage = checks["transcript_covers_speech"]
    assert not coverage.passed
    assert coverage.metadata["coverage"].value < 0.8
    materialized = {m.asset_key.path[-1] for m in result.get_asset_materialization_events()}
    assert materialized == {"raw_audio", "transcript"}
    assert wh.transcript("demo", "noisy-1", "diarized") is None
    # The call is failed with the check's message (visible, retryable), not left 'staged'.
    assert not result.success
    staged = wh.staged_call("demo", "noisy-1")
    assert staged["status"] == "failed"
    assert "transcript_covers_speech" in staged["error"]
    assert "transcript misses detected speech" in staged["error"]
    wh.dispose()


@pytest.mark.model
@pytest.mark.slow
def test_a_silent_customer_channel_is_seen_by_the_check_and_said_by_the_score(tmp_path, good_call):
    """A stereo recording whose customer channel is dead: the operator alone 'asks four
    questions'. The roles check fails (a warning: the call is still scored) and the score
    says the customer never spoke, in the record and at the head of the summary."""
    db_url = f"sqlite:///{tmp_path / 'wh.db'}"
    left = decode_file(DEMO_CALLS / good_call["file"]).channels[0]
    path = write_wav(tmp_path / "one-sided.wav", [left, np.zeros_like(left)])
    wh, key = stage(db_url, path, "one-sided-1")
    result = materialize_call(ALL_STAGES, key, db_url, tmp_path, dg.DagsterInstance.ephemeral())
    roles = checks_by_name(result)["both_roles_present"]
    assert not roles.passed
    assert roles.severity == dg.AssetCheckSeverity.WARN
    assert roles.metadata["never_spoke"].value == "customer"
    assert result.success  # scored, with the caveat
    record = wh.analysis("demo", "one-sided-1")
    assert record["schema_version"] == "2.1"
    assert record["transcript"]["warnings"] == [
        "the customer never speaks (one-sided recording: its channel has no speech): "
        "criteria that depend on the conversation cannot be judged"
    ]
    assert record["summary"].startswith("Caution: The customer never speaks")
    assert {s["speaker"] for s in record["transcript"]["segments"]} == {"operator"}
    wh.dispose()


@pytest.mark.model
@pytest.mark.slow
def test_analysis_failing_a_blocking_check_is_not_published(tmp_path, good_call):
    """Validate, then publish: a record that fails `analysis_business_rules` is not stored
    as an analysis, so it cannot reach the aggregates; the call is failed with the reason."""
    db_url = f"sqlite:///{tmp_path / 'wh.db'}"
    wh, key = stage(db_url, DEMO_CALLS / good_call["file"], "buggy-1")
    instance = dg.DagsterInstance.ephemeral()
    assert materialize_call(ALL_STAGES[:3], key, db_url, tmp_path, instance).success
    result = materialize_call(
        ["scored_analysis"],
        key,
        db_url,
        tmp_path,
        instance,
        InventedQuoteScorerResource(quote="best price guaranteed forever"),
    )
    assert not result.success
    assert not checks_by_name(result)["analysis_business_rules"].passed
    assert wh.analysis("demo", "buggy-1") is None
    assert count(wh, t.criterion_scores) == 0
    staged = wh.staged_call("demo", "buggy-1")
    assert staged["status"] == "failed"
    assert "analysis_business_rules" in staged["error"]
    assert "best price guaranteed forever" in staged["error"]
    wh.dispose()


@pytest.mark.model
@pytest.mark.slow
def test_quote_of_a_speaker_label_is_not_evidence(tmp_path, good_call, fake_llm):
    """The quote check searches the spoken words, not text with "[0.1] operator:" labels."""
    preset = default_registry().preset("sales-default")
    db_url = f"sqlite:///{tmp_path / 'wh.db'}"
    wh, key = stage(db_url, DEMO_CALLS / good_call["file"], "label-1")
    instance = dg.DagsterInstance.ephemeral()
    assert materialize_call(ALL_STAGES[:3], key, db_url, tmp_path, instance).success
    quote_of_label = _llm_reply(
        preset,
        criteria=[
            {
                "id": c,
                "score": 3,
                "rationale": "ok",
                "evidence": [{"quote": "operator", "start": 0, "speaker": "operator"}],
            }
            for c in preset.criterion_ids
        ],
    )
    fake_llm.replies = [quote_of_label, quote_of_label]
    scorer = ScorerResource(
        scorer="llm", model="openai/m", api_base=fake_llm.api_base, api_key="k-test"
    )
    result = materialize_call(["scored_analysis"], key, db_url, tmp_path, instance, scorer)
    assert not result.success
    [*_, last] = wh.attempts("demo", "label-1")
    assert "quote not found in the transcript (as whole words): 'operator'" in last["error"]
    assert wh.analysis("demo", "label-1") is None
    assert wh.staged_call("demo", "label-1")["status"] == "failed"
    # The invalid final result is kept, with its errors, by version; never in `analyses`.
    [invalid] = wh.analysis_versions("demo", "label-1")
    assert not invalid["valid"] and invalid["total"] is None
    assert "'operator'" in invalid["errors"] and invalid["attempts"] == 2
    # ... and the call's rules check says why, in the UI.
    [evaluation] = [
        e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    assert evaluation.check_name == "analysis_business_rules" and not evaluation.passed
    assert "no valid analysis after 2 attempt(s)" in evaluation.description
    wh.dispose()


def _llm_reply(preset, **overrides):
    reply = {
        "criteria": [
            {"id": c, "score": 3, "rationale": "ok", "evidence": []} for c in preset.criterion_ids
        ],
        "summary": "ok",
        "recommendations": [],
        "patterns": [],
    }
    reply.update(overrides)
    return json.dumps(reply)


@pytest.mark.model
@pytest.mark.slow
def test_llm_scorer_invalid_replies_are_recorded_and_retryable(
    tmp_path, good_call, fake_llm, monkeypatch
):
    from callqa.config.registry import default_registry
    from callqa.resources.deployments import resources_for
    from callqa.settings import load_settings

    preset = default_registry().preset("sales-default")
    db_url = f"sqlite:///{tmp_path / 'wh.db'}"
    wh, key = stage(db_url, DEMO_CALLS / good_call["file"], "llm-1", category="sales")
    instance = dg.DagsterInstance.ephemeral()
    # Configured the way a deployment does it: environment variables read via dg.EnvVar.
    monkeypatch.setenv("CALLQA_SCORER", "llm")
    monkeypatch.setenv("CALLQA_LLM_MODEL", "openai/gpt-4o-mini")
    monkeypatch.setenv("CALLQA_LLM_API_BASE", fake_llm.api_base)
    monkeypatch.setenv("CALLQA_LLM_API_KEY", "k-test")
    scorer = resources_for(load_settings())["scorer"]
    assert scorer.scorer == "llm" and scorer.model == "openai/gpt-4o-mini"
    first = materialize_call(ALL_STAGES[:3], key, db_url, tmp_path, instance, scorer)
    assert first.success

    # Two invalid replies: the step fails, and both attempts are in the warehouse.
    fake_llm.replies = ["{not json", _llm_reply(preset, criteria=[])]
    failed = materialize_call(["scored_analysis"], key, db_url, tmp_path, instance, scorer)
    assert not failed.success
    attempts = wh.attempts("demo", "llm-1")
    assert len(attempts) == 2 and not any(a["valid"] for a in attempts)
    assert "not valid JSON" in attempts[0]["error"]
    assert wh.staged_call("demo", "llm-1")["status"] == "failed"
    assert wh.analysis("demo", "llm-1") is None

    # The provider recovers: re-materializing succeeds and the call is processed.
    lines = wh.transcript("demo", "llm-1", "diarized")["segments"]
    said = next(s for s in lines if s["speaker"] == "operator")
    quote = {"quote": said["text"], "start": said["start"], "speaker": "operator"}
    fake_llm.replies = [
        _llm_reply(
            preset,
            criteria=[
                {"id": c, "score": 3, "rationale": "ok", "evidence": [quote]}
                for c in preset.criterion_ids
            ],
        )
    ]
    ok = materialize_call(["scored_analysis"], key, db_url, tmp_path, instance, scorer)
    assert ok.success
    record = wh.analysis("demo", "llm-1")
    assert record["scoring"]["scorer"] == "llm" and record["scores"]["total"] == 50.0
    assert wh.staged_call("demo", "llm-1")["status"] == "processed"
    assert "k-test" not in json.dumps(record)
    assert fake_llm.headers[-1].get("Authorization") == "Bearer k-test"
    assert fake_llm.requests[-1]["model"] == "gpt-4o-mini"
    wh.dispose()


@pytest.mark.model
@pytest.mark.slow
def test_tenant_daily_aggregates(tmp_path, manifest):
    db_url = f"sqlite:///{tmp_path / 'wh.db'}"
    instance = dg.DagsterInstance.ephemeral()
    calls = manifest[:2]
    for call in calls:
        wh, key = stage(
            db_url,
            DEMO_CALLS / call["file"],
            call["external_id"],
            operator=call["operator"],
            category="sales",
            started_at=dg_time(call["started_at"]),
        )
        assert materialize_call(ALL_STAGES, key, db_url, tmp_path, instance).success
    result = dg.materialize(
        [tenant_daily_aggregates],
        partition_key="demo",
        instance=instance,
        resources=call_resources(db_url, tmp_path),
    )
    assert result.success
    assert checks_by_name(result)["aggregates_expectations"].passed
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    assert meta["calls"].value == 2
    rows = wh.daily_aggregates("demo")
    team = [r for r in rows if r["operator"] == "*"]
    assert sum(r["calls"] for r in team) == 2
    totals = [wh.analysis("demo", c["external_id"])["scores"]["total"] for c in calls]
    assert meta["mean_total"].value == pytest.approx(sum(totals) / 2, abs=0.01)
    criteria = wh.daily_criterion_aggregates("demo")
    assert {r["criterion"] for r in criteria} == {
        "greeting",
        "needs_discovery",
        "presentation",
        "objection_handling",
        "closing",
        "tone",
    }
    wh.dispose()


def test_aggregates_failing_expectations_are_not_published(tmp_path):
    """A corrupt stored analysis (total 150) fails the suite; analysts keep the old rows."""
    from datetime import date

    from tests.records import sample_record

    db_url = f"sqlite:///{tmp_path / 'wh.db'}"
    wh = Warehouse.from_url(db_url)
    wh.save_analysis(sample_record("demo", "ok-1"), date(2026, 11, 19))
    instance = dg.DagsterInstance.ephemeral()
    first = dg.materialize(
        [tenant_daily_aggregates],
        partition_key="demo",
        instance=instance,
        resources=call_resources(db_url, tmp_path),
    )
    assert checks_by_name(first)["aggregates_expectations"].passed
    published = wh.daily_aggregates("demo")

    corrupt = sample_record("demo", "bad-1")
    corrupt["scores"]["total"] = 150.0
    wh.save_analysis(corrupt, date(2026, 11, 19))
    second = dg.materialize(
        [tenant_daily_aggregates],
        partition_key="demo",
        instance=instance,
        resources=call_resources(db_url, tmp_path),
    )
    check = checks_by_name(second)["aggregates_expectations"]
    assert not check.passed
    assert "mean_total" in check.metadata["failures"].value
    meta = second.get_asset_materialization_events()[0].materialization.metadata
    assert meta["published"].value is False
    assert wh.daily_aggregates("demo") == published  # still one call, total unchanged
    wh.dispose()


def dg_time(value: str):
    from datetime import datetime

    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@pytest.fixture
def crm_tenant(tmp_path, monkeypatch):
    """A tenant whose calls come from HubSpot (its API is never called here: raw_audio only
    fetches recordings, through the tenant's adapter)."""
    from tests.tenants import use_tenants

    monkeypatch.setenv("ACME_HUBSPOT_TOKEN", "hubspot-token-never-sent-9876")
    use_tenants(
        tmp_path / "config",
        monkeypatch,
        {
            "id": "acme",
            "name": "Acme",
            "crm": {
                "adapter": "hubspot",
                "base_url": "https://api.hubapi.com",
                "token": {"env": "ACME_HUBSPOT_TOKEN"},
            },
        },
    )
    yield "acme"
    default_registry.cache_clear()


def test_raw_audio_fetches_a_crm_url(tmp_path, good_call, monkeypatch, crm_tenant):
    """A recording URL (as a CRM hands it over) is fetched by raw_audio through the tenant's
    adapter; loopback is allowed here only because the test says so, and the token never
    reaches metadata."""
    from tests.fakes import FakeRecordingServer

    # The CRM's file host, serving the real recording (the path's suffix is the format).
    server = FakeRecordingServer(audio=(DEMO_CALLS / good_call["file"]).read_bytes())
    url = server.url("/audio.wav?token=crm-secret")
    db_url = f"sqlite:///{tmp_path / 'wh.db'}"
    wh = Warehouse.from_url(db_url)
    wh.stage_call(tenant="acme", external_id="crm-1", source="crm", source_uri=url)
    instance = dg.DagsterInstance.ephemeral()
    try:
        refused = materialize_call(["raw_audio"], "acme__crm-1", db_url, tmp_path, instance)
        assert not refused.success
        assert "non-public address" in wh.staged_call("acme", "crm-1")["error"]
        assert "crm-secret" not in wh.staged_call("acme", "crm-1")["error"]

        monkeypatch.setenv("CALLQA_ALLOW_PRIVATE_URLS", "127.0.0.1")
        fetched = materialize_call(["raw_audio"], "acme__crm-1", db_url, tmp_path, instance)
        assert fetched.success
        meta = fetched.get_asset_materialization_events()[0].materialization.metadata
        assert meta["channels"].value == 2
        assert "crm-secret" not in str(meta)
        assert wh.call("acme", "crm-1")["sha256"] == meta["sha256"].value
        assert server.paths == ["/audio.wav?token=crm-secret"]  # fetched once, when allowed
        # The recording host is not the CRM's API host: the CRM token never went there.
        assert all("hubspot-token" not in str(h) for h in server.headers)
    finally:
        server.close()
        wh.dispose()


@pytest.mark.parametrize("where", ["file_uri", "bare_path"])
def test_a_crm_call_never_reads_local_files(tmp_path, monkeypatch, crm_tenant, where):
    """One tenant cannot stage another tenant's stored recording (or any local file) by
    giving a CRM call a file:// URL or a path: CRM calls are fetched over http(s) only."""
    victim = tmp_path / "audio" / "other-tenant" / "call.flac"
    victim.parent.mkdir(parents=True)
    victim.write_bytes((DEMO_CALLS / "call-001.flac").read_bytes())
    monkeypatch.setenv("CALLQA_ALLOW_PRIVATE_URLS", "127.0.0.1")
    db_url = f"sqlite:///{tmp_path / 'wh.db'}"
    wh = Warehouse.from_url(db_url)
    uri = victim.as_uri() if where == "file_uri" else str(victim)
    for source in ("crm", "webhook"):
        wh.stage_call(tenant="acme", external_id=f"steal-{source}", source=source, source_uri=uri)
        result = materialize_call(
            ["raw_audio"], f"acme__steal-{source}", db_url, tmp_path, dg.DagsterInstance.ephemeral()
        )
        assert not result.success
        row = wh.staged_call("acme", f"steal-{source}")
        assert row["status"] == "failed" and "raw_audio" in row["error"]
        assert wh.call("acme", f"steal-{source}") is None
    wh.dispose()
