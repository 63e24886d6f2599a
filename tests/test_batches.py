"""Several calls in one run: each is reported on its own partition, a bad call fails alone,
and an automatic retry of an interrupted run skips the calls already finished."""

import dagster as dg
import pytest
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from callqa.crm.file_drop import StagedFile, stage_files
from callqa.storage.warehouse import Warehouse
from tests.call_assets import CALL_ASSETS, call_resources
from tests.paths import DEMO_CALLS

SCORED = dg.AssetKey("scored_analysis")


def _range_tags(first: str, last: str) -> dict:
    return {ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last}


def _stage_batch(wh: Warehouse, tmp_path, good_call) -> list[str]:
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot audio at all" * 20)
    files = [
        StagedFile(path=DEMO_CALLS / good_call["file"], external_id="batch-1"),
        StagedFile(path=corrupt, external_id="batch-2"),
        StagedFile(path=DEMO_CALLS / good_call["file"], external_id="batch-3"),
    ]
    return [k.partition_key for k in stage_files(wh, "demo", files)]


@pytest.mark.model
def test_one_bad_call_fails_alone_in_its_batch(tmp_path, good_call):
    db_url = f"sqlite:///{tmp_path / 'wh.db'}"
    wh = Warehouse.from_url(db_url)
    keys = _stage_batch(wh, tmp_path, good_call)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("calls", keys)

    result = dg.materialize(
        [CALL_ASSETS],
        instance=instance,
        tags=_range_tags(keys[0], keys[-1]),
        resources=call_resources(db_url, tmp_path),
        raise_on_error=False,
    )
    # One run, one step, three calls: the corrupt one fails, the others are done.
    assert not result.success
    good, bad = [keys[0], keys[2]], keys[1]
    assert instance.get_materialized_partitions(SCORED) == set(good)
    assert instance.get_materialized_partitions(dg.AssetKey("raw_audio")) == set(good)
    assert [wh.staged_call("demo", k.split("__")[1])["status"] for k in keys] == [
        "processed",
        "failed",
        "processed",
    ]
    assert "raw_audio" in wh.staged_call("demo", "batch-2")["error"]
    # Every check result belongs to its call; the bad call's decode check is not among them
    # (it never decoded), and each good call has all five.
    evaluations = result.get_asset_check_evaluations()
    assert {e.partition for e in evaluations} == set(good)
    assert all(e.passed for e in evaluations) and len(evaluations) == 10
    # Each call's materialization carries that call's own metadata.
    for event in result.get_asset_materialization_events():
        mat = event.materialization
        assert mat.metadata["call_id"].value == mat.partition.split("__")[1]
    # The step failure names the bad call (and only it); the UI shows its partition failed:
    # planned by a failed run, never materialized.
    [failure] = result.get_step_failure_events()
    data = failure.step_failure_data.user_failure_data
    assert data.description.startswith("1 of 3 calls failed: call demo__batch-2: raw_audio:")
    assert data.metadata["failed_calls"].value == bad
    unmaterialized = instance.event_log_storage.get_latest_asset_partition_materialization_attempts_without_materializations(  # noqa: E501
        SCORED
    )
    assert set(unmaterialized) == {bad}
    wh.dispose()


@pytest.mark.model
def test_automatic_retry_skips_calls_the_interrupted_attempt_finished(tmp_path, good_call):
    """The first attempt finished batch-1 and died; its automatic retry (the tags Dagster's
    run_retries put on it) does batch-3 and the failed batch-2 only, so batch-1 is scored
    once."""
    db_url = f"sqlite:///{tmp_path / 'wh.db'}"
    wh = Warehouse.from_url(db_url)
    keys = _stage_batch(wh, tmp_path, good_call)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("calls", keys)
    resources = call_resources(db_url, tmp_path)
    first = dg.materialize(
        [CALL_ASSETS], instance=instance, partition_key=keys[0], resources=resources
    )
    retry = dg.materialize(
        [CALL_ASSETS],
        instance=instance,
        tags={
            **_range_tags(keys[0], keys[-1]),
            "dagster/retry_number": "1",
            "dagster/parent_run_id": first.run_id,
            "dagster/root_run_id": first.run_id,
        },
        resources=resources,
        raise_on_error=False,
    )
    scored_in_retry = {
        e.materialization.partition
        for e in retry.get_asset_materialization_events()
        if e.materialization.asset_key == SCORED
    }
    assert scored_in_retry == {keys[2]}
    assert len(wh.attempts("demo", "batch-1")) == 1

    # A run a user launches does every call it names, finished or not.
    again = dg.materialize(
        [CALL_ASSETS],
        selection=["scored_analysis"],
        instance=instance,
        tags=_range_tags(keys[0], keys[0]),
        resources=resources,
    )
    assert {e.materialization.partition for e in again.get_asset_materialization_events()} == {
        keys[0]
    }
    wh.dispose()
