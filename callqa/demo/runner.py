"""`callqa demo`: the bundled sample calls through Dagster, the way production runs them.

Calls are staged in the warehouse (file intake); the production `staged_calls_sensor`
is evaluated against a local Dagster instance and its partition requests and run
requests are carried out: each call is materialized by the `process_call` job, then the
tenant's aggregates are rebuilt by the `tenant_aggregates` job. The Dagster UI started with the
same DAGSTER_HOME shows every run, materialization and check.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime
from pathlib import Path

from callqa import settings

TENANT = "demo"
CALLS_DIR = Path(__file__).parent / "calls"
MANIFEST = CALLS_DIR / "manifest.json"


def load_manifest() -> list[dict]:
    return json.loads(MANIFEST.read_text())


def _instance():
    import dagster as dg

    from callqa.instance import ensure_dagster_home

    # The local instance (SQLite storage in DAGSTER_HOME), as `./dev ui` opens it.
    os.environ["DAGSTER_HOME"] = str(ensure_dagster_home())
    return dg.DagsterInstance.get()


def _evaluate_sensor(instance):
    import dagster as dg

    from callqa.resources import WarehouseResource
    from callqa.sensors.staged_calls import build_staged_calls_sensor

    # No cursor: every call still in status 'staged' is due, as on a sensor's first tick.
    with dg.build_sensor_context(
        instance=instance, resources={"warehouse": WarehouseResource()}
    ) as context:
        return build_staged_calls_sensor()(context)


def run_demo(force: bool = False, out=print) -> int:
    from callqa.config.registry import default_registry
    from callqa.crm.file_drop import StagedFile, stage_files
    from callqa.definitions import defs as load_defs
    from callqa.storage.warehouse import Warehouse

    started = time.perf_counter()
    defs = load_defs()
    tenant = default_registry().tenant(TENANT)
    warehouse = Warehouse.from_url(settings.database_url())
    warehouse.upsert_tenant(tenant.id, tenant.name, tenant.model_dump(mode="json"))
    manifest = load_manifest()
    keys = stage_files(
        warehouse,
        TENANT,
        [
            StagedFile(
                path=CALLS_DIR / m["file"],
                external_id=m["external_id"],
                operator=m.get("operator"),
                category=m.get("category"),
                started_at=datetime.fromisoformat(m["started_at"].replace("Z", "+00:00")),
            )
            for m in manifest
        ],
    )
    # Failed calls are retried on every demo run; --force redoes processed ones as well.
    status = {r["external_id"]: r["status"] for r in warehouse.staged_calls(TENANT)}
    retry = [k.external_id for k in keys if force or status.get(k.external_id) == "failed"]
    warehouse.set_staged_status(TENANT, retry, "staged")

    # The production sensor decides what to run: partitions to add and one run per call.
    instance = _instance()
    tick = _evaluate_sensor(instance)
    for request in tick.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    runs = [r for r in tick.run_requests or [] if r.tags.get("callqa/tenant") == TENANT]
    out(
        f"callqa demo: {len(keys)} bundled calls, {len(runs)} to process "
        f"({len(keys) - len(runs)} already done{'' if force else '; --force redoes them'})"
    )
    job = defs.resolve_job_def("process_call")
    # The per-step event log is in the Dagster UI; the console shows warnings and up.
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    failures = 0
    for request in runs:
        t0 = time.perf_counter()
        result = job.execute_in_process(
            instance=instance,
            partition_key=request.partition_key,
            raise_on_error=False,
            tags={**request.tags, "callqa/source": "demo"},
            run_config=quiet,
        )
        failures += not result.success
        out(
            f"  {'ok  ' if result.success else 'FAIL'} {request.partition_key:<22} "
            f"run {result.run_id[:8]}  {time.perf_counter() - t0:5.1f} s"
        )
    if runs:
        defs.resolve_job_def("tenant_aggregates").execute_in_process(
            instance=instance,
            partition_key=TENANT,
            tags={"callqa/source": "demo"},
            run_config=quiet,
        )

    _print_results(warehouse, manifest, out)
    out(f"\nWarehouse: {settings.redact_url(settings.database_url())}")
    out(f"Audio store: {settings.audio_store_root()}")
    out(f"Dagster instance: {settings.dagster_home()}  (open it with `./dev ui`)")
    out(f"Demo wall time: {time.perf_counter() - started:.1f} s")
    warehouse.dispose()
    return 1 if failures else 0


def _print_results(warehouse, manifest: list[dict], out) -> None:
    from callqa.calls.record import weakest_index

    out(f"\n{'call':<10} {'operator':<8} {'duration':>8} {'total':>6}  weakest criterion")
    for m in manifest:
        record = warehouse.analysis(TENANT, m["external_id"])
        staged = warehouse.staged_call(TENANT, m["external_id"])
        if record is None:
            error = (staged or {}).get("error") or "not processed"
            out(f"{m['external_id']:<10} {m.get('operator') or '-':<8} {'':>8} {'-':>6}  {error}")
            continue
        weakest = record["scores"]["criteria"][weakest_index(record["scores"]["criteria"])]
        out(
            f"{m['external_id']:<10} {m.get('operator') or '-':<8} "
            f"{record['call']['audio']['duration_s']:>7.1f}s {record['scores']['total']:>6.1f}  "
            f"{weakest['name']} ({weakest['score']})"
        )

    out(f"\nTenant aggregate ({TENANT}), table daily_aggregates:")
    out(f"{'day':<11} {'operator':<8} {'calls':>5} {'mean':>6} {'min':>6} {'max':>6}")
    for row in warehouse.daily_aggregates(TENANT):
        out(
            f"{row['day']!s:<11} {row['operator']:<8} {row['calls']:>5} {row['mean_total']:>6.1f} "
            f"{row['min_total']:>6.1f} {row['max_total']:>6.1f}"
        )
    team = {}
    for row in warehouse.daily_criterion_aggregates(TENANT):
        if row["operator"] == "*":
            team.setdefault(row["criterion"], []).append((row["calls"], row["mean_score"]))
    if team:
        out(
            "\nMean score per criterion (all days, all operators), table daily_criterion_aggregates:"
        )
        for criterion, vals in team.items():
            calls = sum(c for c, _ in vals)
            out(f"  {criterion:<20} {sum(c * m for c, m in vals) / calls:.2f}")
