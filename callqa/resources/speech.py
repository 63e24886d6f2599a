from __future__ import annotations

import dagster as dg
from pydantic import Field

from callqa.audio import DecodedAudio
from callqa.config.models import SpeechSettings
from callqa.speech import WhisperSettings, transcribe
from callqa.transcription import Transcript


class SpeechToTextResource(dg.ConfigurableResource):
    """Anything that turns decoded audio into a per-channel `Transcript`."""

    def transcribe(self, audio: DecodedAudio, preset: SpeechSettings) -> Transcript:
        raise NotImplementedError


class WhisperResource(SpeechToTextResource):
    """faster-whisper speech-to-text; the default model is bundled and runs offline.

    Model, beam size and language come from the call's preset unless set here.
    """

    model: str | None = Field(None, description="'tiny.en' (bundled), a model name or a path")
    device: str = Field("cpu", description="cpu, cuda or auto")
    compute_type: str = Field("int8", description="int8 on CPU; float16 on GPU")
    beam_size: int | None = None
    language: str | None = None
    cpu_threads: int = 0

    def settings(self, preset: SpeechSettings) -> WhisperSettings:
        return WhisperSettings(
            model=self.model or preset.model,
            device=self.device,
            compute_type=self.compute_type,
            beam_size=self.beam_size or preset.beam_size,
            language=self.language or preset.language,
            cpu_threads=self.cpu_threads,
        )

    def transcribe(self, audio: DecodedAudio, preset: SpeechSettings) -> Transcript:
        return transcribe(audio, self.settings(preset))


class OpenAITranscriptionResource(SpeechToTextResource):
    """An OpenAI-compatible `/audio/transcriptions` endpoint (OpenAI, Groq, speaches, ...)."""

    api_base: str = Field(description="e.g. https://api.openai.com/v1")
    api_key: str | None = Field(None, description="Set with dg.EnvVar")
    model: str = "whisper-1"
    timeout_s: float = 300.0

    def transcribe(self, audio: DecodedAudio, preset: SpeechSettings) -> Transcript:
        from callqa.speech_api import OpenAITranscriber

        return OpenAITranscriber(
            api_base=self.api_base,
            api_key=self.api_key,
            model=self.model,
            language=preset.language,
            timeout_s=self.timeout_s,
        ).transcribe(audio)
