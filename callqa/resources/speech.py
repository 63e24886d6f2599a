from __future__ import annotations

import dagster as dg
from pydantic import Field

from callqa.calls.backends import SpeechBackends
from callqa.config.models import SpeechSettings
from callqa.speech.base import SpeechToText


class SpeechToTextResource(dg.ConfigurableResource):
    """Speech-to-text for each call: the call's preset picks the provider and model;
    the fields here are the deployment's side (device, endpoint, key) and operator overrides.
    """

    provider: str | None = Field(
        None, description="Override every preset's provider (CALLQA_STT); unset = the preset's"
    )
    whisper_model: str | None = Field(
        None, description="Override the preset's faster-whisper model (CALLQA_WHISPER_MODEL)"
    )
    device: str = Field("cpu", description="faster-whisper device: cpu, cuda or auto")
    compute_type: str = Field("int8", description="int8 on CPU; float16 on GPU")
    cpu_threads: int = Field(
        0, description="CPU threads per transcription (CALLQA_WHISPER_THREADS); 0 = all cores"
    )
    batch_size: int = Field(
        0, description="faster-whisper batched inference (CALLQA_WHISPER_BATCH_SIZE); 0 = off"
    )
    api_base: str | None = Field(None, description="OpenAI-compatible transcription endpoint")
    api_key: str | None = Field(None, description="Set with dg.EnvVar")
    api_model: str | None = Field(None, description="Override the preset's api_model")
    timeout_s: float = 300.0

    def for_preset(self, speech: SpeechSettings) -> SpeechToText:
        return SpeechBackends(
            provider=self.provider,
            whisper_model=self.whisper_model,
            device=self.device,
            compute_type=self.compute_type,
            cpu_threads=self.cpu_threads,
            batch_size=self.batch_size,
            api_base=self.api_base,
            api_key=self.api_key,
            api_model=self.api_model,
            timeout_s=self.timeout_s,
        ).for_preset(speech)
