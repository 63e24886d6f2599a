"""Shared helpers for tests that materialize the per-call assets through Dagster."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from callqa.assets.calls import build_call_assets
from callqa.resources import (
    AudioStoreResource,
    ScorerResource,
    SpeechToTextResource,
    WarehouseResource,
)


def call_resources(db_url: str, tmp_path: Path, scorer: ScorerResource | None = None) -> dict:
    return {
        "warehouse": WarehouseResource(database_url=db_url),
        "audio_store": AudioStoreResource(root=str(tmp_path / "audio")),
        "stt": SpeechToTextResource(),
        "scorer": scorer or ScorerResource(),
    }


# The per-call assets (one subsettable step), as the code location defines them; ALL_STAGES
# are those up to the score (crm_pushback has its own tests: test_pushback_asset.py).
CALL_ASSETS = build_call_assets()
ALL_STAGES = ["raw_audio", "transcript", "diarized_transcript", "scored_analysis"]


def materialize_call(stages, key, db_url, tmp_path, instance, scorer=None):
    """Materialize the named stages (asset names) of one call, as a run of one partition."""
    instance.add_dynamic_partitions("calls", [key])
    return dg.materialize(
        [CALL_ASSETS],
        selection=list(stages),
        partition_key=key,
        instance=instance,
        raise_on_error=False,
        resources=call_resources(db_url, tmp_path, scorer),
    )


class InventedQuoteScorer:
    """A scorer with a bug: every criterion cites `quote`, which nobody said, and the
    outcome claims to be valid without being validated."""

    def __init__(self, quote: str) -> None:
        self.quote = quote

    def score(self, diarized, preset, category=None):
        from callqa.scoring.outcome import Attempt, ScoringOutcome
        from callqa.scoring.output import CriterionResult, Evidence, ScorerOutput

        output = ScorerOutput(
            criteria=[
                CriterionResult(
                    id=c, score=3, rationale="?", evidence=[Evidence(quote=self.quote, start=1.0)]
                )
                for c in preset.criterion_ids
            ],
            summary="unchecked",
        )
        attempt = Attempt(
            attempt=1, scorer="rules", model="buggy", prompt_version=preset.prompt_version
        )
        attempt.valid = True
        return ScoringOutcome(
            scorer="rules",
            model="buggy",
            prompt_version=preset.prompt_version,
            output=output,
            attempts=[attempt],
        )


class InventedQuoteScorerResource(ScorerResource):
    quote: str

    def for_preset(self, preset):
        return InventedQuoteScorer(self.quote)
