"""Read recordings: probe the container, decode to 16 kHz mono per channel, find speech.

Decoding goes through PyAV (bundled with faster-whisper), so WAV, FLAC, MP3, OGG and
most telephony formats work without a system ffmpeg.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from callqa.errors import AudioError

SAMPLE_RATE = 16_000
# Below this peak amplitude (≈ -54 dBFS) a channel is treated as digital silence.
SILENCE_PEAK = 0.002


@dataclass(frozen=True)
class AudioProbe:
    sha256: str
    size_bytes: int
    codec: str
    container: str
    channels: int
    sample_rate: int
    duration_s: float
    declared_duration_s: float | None = None  # what the container header claims

    def as_dict(self) -> dict:
        return self.__dict__.copy()


@dataclass(frozen=True)
class DecodedAudio:
    """One float32 16 kHz array per channel (one for mono, two for stereo)."""

    probe: AudioProbe
    channels: list[np.ndarray]

    @property
    def is_stereo(self) -> bool:
        return len(self.channels) == 2


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def probe_bytes(data: bytes, name: str) -> AudioProbe:
    """Inspect a recording held in memory; raise AudioError naming `name` if unusable."""
    import io

    import av

    if not data:
        raise AudioError(f"{name}: file is empty")
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.audio:
                raise AudioError(f"{name}: no audio stream found")
            stream = container.streams.audio[0]
            codec = stream.codec_context.name
            channels = stream.codec_context.channels or 0
            sample_rate = stream.codec_context.sample_rate or stream.rate or 0
            fmt = container.format.name
            declared = container.duration / av.time_base if container.duration else None
    except AudioError:
        raise
    except Exception as exc:  # PyAV raises many error types for garbage input
        raise AudioError(f"{name}: not a readable audio file ({exc.__class__.__name__})") from exc
    if channels not in (1, 2):
        raise AudioError(f"{name}: {channels} channels; only mono and stereo are supported")
    return AudioProbe(
        sha256=sha256_of(data),
        size_bytes=len(data),
        codec=codec,
        container=fmt,
        channels=channels,
        sample_rate=int(sample_rate),
        duration_s=0.0,  # filled from the decoded samples, which is exact
        declared_duration_s=round(declared, 3) if declared else None,
    )


def decode_bytes(data: bytes, name: str) -> DecodedAudio:
    """Probe and decode; the duration comes from the decoded samples."""
    import io

    from faster_whisper import decode_audio

    probe = probe_bytes(data, name)
    try:
        if probe.channels == 2:
            left, right = decode_audio(io.BytesIO(data), SAMPLE_RATE, split_stereo=True)
            channels = [left, right]
        else:
            channels = [decode_audio(io.BytesIO(data), SAMPLE_RATE)]
    except Exception as exc:
        raise AudioError(
            f"{name}: cannot decode {probe.channels}-channel {probe.codec} audio "
            f"({exc.__class__.__name__}: {exc})"
        ) from exc
    lengths = {len(c) for c in channels}
    if len(lengths) != 1:
        raise AudioError(f"{name}: stereo channels decoded to different lengths {sorted(lengths)}")
    samples = lengths.pop()
    if samples == 0:
        raise AudioError(f"{name}: decodes to zero samples (empty recording)")
    duration = samples / SAMPLE_RATE
    declared = probe.declared_duration_s
    # Decoders stop quietly at a cut-off stream. FLAC's header holds the exact sample
    # count (other formats' durations are estimates, e.g. VBR MP3), so it can tell.
    if probe.codec == "flac" and declared and duration < declared - max(0.5, 0.02 * declared):
        raise AudioError(
            f"{name}: truncated or corrupt: the header declares {declared:.1f} s "
            f"but only {duration:.1f} s decode"
        )
    probe = AudioProbe(**{**probe.as_dict(), "duration_s": round(duration, 3)})
    return DecodedAudio(probe=probe, channels=[c.astype(np.float32, copy=False) for c in channels])


def decode_file(path: Path) -> DecodedAudio:
    if not path.exists():
        raise AudioError(f"{path}: file not found")
    if not path.is_file():
        raise AudioError(f"{path}: not a regular file")
    return decode_bytes(path.read_bytes(), str(path))


def speech_regions(
    samples: np.ndarray,
    frame_s: float = 0.03,
    min_speech_s: float = 0.25,
    merge_gap_s: float = 0.4,
) -> list[tuple[float, float]]:
    """Energy-based speech regions (start, end) in seconds.

    Deliberately simple and independent of the speech model, so the transcript check
    compares the STT output against a second opinion instead of against itself.
    """
    frame = int(SAMPLE_RATE * frame_s)
    if len(samples) < frame or float(np.max(np.abs(samples))) < SILENCE_PEAK:
        return []
    n = len(samples) // frame
    rms = np.sqrt(np.mean(samples[: n * frame].reshape(n, frame) ** 2, axis=1))
    # Threshold relative to the channel's own loud frames, floored above the noise.
    loud = float(np.percentile(rms, 95))
    threshold = max(loud * 0.1, 10 ** (-45 / 20))
    active = rms > threshold
    regions: list[list[float]] = []
    for i, on in enumerate(active):
        if not on:
            continue
        start, end = i * frame_s, (i + 1) * frame_s
        if regions and start - regions[-1][1] <= merge_gap_s:
            regions[-1][1] = end
        else:
            regions.append([start, end])
    return [(round(s, 2), round(e, 2)) for s, e in regions if e - s >= min_speech_s]


def is_silent(samples: np.ndarray) -> bool:
    return len(samples) == 0 or float(np.max(np.abs(samples))) < SILENCE_PEAK
