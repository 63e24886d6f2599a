"""Jobs: one run processes one call; another rebuilds a tenant's aggregates.

Both run their steps in the run worker's own process (`in_process_executor`): a call's
steps depend on each other, so Dagster's default multiprocess executor would gain no
parallelism and pay a new Python process (imports, speech model load) for every step.
Pools (`callqa_stt`, `callqa_scoring`) still bound how many steps run at once.
"""

import dagster as dg

from callqa.assets.aggregates import TENANT_DAILY_AGGREGATES
from callqa.assets.calls import diarized_transcript, raw_audio, scored_analysis, transcript
from callqa.assets.report import TENANT_REPORT

process_call_job = dg.define_asset_job(
    name="process_call",
    selection=dg.AssetSelection.assets(raw_audio, transcript, diarized_transcript, scored_analysis),
    description="Recording → transcript → diarized transcript → validated score, for one call.",
    executor_def=dg.in_process_executor,
)

tenant_aggregates_job = dg.define_asset_job(
    name="tenant_aggregates",
    selection=dg.AssetSelection.assets(TENANT_DAILY_AGGREGATES, TENANT_REPORT),
    description="Rebuild one tenant's daily aggregate tables from its scored calls, then its report.",
    executor_def=dg.in_process_executor,
)
