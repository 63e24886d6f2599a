"""The demo command: bundled calls through Dagster jobs on a persistent local instance."""

import dagster as dg
import pytest

from callqa import settings
from callqa.demo.runner import run_demo
from callqa.storage.warehouse import Warehouse

pytestmark = [pytest.mark.model, pytest.mark.slow]


def test_demo_processes_every_call_and_is_safe_to_rerun(tmp_path, monkeypatch, manifest):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    lines: list[str] = []
    assert run_demo(out=lines.append) == 0
    output = "\n".join(lines)
    assert f"{len(manifest)} to process" in output
    for call in manifest:
        assert call["external_id"] in output
    assert "Tenant aggregate (demo)" in output and "Demo wall time" in output

    wh = Warehouse.from_url(settings.database_url())
    totals = {
        m["external_id"]: wh.analysis("demo", m["external_id"])["scores"]["total"] for m in manifest
    }
    good = [totals[m["external_id"]] for m in manifest if m["expected_quality"] == "good"]
    poor = [totals[m["external_id"]] for m in manifest if m["expected_quality"] == "poor"]
    assert min(good) > max(poor), totals
    team_rows = [r for r in wh.daily_aggregates("demo") if r["operator"] == "*"]
    assert sum(r["calls"] for r in team_rows) == len(manifest)

    # The runs went through the Dagster instance the UI reads.
    instance = dg.DagsterInstance.get()
    assert set(instance.get_dynamic_partitions("calls")) == {
        f"demo__{m['external_id']}" for m in manifest
    }
    runs = instance.get_runs(filters=dg.RunsFilter(job_name="process_call"))
    assert len(runs) == len(manifest)
    assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)

    # Re-running does nothing that is already done.
    again: list[str] = []
    assert run_demo(out=again.append) == 0
    assert "0 to process" in "\n".join(again)
    assert len(instance.get_runs(filters=dg.RunsFilter(job_name="process_call"))) == len(manifest)
    wh.dispose()
