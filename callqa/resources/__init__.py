"""Dagster resources: storage, speech-to-text and scoring, swapped by configuration."""

from callqa.resources.audio_store import AudioStoreResource
from callqa.resources.scorers import ScorerResource
from callqa.resources.speech import SpeechToTextResource
from callqa.resources.warehouse import WarehouseResource

__all__ = ["AudioStoreResource", "ScorerResource", "SpeechToTextResource", "WarehouseResource"]
