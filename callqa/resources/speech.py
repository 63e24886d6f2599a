from __future__ import annotations

import dagster as dg
from pydantic import Field

from callqa.calls.backends import DiarizationBackends, SpeechBackends
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
    allow_download: bool = Field(
        False,
        description="Let faster-whisper fetch a model missing from the local cache "
        "(CALLQA_WHISPER_DOWNLOAD); off: models load from disk only",
    )
    max_audio_s: float = Field(
        4 * 3600.0,
        gt=0,
        description="Longer recordings are refused, before decoding where the header "
        "says so (CALLQA_MAX_AUDIO_S)",
    )
    diarization: str | None = Field(
        None,
        description="Override every preset's diarization backend (CALLQA_DIARIZATION): "
        "auto, channel, embedding, pyannote or pause; unset = the preset's",
    )
    pyannote_model: str | None = Field(
        None, description="pyannote pipeline: a local folder or hub id (CALLQA_PYANNOTE_MODEL)"
    )
    pyannote_token: str | None = Field(
        None, description="Hugging Face token for a gated pyannote model; set with dg.EnvVar"
    )

    def diarization_backends(self) -> DiarizationBackends:
        return DiarizationBackends(
            override=self.diarization,
            pyannote_model=self.pyannote_model,
            pyannote_token=self.pyannote_token,
        )

    def for_preset(self, speech: SpeechSettings) -> SpeechToText:
        return SpeechBackends(
            provider=self.provider,
            whisper_model=self.whisper_model,
            device=self.device,
            compute_type=self.compute_type,
            cpu_threads=self.cpu_threads,
            batch_size=self.batch_size,
            allow_download=self.allow_download,
            api_base=self.api_base,
            api_key=self.api_key,
            api_model=self.api_model,
            timeout_s=self.timeout_s,
        ).for_preset(speech)
