"""The scorer interface: rules or an LLM, chosen per call by its preset."""

from __future__ import annotations

from typing import Protocol

from callqa.config.models import Preset
from callqa.scoring.outcome import ScoringOutcome
from callqa.speech.diarization import DiarizedTranscript


class Scorer(Protocol):
    """Scores a diarized call against a preset's rubric. Every attempt is in the outcome;
    an outcome without valid output is recorded and reported, never published."""

    def score(
        self, diarized: DiarizedTranscript, preset: Preset, category: str | None = None
    ) -> ScoringOutcome: ...
