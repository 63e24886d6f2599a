"""The callqa code location (workspace.yaml loads this module).

`defs` is built when Dagster loads the code location, not on import: the environment
(deployment, overrides, sensor intervals) and the tenant files are read then.
"""

from __future__ import annotations

import dagster as dg

from callqa.assets.aggregates import build_tenant_aggregates
from callqa.assets.calls import build_call_assets
from callqa.assets.evaluation import build_grader_agreement
from callqa.assets.report import build_tenant_report
from callqa.assets.variants import build_variant_comparison
from callqa.config.registry import default_registry
from callqa.executors import executor_for
from callqa.jobs import build_jobs
from callqa.resources.deployments import resources_for
from callqa.retention import build_retention_defs
from callqa.sensors.crm_sources import build_crm_sensors
from callqa.sensors.staged_calls import (
    build_staged_calls_sensor,
    build_tenant_aggregates_sensor,
)
from callqa.settings import load_settings


@dg.definitions
def defs() -> dg.Definitions:
    settings = load_settings()
    retention_jobs, retention_schedules = build_retention_defs()
    return dg.Definitions(
        assets=[
            build_call_assets(settings.calls_per_run),
            build_tenant_aggregates(sorted(default_registry().tenants)),
            build_tenant_report(sorted(default_registry().tenants)),
            build_variant_comparison(sorted(default_registry().tenants)),
            build_grader_agreement(sorted(default_registry().tenants)),
        ],
        jobs=[*build_jobs(settings), *retention_jobs],
        schedules=retention_schedules,
        sensors=[
            build_staged_calls_sensor(
                settings.sensor_interval_s, settings.calls_per_run, settings.call_slots
            ),
            build_tenant_aggregates_sensor(settings.aggregates_interval_s),
            *build_crm_sensors(list(default_registry().tenants.values())),
        ],
        resources=resources_for(settings),
        # Runs of the implicit asset job (backfills, UI materializations) use it too.
        executor=executor_for(settings),
    )
