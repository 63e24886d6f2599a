"""Dagster resources: swap storage, speech-to-text and scoring by configuration."""

from callqa.resources.audio_store import AudioStoreResource
from callqa.resources.scorers import LLMScorerResource, RulesScorerResource, ScorerResource
from callqa.resources.speech import (
    OpenAITranscriptionResource,
    SpeechToTextResource,
    WhisperResource,
)
from callqa.resources.warehouse import WarehouseResource

__all__ = [
    "AudioStoreResource",
    "LLMScorerResource",
    "OpenAITranscriptionResource",
    "RulesScorerResource",
    "ScorerResource",
    "SpeechToTextResource",
    "WarehouseResource",
    "WhisperResource",
]
