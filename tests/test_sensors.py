"""Sensors evaluated against a real warehouse and a Dagster instance."""

import json

import dagster as dg

from callqa.crm.file_drop import StagedFile, stage_files
from callqa.resources import WarehouseResource
from callqa.sensors.staged_calls import (
    batch_size,
    build_staged_calls_sensor,
    build_tenant_aggregates_sensor,
    contiguous_batches,
)
from callqa.storage.warehouse import Warehouse
from tests.paths import DEMO_CALLS

staged_calls_sensor = build_staged_calls_sensor()
tenant_aggregates_sensor = build_tenant_aggregates_sensor()


def test_staged_calls_become_partitions_and_runs(tmp_path, manifest):
    db_url = f"sqlite:///{tmp_path / 'wh.db'}"
    wh = Warehouse.from_url(db_url)
    files = [
        StagedFile(path=DEMO_CALLS / m["file"], external_id=m["external_id"]) for m in manifest[:2]
    ]
    keys = stage_files(wh, "demo", files)
    instance = dg.DagsterInstance.ephemeral()
    resources = {"warehouse": WarehouseResource(database_url=db_url)}

    with dg.build_sensor_context(instance=instance, resources=resources) as context:
        result = staged_calls_sensor(context)
    # Two calls, two slots (the default): one run each, so both slots have work.
    assert [r.partition_key for r in result.run_requests] == [k.partition_key for k in keys]
    assert len({r.run_key for r in result.run_requests}) == 2
    assert instance.get_dynamic_partitions("calls") == [k.partition_key for k in keys]
    cursor = result.cursor
    assert cursor

    # Next tick: nothing new until another call is staged.
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources) as context:
        idle = staged_calls_sensor(context)
    assert not idle.run_requests and idle.skip_reason

    stage_files(
        wh,
        "demo",
        [StagedFile(path=DEMO_CALLS / manifest[2]["file"], external_id=manifest[2]["external_id"])],
    )
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources) as context:
        later = staged_calls_sensor(context)
    assert [r.partition_key for r in later.run_requests] == [f"demo__{manifest[2]['external_id']}"]
    wh.dispose()


def test_sensor_ignores_unknown_tenants(tmp_path, manifest):
    db_url = f"sqlite:///{tmp_path / 'wh.db'}"
    wh = Warehouse.from_url(db_url)
    stage_files(wh, "not-configured", [StagedFile(path=DEMO_CALLS / manifest[0]["file"])])
    resources = {"warehouse": WarehouseResource(database_url=db_url)}
    with dg.build_sensor_context(
        instance=dg.DagsterInstance.ephemeral(), resources=resources
    ) as context:
        result = staged_calls_sensor(context)
    assert not result.run_requests
    wh.dispose()


def test_aggregates_sensor_requests_changed_tenants_once(tmp_path):
    from datetime import date

    from tests.records import sample_record

    db_url = f"sqlite:///{tmp_path / 'wh.db'}"
    wh = Warehouse.from_url(db_url)
    resources = {"warehouse": WarehouseResource(database_url=db_url)}
    instance = dg.DagsterInstance.ephemeral()
    with dg.build_sensor_context(instance=instance, resources=resources) as context:
        assert not tenant_aggregates_sensor(context).run_requests

    wh.save_analysis(sample_record("demo", "c1"), date(2026, 11, 20))
    with dg.build_sensor_context(instance=instance, resources=resources) as context:
        first = tenant_aggregates_sensor(context)
    assert [r.partition_key for r in first.run_requests] == ["demo"]
    assert "demo" in json.loads(first.cursor)
    with dg.build_sensor_context(
        instance=instance, cursor=first.cursor, resources=resources
    ) as context:
        assert not tenant_aggregates_sensor(context).run_requests
    wh.dispose()


