"""Write test recordings with the standard library (no sound tools needed in CI)."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

SR = 16_000


def write_wav(path: Path, channels: list[np.ndarray], sample_rate: int = SR) -> Path:
    """16-bit PCM WAV from float arrays in [-1, 1], one per channel."""
    length = max(len(c) for c in channels)
    frames = np.zeros((length, len(channels)), dtype=np.int16)
    for i, c in enumerate(channels):
        frames[: len(c), i] = (np.clip(c, -1, 1) * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(len(channels))
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(frames.tobytes())
    return path


def noise(seconds: float, level: float = 0.2, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(SR * seconds)) * level).astype(
        np.float32
    )


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(SR * seconds), dtype=np.float32)


def transcode(src: Path, dst: Path, codec: str, rate: int) -> Path:
    """Re-encode a recording with PyAV (bundled FFmpeg), keeping its channel layout."""
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        in_stream = inp.streams.audio[0]
        layout = in_stream.codec_context.layout.name
        stream = out.add_stream(codec, rate=rate, layout=layout)
        resampler = av.AudioResampler(
            format=stream.codec_context.format.name, layout=layout, rate=rate
        )
        for frame in inp.decode(in_stream):
            for resampled in resampler.resample(frame):
                for packet in stream.encode(resampled):
                    out.mux(packet)
        for resampled in resampler.resample(None):
            for packet in stream.encode(resampled):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return dst
