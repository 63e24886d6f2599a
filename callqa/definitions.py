"""The callqa code location: `dagster dev -m callqa.definitions` (see workspace.yaml)."""

from __future__ import annotations

import os

import dagster as dg

from callqa import settings
from callqa.assets.aggregates import tenant_daily_aggregates
from callqa.assets.calls import diarized_transcript, raw_audio, scored_analysis, transcript
from callqa.jobs import process_call_job, tenant_aggregates_job
from callqa.resources import (
    AudioStoreResource,
    LLMScorerResource,
    OpenAITranscriptionResource,
    RulesScorerResource,
    ScorerResource,
    SpeechToTextResource,
    WarehouseResource,
    WhisperResource,
)
from callqa.sensors.staged_calls import staged_calls_sensor, tenant_aggregates_sensor


def _env(name: str) -> dg.EnvVar | None:
    # dg.EnvVar keeps the value out of the UI and run config; only the name is shown.
    return dg.EnvVar(name) if os.environ.get(name) else None


def scorer_from_env() -> ScorerResource:
    """CALLQA_SCORER=rules (default, offline) or llm (litellm, any provider)."""
    kind = os.environ.get(settings.SCORER_ENV, "rules").strip().lower()
    if kind == "rules":
        return RulesScorerResource()
    if kind == "llm":
        return LLMScorerResource(
            model=os.environ.get(settings.LLM_MODEL_ENV) or None,
            api_base=_env(settings.LLM_API_BASE_ENV),
            api_key=_env(settings.LLM_API_KEY_ENV),
        )
    raise ValueError(f"{settings.SCORER_ENV}={kind!r}: expected 'rules' or 'llm'")


def stt_from_env() -> SpeechToTextResource:
    """CALLQA_STT=whisper (default, bundled model, offline) or openai (compatible API)."""
    kind = os.environ.get(settings.STT_ENV, "whisper").strip().lower()
    if kind == "whisper":
        return WhisperResource(
            model=os.environ.get(settings.WHISPER_MODEL_ENV) or None,
            device=os.environ.get(settings.WHISPER_DEVICE_ENV, "cpu"),
            compute_type=os.environ.get(settings.WHISPER_COMPUTE_TYPE_ENV, "int8"),
        )
    if kind == "openai":
        if not os.environ.get(settings.STT_API_BASE_ENV):
            raise ValueError(f"{settings.STT_ENV}=openai needs {settings.STT_API_BASE_ENV}")
        return OpenAITranscriptionResource(
            api_base=dg.EnvVar(settings.STT_API_BASE_ENV),
            api_key=_env(settings.STT_API_KEY_ENV),
            model=os.environ.get(settings.STT_MODEL_ENV) or "whisper-1",
        )
    raise ValueError(f"{settings.STT_ENV}={kind!r}: expected 'whisper' or 'openai'")


def build_resources() -> dict:
    return {
        "warehouse": WarehouseResource(database_url=_env(settings.DATABASE_URL_ENV)),
        "audio_store": AudioStoreResource(root=_env(settings.AUDIO_STORE_ENV)),
        "stt": stt_from_env(),
        "scorer": scorer_from_env(),
    }


defs = dg.Definitions(
    assets=[raw_audio, transcript, diarized_transcript, scored_analysis, tenant_daily_aggregates],
    jobs=[process_call_job, tenant_aggregates_job],
    sensors=[staged_calls_sensor, tenant_aggregates_sensor],
    resources=build_resources(),
)