def test_failed_call_is_retried_through_the_sensor(db_url, manifest, capsys, monkeypatch):
    """A failed call is visible with its error and `callqa retry` hands it to the sensor again."""
    from callqa.cli import main

    monkeypatch.setenv("CALLQA_DATABASE_URL", db_url)
    wh = Warehouse.from_url(db_url)
    [key] = stage_files(
        wh, "demo", [StagedFile(path=DEMO_CALLS / manifest[0]["file"], external_id="r-1")]
    )
    instance = dg.DagsterInstance.ephemeral()
    resources = {"warehouse": WarehouseResource(database_url=db_url)}
    with dg.build_sensor_context(instance=instance, resources=resources) as context:
        first = staged_calls_sensor(context)
    assert [r.partition_key for r in first.run_requests] == [key.partition_key]
    wh.set_staged_status("demo", ["r-1"], "failed", "transcript: check transcript_covers_speech")

    with dg.build_sensor_context(
        instance=instance, cursor=first.cursor, resources=resources
    ) as context:
        assert not staged_calls_sensor(context).run_requests

    assert main(["retry", "--tenant", "demo", "--list"]) == 0
    assert "demo__r-1\ttranscript: check transcript_covers_speech" in capsys.readouterr().out
    assert main(["retry", "--tenant", "demo", "nope"]) == 2
    assert main(["retry", "--tenant", "demo"]) == 0
    staged = wh.staged_call("demo", "r-1")
    assert staged["status"] == "staged" and staged["error"] is None
    with dg.build_sensor_context(
        instance=instance, cursor=first.cursor, resources=resources
    ) as context:
        again = staged_calls_sensor(context)
    [request] = again.run_requests
    assert request.partition_key == key.partition_key
    assert request.run_key != first.run_requests[0].run_key  # a new run, not deduplicated
    wh.dispose()


RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


def _ranges(result) -> list[tuple[str, str]]:
    out = []
    for r in result.run_requests:
        if r.partition_key:
            out.append((r.partition_key, r.partition_key))
        else:
            out.append((r.tags[RANGE_START], r.tags[RANGE_END]))
    return out


def test_batch_size_fills_slots_and_caps_runs():
    assert batch_size(16, calls_per_run=8, call_slots=2) == 8
    assert batch_size(3, calls_per_run=8, call_slots=2) == 2
    assert batch_size(1, calls_per_run=8, call_slots=4) == 1
    assert batch_size(200, calls_per_run=8, call_slots=2) == 8


def test_contiguous_batches_never_span_a_key_that_is_not_due():
    order = {k: i for i, k in enumerate(["a1", "a2", "a3", "b1", "a4", "a5", "a6"])}
    tenant = {k: k[0] for k in order}
    # a3 is not due: a range a2..a4 would process it too, so the batches break around it;
    # b1 belongs to another tenant and gets a run of its own.
    due = ["a5", "a1", "a2", "b1", "a4", "a6"]
    assert contiguous_batches(due, order, tenant, size=2) == [
        ["a1", "a2"],
        ["b1"],
        ["a4", "a5"],
        ["a6"],
    ]


def test_sensor_groups_new_calls_into_partition_range_runs(tmp_path, manifest):
    """Sixteen new calls, two slots: two runs of eight adjacent partitions each; a call
    re-staged later is a run of its own where its partition already sits."""
    db_url = f"sqlite:///{tmp_path / 'wh.db'}"
    wh = Warehouse.from_url(db_url)
    files = [
        StagedFile(path=DEMO_CALLS / manifest[i % len(manifest)]["file"], external_id=f"b-{i:02}")
        for i in range(16)
    ]
    keys = [k.partition_key for k in stage_files(wh, "demo", files)]
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("calls", ["demo__older"])  # added before: not due
    resources = {"warehouse": WarehouseResource(database_url=db_url)}
    sensor = build_staged_calls_sensor(calls_per_run=8, call_slots=2)
    with dg.build_sensor_context(instance=instance, resources=resources) as context:
        result = sensor(context)
    assert _ranges(result) == [(keys[0], keys[7]), (keys[8], keys[15])]
    for request in result.run_requests:
        assert request.tags["callqa/tenant"] == "demo" and request.tags["callqa/calls"] == "8"
    assert instance.get_dynamic_partitions("calls") == ["demo__older", *keys]

    wh.set_staged_status("demo", ["b-03"], "failed", "transcript: provider timeout")
    assert wh.retry_failed("demo") == ["b-03"]
    with dg.build_sensor_context(
        instance=instance, cursor=result.cursor, resources=resources
    ) as context:
        again = sensor(context)
    assert _ranges(again) == [(keys[3], keys[3])]
    wh.dispose()
