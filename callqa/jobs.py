"""Jobs: one run processes one call; another rebuilds a tenant's aggregates."""

import dagster as dg

from callqa.assets.aggregates import tenant_daily_aggregates
from callqa.assets.calls import diarized_transcript, raw_audio, scored_analysis, transcript

process_call_job = dg.define_asset_job(
    name="process_call",
    selection=dg.AssetSelection.assets(raw_audio, transcript, diarized_transcript, scored_analysis),
    description="Recording → transcript → diarized transcript → validated score, for one call.",
)

tenant_aggregates_job = dg.define_asset_job(
    name="tenant_aggregates",
    selection=dg.AssetSelection.assets(tenant_daily_aggregates),
    description="Rebuild one tenant's daily aggregate tables from its scored calls.",
)
