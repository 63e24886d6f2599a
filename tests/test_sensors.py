"""Sensors evaluated against a real warehouse and a Dagster instance."""

import json

import dagster as dg

from callqa.crm.file_drop import StagedFile, stage_files
from callqa.resources import WarehouseResource
from callqa.sensors.staged_calls import (
    build_staged_calls_sensor,
    build_tenant_aggregates_sensor,
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
    assert [r.partition_key for r in result.run_requests] == [k.partition_key for k in keys]
    assert len({r.run_key for r in result.run_requests}) == 2
    [add] = result.dynamic_partitions_requests
    assert add.partitions_def_name == "calls"
    assert list(add.partition_keys) == [k.partition_key for k in keys]
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
