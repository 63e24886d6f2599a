"""Partition retention: the `retire_call_partitions` job on a real Dagster instance and a real
warehouse (SQLite and PostgreSQL) deletes exactly the partitions of old, scored calls."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
import yaml

from callqa.config.registry import default_registry
from callqa.resources import WarehouseResource
from callqa.retention import (
    build_retention_defs,
    retire_call_partitions,
    retire_call_partitions_schedule,
)
from callqa.storage.warehouse import Warehouse
from tests.records import sample_record

NOW = datetime.now(UTC)
OP = "retire_old_call_partitions"


@pytest.fixture
def tenants(tmp_path, monkeypatch):
    """Two tenants besides the bundled demo: `acme` keeps partitions 30 days, `longkeep` 400."""
    for tenant_id, days in [("acme", 30), ("longkeep", 400)]:
        path = tmp_path / "config" / "tenants" / f"{tenant_id}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            yaml.safe_dump({"id": tenant_id, "name": tenant_id, "retention_days": days})
        )
    monkeypatch.setenv("CALLQA_CONFIG_DIR", str(tmp_path / "config"))
    default_registry.cache_clear()
    yield default_registry()
    default_registry.cache_clear()


def _add_call(wh: Warehouse, tenant: str, external_id: str, age_days: int, analysed: bool) -> str:
    started = NOW - timedelta(days=age_days)
    wh.stage_call(
        tenant=tenant,
        external_id=external_id,
        source="file",
        source_uri=f"/calls/{external_id}.wav",
        started_at=started,
    )
    wh.upsert_call(
        tenant=tenant,
        external_id=external_id,
        partition_key=f"{tenant}__{external_id}",
        audio_uri=f"file:///a/{external_id}.wav",
        sha256="a" * 64,
        size_bytes=1000,
        codec="pcm_s16le",
        container="wav",
        channels=2,
        sample_rate=8000,
        duration_s=10.0,
        started_at=started,
    )
    if analysed:
        # The day scored_analysis stores: the call's start (or raw_audio's time without one).
        wh.save_analysis(sample_record(tenant, external_id), started.date())
    return f"{tenant}__{external_id}"


def _retire(instance, db_url: str, **config) -> dict:
    result = retire_call_partitions.execute_in_process(
        instance=instance,
        resources={"warehouse": WarehouseResource(database_url=db_url)},
        run_config={"ops": {OP: {"config": config}}} if config else None,
    )
    assert result.success
    return result.output_for_node(OP)


def _running(instance, **tags: str) -> dg.DagsterRun:
    """A run in progress with these tags (what a worker running calls looks like)."""
    run = dg.DagsterRun(
        job_name="process_call",
        run_id=str(uuid.uuid4()),
        status=dg.DagsterRunStatus.STARTED,
        tags=tags,
    )
    return instance.add_run(run)


def test_retires_exactly_the_old_scored_calls_and_is_idempotent(tenants, db_url):
    wh = Warehouse.from_url(db_url)
    retired = {
        _add_call(wh, "acme", "old-scored", 100, analysed=True),
        _add_call(wh, "acme", "edge-scored", 31, analysed=True),
    }
    kept = {
        _add_call(wh, "acme", "old-unscored", 100, analysed=False),  # results not stored yet
        _add_call(wh, "acme", "recent-scored", 5, analysed=True),
        _add_call(wh, "acme", "day-29", 29, analysed=True),
        _add_call(wh, "longkeep", "old-scored", 100, analysed=True),  # keeps 400 days
        _add_call(wh, "demo", "recent", 1, analysed=True),
        "gone__c1",  # a tenant no longer configured: left alone
    }
    # Old and scored, but unfinished runs still target them: one by key, two by a range.
    busy = [_add_call(wh, "acme", f"old-rescoring-{i}", 200, analysed=True) for i in range(4)]
    _add_call(wh, "acme", "never-a-partition", 300, analysed=True)  # e.g. retired earlier
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("calls", sorted(retired | kept))
        instance.add_dynamic_partitions("calls", busy)  # the order a range follows
        runs = [
            _running(instance, **{"dagster/partition": busy[0]}),
            _running(
                instance,
                **{
                    "dagster/asset_partition_range_start": busy[1],
                    "dagster/asset_partition_range_end": busy[2],
                },
            ),
        ]
        busy_kept = set(busy[:3])

        first = _retire(instance, db_url)
        assert set(instance.get_dynamic_partitions("calls")) == kept | busy_kept
        assert first["acme"]["retired"] == 3 and first["acme"]["skipped_busy"] == 3
        assert first["longkeep"]["retired"] == first["demo"]["retired"] == 0

        second = _retire(instance, db_url)  # idempotent: nothing more to do
        assert set(instance.get_dynamic_partitions("calls")) == kept | busy_kept
        assert sum(c["retired"] for c in second.values()) == 0

        for run in runs:  # once the runs have finished, their calls go too
            instance.report_run_canceled(run)
        _retire(instance, db_url)
        assert set(instance.get_dynamic_partitions("calls")) == kept

    # The warehouse keeps every row: only Dagster partitions were deleted.
    assert wh.analysis("acme", "old-scored") is not None
    assert wh.call("acme", "old-scored") is not None
    wh.dispose()


def test_max_deletions_bounds_a_run_and_dry_run_deletes_nothing(tenants, tmp_path):
    db_url = f"sqlite:///{tmp_path / 'wh.db'}"
    wh = Warehouse.from_url(db_url)
    keys = {_add_call(wh, "acme", f"c{i}", 60 + i, analysed=True) for i in range(5)}
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("calls", sorted(keys))

        dry = _retire(instance, db_url, dry_run=True)
        assert dry["acme"]["retired"] == 5
        assert set(instance.get_dynamic_partitions("calls")) == keys

        assert _retire(instance, db_url, max_deletions=3)["acme"]["retired"] == 3
        assert len(instance.get_dynamic_partitions("calls")) == 2
        assert _retire(instance, db_url, max_deletions=3)["acme"]["retired"] == 2
        assert instance.get_dynamic_partitions("calls") == []
    wh.dispose()


def test_run_metadata_counts_per_tenant(tenants, tmp_path):
    db_url = f"sqlite:///{tmp_path / 'wh.db'}"
    wh = Warehouse.from_url(db_url)
    keys = [
        _add_call(wh, "acme", "old", 90, analysed=True),
        _add_call(wh, "acme", "new", 1, analysed=True),
    ]
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("calls", keys)
        result = retire_call_partitions.execute_in_process(
            instance=instance, resources={"warehouse": WarehouseResource(database_url=db_url)}
        )
        [output] = [
            e for e in result.all_node_events if e.event_type == dg.DagsterEventType.STEP_OUTPUT
        ]
        metadata = {k: v.value for k, v in output.step_output_data.metadata.items()}
    assert metadata["retired"] == 1
    assert metadata["partitions_before"] == 2 and metadata["partitions_after"] == 1
    assert metadata["acme/retired"] == 1 and metadata["acme/kept"] == 1
    assert metadata["demo/retired"] == 0
    wh.dispose()


def test_retention_defs_and_warehouse_pages(tenants, tmp_path):
    jobs, schedules = build_retention_defs()
    assert [j.name for j in jobs] == ["retire_call_partitions"]
    assert schedules == [retire_call_partitions_schedule]
    assert retire_call_partitions_schedule.job_name == "retire_call_partitions"
    assert tenants.tenant("demo").retention_days == 90  # the default

    wh = Warehouse.from_url(f"sqlite:///{tmp_path / 'wh.db'}")
    for i in range(7):
        _add_call(wh, "acme", f"c{i}", 40, analysed=True)
    before = NOW.date() - timedelta(days=30)
    pages, after = [], None
    while page := wh.retirable_partition_keys("acme", before, after=after, limit=3):
        pages.append(page)
        after = page[-1].split("__", 1)[1]
    assert [len(p) for p in pages] == [3, 3, 1]
    assert sum(pages, []) == [f"acme__c{i}" for i in range(7)]
    assert wh.retirable_partition_keys("acme", before, among=["c1", "c9"]) == ["acme__c1"]
    assert wh.retirable_partition_keys("longkeep", before) == []
    wh.dispose()


def test_nothing_is_retired_while_a_backfill_is_in_progress(tenants, tmp_path):
    from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill

    db_url = f"sqlite:///{tmp_path / 'wh.db'}"
    wh = Warehouse.from_url(db_url)
    key = _add_call(wh, "acme", "old", 90, analysed=True)
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("calls", [key])
        backfill = PartitionBackfill(
            backfill_id="bf1",
            status=BulkActionStatus.REQUESTED,
            from_failure=False,
            tags={},
            backfill_timestamp=NOW.timestamp(),
            partition_names=[key],
        )
        instance.add_backfill(backfill)
        assert _retire(instance, db_url)["acme"]["retired"] == 0
        assert instance.get_dynamic_partitions("calls") == [key]

        instance.update_backfill(backfill.with_status(BulkActionStatus.COMPLETED_SUCCESS))
        assert _retire(instance, db_url)["acme"]["retired"] == 1
        assert instance.get_dynamic_partitions("calls") == []
    wh.dispose()
