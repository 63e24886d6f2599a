"""One switch, CALLQA_DEPLOYMENT, picks the whole resource set.

local (default): the warehouse and audio store fall back to files under CALLQA_DATA_DIR,
so a new user needs no server. production: both must be configured explicitly
(`load_settings` refuses to start without them) and nothing falls back to the working
directory. In both, secrets are `dg.EnvVar` references: only their names reach Dagster.
"""

from __future__ import annotations

import dagster as dg

from callqa import settings as s
from callqa.resources.audio_store import AudioStoreResource
from callqa.resources.scorers import ScorerResource
from callqa.resources.speech import SpeechToTextResource
from callqa.resources.warehouse import WarehouseResource


def _env(name: str, present: bool) -> dg.EnvVar | None:
    return dg.EnvVar(name) if present else None


def _providers(settings: s.Settings) -> dict:
    return {
        "stt": SpeechToTextResource(
            provider=settings.stt,
            whisper_model=settings.whisper_model,
            device=settings.whisper_device,
            compute_type=settings.whisper_compute_type,
            # CALLQA_CALL_SLOTS batches transcribe at once: each gets its share of the cores.
            cpu_threads=settings.effective_whisper_threads,
            batch_size=settings.whisper_batch_size,
            allow_download=settings.whisper_download,
            max_audio_s=settings.max_audio_s,
            api_base=_env(s.STT_API_BASE_ENV, settings.has_stt_api_base),
            api_key=_env(s.STT_API_KEY_ENV, settings.has_stt_api_key),
            api_model=settings.stt_api_model,
            diarization=settings.diarization,
            pyannote_model=settings.pyannote_model,
            pyannote_token=_env(s.PYANNOTE_TOKEN_ENV, settings.has_pyannote_token),
        ),
        "scorer": ScorerResource(
            scorer=settings.scorer,
            model=settings.llm_model,
            api_base=_env(s.LLM_API_BASE_ENV, settings.has_llm_api_base),
            api_key=_env(s.LLM_API_KEY_ENV, settings.has_llm_api_key),
        ),
    }


def local_resources(settings: s.Settings) -> dict:
    return {
        **_providers(settings),
        "warehouse": WarehouseResource(
            database_url=_env(s.DATABASE_URL_ENV, settings.has_database_url)
        ),
        "audio_store": AudioStoreResource(root=_env(s.AUDIO_STORE_ENV, settings.has_audio_store)),
    }


def production_resources(settings: s.Settings) -> dict:
    return {
        **_providers(settings),
        "warehouse": WarehouseResource(database_url=dg.EnvVar(s.DATABASE_URL_ENV)),
        "audio_store": AudioStoreResource(root=dg.EnvVar(s.AUDIO_STORE_ENV)),
    }


RESOURCES_BY_DEPLOYMENT = {"local": local_resources, "production": production_resources}


def resources_for(settings: s.Settings) -> dict:
    return RESOURCES_BY_DEPLOYMENT[settings.deployment](settings)
