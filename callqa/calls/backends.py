"""Which speech-to-text backend and which scorer a call gets.

The call's preset chooses (provider and model, rules or LLM); the deployment supplies what
a preset must not hold (device, endpoints, keys) and operators may override the choice.
Plain Python so `callqa analyze` picks backends exactly as the Dagster resources do
(they delegate here) without importing Dagster.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from callqa import settings as s
from callqa.config.models import Preset, SpeechSettings
from callqa.errors import ConfigError
from callqa.scoring.base import Scorer
from callqa.speech.base import SpeechToText
from callqa.speech.turns import SpeakerSegmenter


@dataclass(frozen=True)
class SpeechBackends:
    provider: str | None = None  # override every preset's provider
    whisper_model: str | None = None  # override the preset's faster-whisper model
    device: str = "cpu"
    compute_type: str = "int8"
    cpu_threads: int = 0
    batch_size: int = 0  # >0: faster-whisper's batched inference (for GPUs)
    allow_download: bool = False  # fetch models missing from the local cache
    api_base: str | None = None
    api_key: str | None = None
    api_model: str | None = None
    timeout_s: float = 300.0

    def for_preset(self, speech: SpeechSettings) -> SpeechToText:
        provider = self.provider or speech.provider
        if provider == "whisper":
            from callqa.speech.whisper import WhisperSettings, WhisperTranscriber

            return WhisperTranscriber(
                WhisperSettings(
                    model=self.whisper_model or speech.model,
                    device=self.device,
                    compute_type=self.compute_type,
                    beam_size=speech.beam_size,
                    language=speech.language,
                    cpu_threads=self.cpu_threads,
                    vad_filter=speech.vad_filter,
                    batch_size=self.batch_size,
                    allow_download=self.allow_download,
                )
            )
        if provider != "openai":
            raise ConfigError(f"speech provider {provider!r}: expected 'whisper' or 'openai'")
        if not self.api_base:
            raise ConfigError(
                "speech provider 'openai' needs a transcription endpoint: set CALLQA_STT_API_BASE"
            )
        from callqa.speech.openai_api import OpenAITranscriber

        return OpenAITranscriber(
            api_base=self.api_base,
            api_key=self.api_key,
            model=self.api_model or speech.api_model,
            language=None if (speech.language or "auto").lower() == "auto" else speech.language,
            timeout_s=self.timeout_s,
        )


@dataclass(frozen=True)
class ScorerBackends:
    scorer: str | None = None  # override every preset's scorer
    model: str | None = None  # override the preset's litellm model
    api_base: str | None = None
    api_key: str | None = None
    timeout_s: float | None = None
    # auto: a JSON schema where litellm knows the model supports it, else JSON mode or
    # none with tolerant parsing; json_schema / json_object / none force one.
    response_format: str = "auto"

    def for_preset(self, preset: Preset, redact: Callable[[str], str] | None = None) -> Scorer:
        """The call's scorer; `redact` (the tenant's PII masking) is applied by the LLM
        scorer to every reply and error it stores."""
        kind = self.scorer or preset.scorer
        if kind == "rules":
            from callqa.scoring.rules import RulesScorer

            return RulesScorer()
        if kind != "llm":
            raise ConfigError(f"scorer {kind!r}: expected 'rules' or 'llm'")
        from callqa.scoring.llm import LLMScorer

        return LLMScorer(
            model=self.model,
            api_base=self.api_base,
            api_key=self.api_key,
            timeout_s=self.timeout_s,
            response_format=self.response_format,
            redact=redact,
        )


@dataclass(frozen=True)
class DiarizationBackends:
    """Who-spoke-when per call: the preset's `speech.diarization`, unless the operator
    overrides every preset (CALLQA_DIARIZATION); pyannote's local model and token come
    from the deployment (CALLQA_PYANNOTE_MODEL / CALLQA_PYANNOTE_TOKEN)."""

    override: str | None = None
    pyannote_model: str | None = None
    pyannote_token: str | None = None

    def for_preset(self, speech: SpeechSettings, stereo: bool) -> str:
        """The concrete backend: channel, embedding, pyannote or pause."""
        from callqa.speech.diarization import resolve_backend

        return resolve_backend(self.override or speech.diarization, stereo)

    def segmenter(self, backend: str) -> SpeakerSegmenter | None:
        """The speaker segmenter of a mono backend (embedding, pyannote); None otherwise."""
        if backend not in ("embedding", "pyannote"):
            return None
        from callqa.speech.diarization import segmenter_for

        return segmenter_for(
            backend, pyannote_model=self.pyannote_model, pyannote_token=self.pyannote_token
        )


def diarization_backends_from_settings(settings: s.Settings) -> DiarizationBackends:
    return DiarizationBackends(
        override=settings.diarization,
        pyannote_model=settings.pyannote_model,
        pyannote_token=s.secret(s.PYANNOTE_TOKEN_ENV),
    )


def backends_from_settings(settings: s.Settings) -> tuple[SpeechBackends, ScorerBackends]:
    """The backends the Dagster resources would build from the same settings (the CLI)."""
    speech = SpeechBackends(
        provider=settings.stt,
        whisper_model=settings.whisper_model,
        device=settings.whisper_device,
        compute_type=settings.whisper_compute_type,
        # One command, one call: all cores unless CALLQA_WHISPER_THREADS says otherwise.
        cpu_threads=settings.whisper_threads,
        batch_size=settings.whisper_batch_size,
        allow_download=settings.whisper_download,
        api_base=s.secret(s.STT_API_BASE_ENV),
        api_key=s.secret(s.STT_API_KEY_ENV),
        api_model=settings.stt_api_model,
    )
    scorer = ScorerBackends(
        scorer=settings.scorer,
        model=settings.llm_model,
        api_base=s.secret(s.LLM_API_BASE_ENV),
        api_key=s.secret(s.LLM_API_KEY_ENV),
    )
    return speech, scorer
