"""What the Dagster UI shows: descriptions, owners, tags and kinds; check results that belong
to their call's partition; per-call and aggregate metadata; failures that name the call;
the local instance without the sign-up pop-up; and `callqa backfill`, which selects calls
from the warehouse and submits one backfill for exactly their partitions.

No speech model: calls get a real (tiny) recording for raw_audio and a hand-made diarized
transcript for scored_analysis.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import pytest
import yaml

from callqa import cli
from callqa.assets import checks
from callqa.assets.aggregates import (
    AGGREGATES_EXPECTATIONS,
    COLUMN_DESCRIPTIONS,
    build_tenant_aggregates,
    preview_markdown,
)
from callqa.config.registry import default_registry
from callqa.crm.file_drop import StagedFile, stage_files
from callqa.instance import LOCAL_INSTANCE_YAML, ensure_dagster_home
from callqa.storage import tables as t
from callqa.storage.warehouse import Warehouse
from tests.audio_helpers import noise, silence, write_wav
from tests.builders import SHORT_SALES_CALL, diarized, timed
from tests.call_assets import (
    InventedQuoteScorerResource,
    call_resources,
    materialize_call,
)
from tests.paths import ROOT

CALL_GROUPS = {"calls", "aggregates"}
GOOD_CALL = SHORT_SALES_CALL


def _stage(wh: Warehouse, tmp_path: Path, external_id: str, **kw) -> str:
    """Stage a short stereo recording (noise on both channels: it decodes, nothing more)."""
    path = write_wav(tmp_path / f"{external_id}.wav", [noise(1.5), silence(0.5)])
    [key] = stage_files(wh, "demo", [StagedFile(path=path, external_id=external_id, **kw)])
    return key.partition_key


def _scored_call(wh, db_url, tmp_path, instance, external_id, scorer=None, **kw):
    """raw_audio for real, then a hand-made diarized transcript, then scored_analysis."""
    key = _stage(wh, tmp_path, external_id, **kw)
    assert materialize_call(["raw_audio"], key, db_url, tmp_path, instance).success
    transcript = diarized(timed(GOOD_CALL))
    wh.upsert_transcript(
        tenant="demo",
        external_id=external_id,
        stage="diarized",
        model="hand-made",
        language="en",
        word_count=100,
        data=transcript.model_dump(mode="json"),
    )
    return key, materialize_call(["scored_analysis"], key, db_url, tmp_path, instance, scorer)


def _meta(event) -> dict:
    return {k: getattr(v, "value", v) for k, v in event.metadata.items()}


# definitions ------------------------------------------------------------------------------


def test_every_asset_and_check_explains_itself():
    from callqa.definitions import defs as load_defs

    graph = load_defs().resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.description and len(node.description) > 40, key
        if node.group_name in CALL_GROUPS:
            assert node.owners == ["team:callqa"], key
            assert node.tags.get("domain"), key
            assert node.kinds, key
    for check_key in graph.asset_check_keys:
        spec = graph.get_check_spec(check_key)
        assert spec.description and len(spec.description) > 40, check_key
        asset_partitions = graph.get(check_key.asset_key).partitions_def
        # Partitioned like its asset, so every result belongs to a call (or a tenant).
        assert spec.partitions_def == asset_partitions, check_key
    # The per-call checks say why they block.
    for name in checks.DESCRIPTIONS:
        assert "lock" in checks.DESCRIPTIONS[name]  # "Blocking" / "blocking"


def test_aggregates_definition_carries_the_column_schemas():
    asset = build_tenant_aggregates(sorted(default_registry().tenants))
    metadata = asset.specs_by_key[asset.key].metadata
    assert metadata["dagster/table_name"] == "daily_aggregates"
    for entry, table in (
        ("dagster/column_schema", t.daily_aggregates),
        ("criterion_column_schema", t.daily_criterion_aggregates),
    ):
        schema = getattr(metadata[entry], "schema", metadata[entry])
        assert [c.name for c in schema.columns] == [c.name for c in table.columns]
        # A column added by a migration needs a description here too.
        assert all(c.description for c in schema.columns), [c.name for c in schema.columns]
    assert set(COLUMN_DESCRIPTIONS) >= {c.name for c in t.daily_aggregates.columns}


# partitioned checks -----------------------------------------------------------------------


def test_check_results_belong_to_the_call_partition(tmp_path):
    db_url = f"sqlite:///{tmp_path / 'wh.db'}"
    wh = Warehouse.from_url(db_url)
    instance = dg.DagsterInstance.ephemeral()
    keys = [_stage(wh, tmp_path, f"p-{i}", operator="anna") for i in (1, 2)]
    for key in keys:
        result = materialize_call(["raw_audio"], key, db_url, tmp_path, instance)
        assert result.success
        [evaluation] = result.get_asset_check_evaluations()
        assert evaluation.check_name == checks.RECORDING_DECODABLE
        assert evaluation.partition == key  # the evaluation event carries the call
        assert evaluation.passed and evaluation.description.startswith("1.5 s, 2 channel(s)")
    check_key = dg.AssetCheckKey(dg.AssetKey("raw_audio"), checks.RECORDING_DECODABLE)
    history = instance.event_log_storage.get_asset_check_execution_history(check_key, limit=10)
    assert sorted(r.partition for r in history) == keys
    # The check's status per partition, as the UI's partition view reads it.
    info = instance.event_log_storage.get_asset_check_partition_info([check_key])
    assert {i.partition_key: i.latest_execution_status.value for i in info} == {
        k: "SUCCEEDED" for k in keys
    }
    wh.dispose()


# per-call metadata ------------------------------------------------------------------------


def test_call_metadata_names_the_call_and_shows_the_evidence(tmp_path):
    db_url = f"sqlite:///{tmp_path / 'wh.db'}"
    wh = Warehouse.from_url(db_url)
    instance = dg.DagsterInstance.ephemeral()
    started = datetime(2026, 11, 19, 9, 30, tzinfo=UTC)
    key, result = _scored_call(
        wh, db_url, tmp_path, instance, "m-1", operator="anna", category="sales", started_at=started
    )
    assert result.success
    [mat] = result.get_asset_materialization_events()
    assert mat.partition == key
    meta = _meta(mat.materialization)
    assert meta["tenant"] == "demo" and meta["call_id"] == "m-1"
    assert meta["operator"] == "anna" and meta["category"] == "sales"
    assert meta["call_date"] == "2026-11-19"
    assert meta["started_at"] == started.timestamp()
    assert meta["duration_s"] == pytest.approx(1.5)
    evidence = meta["evidence"]
    assert "| criterion | score | quote | start |" in evidence
    record = wh.analysis("demo", "m-1")
    first = next(c for c in record["scores"]["criteria"] if c["evidence"])
    quote = first["evidence"][0]["quote"]
    assert f"| {first['name']} | {first['score']}/5 | “{quote}” |" in evidence
    assert meta["published"] is True
    wh.dispose()


def test_failed_check_fails_the_call_and_names_the_problem_on_its_partition(tmp_path):
    db_url = f"sqlite:///{tmp_path / 'wh.db'}"
    wh = Warehouse.from_url(db_url)
    instance = dg.DagsterInstance.ephemeral()
    key, result = _scored_call(
        wh,
        db_url,
        tmp_path,
        instance,
        "f-1",
        scorer=InventedQuoteScorerResource(quote="free lifetime upgrades"),
    )
    assert not result.success
    assert result.dagster_run.tags["dagster/partition"] == key
    # The check result belongs to the call and names the problem.
    evaluation = next(
        e
        for e in result.get_asset_check_evaluations()
        if e.check_name == checks.ANALYSIS_BUSINESS_RULES
    )
    assert not evaluation.passed and evaluation.partition == key
    assert "free lifetime upgrades" in evaluation.description
    assert "free lifetime upgrades" in evaluation.metadata["problem"].value
    # The step failure says which call, which stage and why, as text and as fields.
    [failure] = result.get_step_failure_events()
    data = failure.step_failure_data.user_failure_data
    assert data.description.startswith(f"call {key}: scored_analysis: check analysis_business")
    meta = {k: v.value for k, v in data.metadata.items()}
    assert meta["call"] == key and meta["tenant"] == "demo" and meta["stage"] == "scored_analysis"
    assert meta["failed_checks"] == checks.ANALYSIS_BUSINESS_RULES
    assert "free lifetime upgrades" in meta["error"]
    # The same failure is in the run's stored event log, and the call is failed with it.
    stored = [
        e
        for e in instance.all_logs(result.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
        if e.dagster_event.step_key == "process_calls"
    ]
    assert stored[0].dagster_event.step_failure_data.user_failure_data.metadata["call"].value == key
    assert wh.staged_call("demo", "f-1")["status"] == "failed"
    assert wh.analysis("demo", "f-1") is None
    wh.dispose()


def test_bad_recording_failure_carries_call_stage_and_error(tmp_path):
    db_url = f"sqlite:///{tmp_path / 'wh.db'}"
    wh = Warehouse.from_url(db_url)
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEgarbage" * 10)
    [call] = stage_files(wh, "demo", [StagedFile(path=bad, external_id="broken-2")])
    key = call.partition_key
    result = materialize_call(["raw_audio"], key, db_url, tmp_path, dg.DagsterInstance.ephemeral())
    assert not result.success and result.dagster_run.tags["dagster/partition"] == key
    [failure] = result.get_step_failure_events()
    data = failure.step_failure_data.user_failure_data
    meta = {k: v.value for k, v in data.metadata.items()}
    assert meta["call"] == key and meta["stage"] == "raw_audio"
    assert "not a readable audio file" in meta["error"] and meta["error"] in data.description
    assert wh.staged_call("demo", "broken-2")["error"] == f"raw_audio: {meta['error']}"
    wh.dispose()


# aggregates -------------------------------------------------------------------------------


def test_aggregates_report_row_counts_and_a_preview(tmp_path):
    from tests.records import sample_record

    db_url = f"sqlite:///{tmp_path / 'wh.db'}"
    wh = Warehouse.from_url(db_url)
    wh.save_analysis(sample_record("demo", "a-1"), date(2026, 11, 19))
    wh.save_analysis(sample_record("demo", "a-2", operator="bob"), date(2026, 11, 20))
    aggregates = build_tenant_aggregates(sorted(default_registry().tenants))
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [aggregates],
        partition_key="demo",
        instance=instance,
        resources=call_resources(db_url, tmp_path),
    )
    meta = _meta(result.get_asset_materialization_events()[0].materialization)
    rows = wh.daily_aggregates("demo")
    assert meta["dagster/row_count"] == len(rows) == 4  # 2 days x (team + operator)
    assert meta["criterion_row_count"] == len(wh.daily_criterion_aggregates("demo"))
    assert meta["preview"].startswith("| day | operator | calls | mean_total")
    assert "| 2026-11-19 | * | 1 |" in meta["preview"]
    [evaluation] = result.get_asset_check_evaluations()
    assert evaluation.check_name == AGGREGATES_EXPECTATIONS and evaluation.partition == "demo"
    wh.dispose()


def test_preview_shows_the_first_rows_only():
    rows = [{"day": date(2026, 1, d), "operator": "*", "calls": d} for d in range(1, 13)]
    rows = [{**r, "mean_total": 50.0, "min_total": 1, "max_total": 99, "audio_s": 1} for r in rows]
    text = preview_markdown(rows, limit=3)
    assert text.count("\n| 2026-01-") == 3 and "_first 3 of 12 rows_" in text
    assert preview_markdown([]) == "_no rows published yet_"


# the instance -----------------------------------------------------------------------------


def test_instances_open_the_ui_without_the_sign_up_box(tmp_path):
    assert yaml.safe_load(LOCAL_INSTANCE_YAML)["nux"] == {"enabled": False}
    assert yaml.safe_load((ROOT / "dagster.yaml").read_text())["nux"] == {"enabled": False}
    home = ensure_dagster_home(tmp_path / "home")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.nux_enabled is False


# backfill ---------------------------------------------------------------------------------


def _stage_for_backfill(wh: Warehouse, tmp_path: Path) -> None:
    calls = [
        ("b-1", "anna", datetime(2025, 11, 1, 9, tzinfo=UTC), "processed"),
        ("b-2", "anna", datetime(2025, 11, 15, 23, 59, tzinfo=UTC), "failed"),
        ("b-3", "bob", datetime(2025, 11, 15, 12, tzinfo=UTC), "processed"),
        ("b-4", "anna", datetime(2025, 11, 16, 0, 0, tzinfo=UTC), "processed"),
        ("b-5", "anna", None, "staged"),  # no start time: staged today
    ]
    for external_id, operator, started_at, status in calls:
        _stage(wh, tmp_path, external_id, operator=operator, started_at=started_at)
        wh.set_staged_status("demo", [external_id], status)
    other = write_wav(tmp_path / "x.wav", [noise(1)])
    wh.stage_call(tenant="acme", external_id="b-1", source="file", source_uri=str(other))


def test_backfill_selection_by_date_operator_and_status(warehouse, tmp_path):
    _stage_for_backfill(warehouse, tmp_path)

    def ids(**kw):
        return [r["external_id"] for r in warehouse.calls_for_backfill("demo", **kw)]

    assert ids() == ["b-1", "b-3", "b-2", "b-4", "b-5"]  # by call time; tenant acme not in
    # Both ends inclusive, whole days (UTC).
    assert ids(day_from=date(2025, 11, 15), day_to=date(2025, 11, 15)) == ["b-3", "b-2"]
    assert ids(day_to=date(2025, 11, 14)) == ["b-1"]
    assert ids(day_from=date(2025, 11, 16), day_to=date(2025, 11, 16)) == ["b-4"]
    assert ids(operators=["anna"], statuses=["processed"]) == ["b-1", "b-4"]
    assert ids(operators=["bob", "carl"]) == ["b-3"]
    # A call without a start time counts on the day it was staged.
    assert ids(day_from=datetime.now(UTC).date()) == ["b-5"]


def test_backfill_dry_run_lists_the_selected_calls(tmp_path, capsys, monkeypatch):
    db_url = f"sqlite:///{tmp_path / 'wh.db'}"
    monkeypatch.setenv("CALLQA_DATABASE_URL", db_url)
    wh = Warehouse.from_url(db_url)
    _stage_for_backfill(wh, tmp_path)
    argv = ["backfill", "--tenant", "demo", "--from", "2025-11-01", "--to", "2025-11-30"]
    assert cli.main([*argv, "--operator", "anna", "--dry-run"]) == 0
    out, err = capsys.readouterr()
    assert [line.split("\t")[0] for line in out.splitlines()] == [
        "demo__b-1",
        "demo__b-2",
        "demo__b-4",
    ]
    assert "3 call(s) would be backfilled" in err
    assert not (tmp_path / "data" / "dagster_home").exists()  # nothing submitted
    assert cli.main([*argv, "--assets", "scored_analysis,report"]) == 2
    assert "choose from raw_audio, transcript" in capsys.readouterr().err
    assert cli.main([*argv, "--to", "30.11.2025", "--dry-run"]) == 2
    wh.dispose()


@pytest.mark.slow
def test_backfill_submits_one_backfill_for_exactly_the_selected_calls(
    tmp_path, capsys, monkeypatch
):
    """Through launchPartitionBackfill on a temp-dir instance, without a daemon: one asset
    backfill, the selected partitions only, and a re-score selects scored_analysis alone."""
    db_url = f"sqlite:///{tmp_path / 'wh.db'}"
    home = tmp_path / "dagster_home"
    monkeypatch.setenv("CALLQA_DATABASE_URL", db_url)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    wh = Warehouse.from_url(db_url)
    _stage_for_backfill(wh, tmp_path)
    argv = ["backfill", "--tenant", "demo", "--status", "processed", "--from", "2025-11-10"]
    assert cli.main([*argv, "--assets", "scored_analysis"]) == 0
    out, err = capsys.readouterr()
    backfill_id = out.strip()
    assert f"submitted backfill {backfill_id}: 2 call(s)" in err
    with dg.DagsterInstance.from_config(str(home)) as instance:
        [backfill] = instance.get_backfills()
        assert backfill.backfill_id == backfill_id
        assert backfill.status.value == "REQUESTED"  # for the daemon to run
        assert backfill.asset_selection == [dg.AssetKey("scored_analysis")]
        targets = backfill.asset_backfill_data.target_subset.iterate_asset_partitions()
        assert sorted((k.asset_key.to_user_string(), k.partition_key) for k in targets) == [
            ("scored_analysis", "demo__b-3"),
            ("scored_analysis", "demo__b-4"),
        ]
        assert backfill.tags["callqa/tenant"] == "demo"
        # Calls that had no partition yet (the sensor never saw them) got one.
        assert {"demo__b-3", "demo__b-4"} <= set(instance.get_dynamic_partitions("calls"))
        assert not instance.get_runs()  # submitted, not run: that is the daemon's job
    wh.dispose()


def test_backfill_with_no_matching_calls_submits_nothing(tmp_path, capsys, monkeypatch):
    db_url = f"sqlite:///{tmp_path / 'wh.db'}"
    monkeypatch.setenv("CALLQA_DATABASE_URL", db_url)
    Warehouse.from_url(db_url).dispose()
    assert cli.main(["backfill", "--tenant", "demo", "--operator", "nobody"]) == 0
    assert "no calls match" in capsys.readouterr().err
