"""Jobs: `process_call` carries a batch of calls (one or more `calls` partitions) from
recording to score; `tenant_aggregates` rebuilds one tenant's aggregates, report, A/B
variant comparison and agreement with human graders.

A run of `process_call` targets a contiguous range of call partitions (the sensor groups
newly staged calls; backfills group by the assets' `BackfillPolicy`). The call assets are
one step, so the whole batch runs in one process with the speech model loaded once.
The executor comes from `CALLQA_EXECUTOR` (callqa/executors.py).
"""

from __future__ import annotations

import dagster as dg

from callqa.assets.aggregates import TENANT_DAILY_AGGREGATES
from callqa.assets.evaluation import GRADER_AGREEMENT
from callqa.assets.partitions import CALL_ASSET_NAMES
from callqa.assets.report import TENANT_REPORT
from callqa.assets.variants import VARIANT_COMPARISON
from callqa.executors import executor_for
from callqa.settings import Settings

PROCESS_CALL = "process_call"
TENANT_AGGREGATES = "tenant_aggregates"


def build_jobs(settings: Settings) -> list[dg.UnresolvedAssetJobDefinition]:
    executor = executor_for(settings)
    return [
        dg.define_asset_job(
            name=PROCESS_CALL,
            selection=dg.AssetSelection.assets(*CALL_ASSET_NAMES),
            description=(
                "Recording → transcript → diarized transcript → validated score → result on "
                "the CRM card, for a batch of calls (one run, one process, each call reported "
                "on its own partition)."
            ),
            executor_def=executor,
        ),
        dg.define_asset_job(
            name=TENANT_AGGREGATES,
            selection=dg.AssetSelection.assets(
                TENANT_DAILY_AGGREGATES, TENANT_REPORT, VARIANT_COMPARISON, GRADER_AGREEMENT
            ),
            description=(
                "Rebuild one tenant's daily aggregate tables from its scored calls, then its "
                "report, its A/B variant comparison and its agreement with human graders."
            ),
            executor_def=executor,
        ),
    ]
