"""The staging gate: a tenant without auto_process keeps its calls until an admin decides,
with `callqa stage list|approve|reject`, and staged_calls_sensor runs what was approved."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg
import pytest

from callqa.cli import main
from callqa.config.registry import default_registry
from callqa.resources import WarehouseResource
from callqa.sensors.staged_calls import build_staged_calls_sensor
from callqa.storage.warehouse import Warehouse
from tests.tenants import use_tenants

CALLS = [
    # external id, operator, category, day, duration
    ("a-1", "anna", "sales", 18, 300),
    ("a-2", "anna", "support", 19, 40),
    ("b-1", "boris", "sales", 19, 620),
    ("b-2", "boris", "sales", 20, 15),
    ("a-3", "anna", "sales", 21, 200),
]


@pytest.fixture
def gated(tmp_path, monkeypatch, db_url):
    use_tenants(
        tmp_path / "config",
        monkeypatch,
        {"id": "gated", "name": "Gated", "auto_process": False},
    )
    monkeypatch.setenv("CALLQA_DATABASE_URL", db_url)
    wh = Warehouse.from_url(db_url)
    wh.stage_calls(
        "gated",
        "webhook",
        [
            {
                "external_id": cid,
                "source_uri": f"https://rec.example.com/{cid}.mp3",
                "operator": op,
                "category": cat,
                "started_at": datetime(2026, 11, day, 9, 30, tzinfo=UTC),
                "duration_s": dur,
            }
            for cid, op, cat, day, dur in CALLS
        ],
    )
    yield wh
    wh.dispose()
    default_registry.cache_clear()


def _tick(wh: Warehouse, instance, cursor=None):
    sensor = build_staged_calls_sensor()
    resources = {
        "warehouse": WarehouseResource(
            database_url=str(wh.engine.url.render_as_string(hide_password=False))
        )
    }
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources) as context:
        return sensor(context)


def _listed(capsys) -> list[str]:
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("partition_key\tstatus")
    return [line.split("\t")[0] for line in out[1:]]


def test_gate_keeps_calls_visible_until_approved(gated, capsys):
    instance = dg.DagsterInstance.ephemeral()
    first = _tick(gated, instance)
    # Visible as partitions (the UI can select and materialize them) but no run yet.
    assert not first.run_requests
    assert "5 call(s) wait at the staging gate" in first.skip_reason.skip_message
    assert sorted(instance.get_dynamic_partitions("calls")) == sorted(
        f"gated__{c[0]}" for c in CALLS
    )

    assert main(["stage", "list", "--tenant", "gated"]) == 0
    assert _listed(capsys) == [f"gated__{c}" for c in ("a-1", "a-2", "b-1", "b-2", "a-3")]
    assert (
        main(["stage", "list", "--tenant", "gated", "--operator", "anna", "--category", "sales"])
        == 0
    )
    assert _listed(capsys) == ["gated__a-1", "gated__a-3"]
    assert (
        main(["stage", "list", "--tenant", "gated", "--from", "2026-11-19", "--to", "2026-11-20"])
        == 0
    )
    assert _listed(capsys) == ["gated__a-2", "gated__b-1", "gated__b-2"]
    assert (
        main(
            ["stage", "list", "--tenant", "gated", "--min-duration", "30", "--max-duration", "400"]
        )
        == 0
    )
    assert _listed(capsys) == ["gated__a-1", "gated__a-2", "gated__a-3"]

    # Approve by filter (sales calls of at least a minute), reject one by id.
    assert (
        main(
            [
                "stage",
                "approve",
                "--tenant",
                "gated",
                "--matching",
                "--category",
                "sales",
                "--min-duration",
                "60",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.split() == ["gated__a-1", "gated__b-1", "gated__a-3"]
    assert main(["stage", "reject", "--tenant", "gated", "gated__b-2"]) == 0
    assert capsys.readouterr().out.split() == ["gated__b-2"]

    second = _tick(gated, instance, first.cursor)
    launched = set()
    for request in second.run_requests:
        tags = request.tags
        if request.partition_key:
            launched.add(request.partition_key)
        else:
            launched |= {
                tags["dagster/asset_partition_range_start"],
                tags["dagster/asset_partition_range_end"],
            }
    assert launched == {"gated__a-1", "gated__b-1", "gated__a-3"}
    statuses = {r["external_id"]: r["status"] for r in gated.staged_calls("gated")}
    # Handed to runs: queued (the gate no longer lists or approves them).
    assert statuses == {
        "a-1": "queued",
        "b-1": "queued",
        "a-3": "queued",
        "a-2": "staged",
        "b-2": "rejected",
    }
    # The next tick does not launch them again.
    third = _tick(gated, instance, second.cursor)
    assert not third.run_requests


def test_gate_refuses_unknown_ids_and_unfiltered_mass_approval(gated, capsys):
    assert main(["stage", "approve", "--tenant", "gated", "nope"]) == 2
    assert "not waiting at the staging gate" in capsys.readouterr().err
    assert main(["stage", "approve", "--tenant", "gated", "--matching"]) == 2
    assert "--matching --all" in capsys.readouterr().err
    assert main(["stage", "approve", "--tenant", "gated", "--matching", "--all"]) == 0
    assert len(capsys.readouterr().out.split()) == len(CALLS)
