"""Read recordings: probe the container, decode to 16 kHz per channel, find speech.

Decoding goes through PyAV (bundled with faster-whisper), so WAV, FLAC, MP3, OGG and
most telephony formats work without a system ffmpeg. Frames are streamed through a
resampler, so memory does not grow with the recording: a channel up to `IN_MEMORY_S` long
is an ordinary float32 array; a longer one is written to an unlinked temporary file (under
TMPDIR) as it decodes and handed out as a read-only `np.memmap`. Both are numpy arrays, so
callers index, slice and pass channels as before; code that reads a whole long channel
should go through `iter_chunks`, which keeps only one piece resident at a time.
"""

from __future__ import annotations

import hashlib
import io
import mmap
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from callqa.errors import AudioError
from callqa.settings import MAX_AUDIO_ENV

SAMPLE_RATE = 16_000
# Below this peak amplitude (≈ -54 dBFS) a channel is treated as digital silence.
SILENCE_PEAK = 0.002
# Longer recordings are refused (CALLQA_MAX_AUDIO_S): decoding and transcribing them ties
# up a worker for hours, and a call centre recording that long is almost always a fault.
DEFAULT_MAX_DURATION_S = 4 * 3600.0
# Channels up to this long stay in memory (58 MB per channel); longer ones go to a file.
IN_MEMORY_S = 15 * 60
# Whole-channel consumers read a long channel this many seconds at a time.
CHUNK_S = 60.0
# A sample at or above this share of full scale counts as clipped.
CLIP_LEVEL = 0.99
# Above this share of clipped samples a recording is flagged (still processed): speech
# clipped that often is audibly distorted and transcribes worse.
CLIPPING_WARN_SHARE = 0.001


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
    clipped_share: float = 0.0  # share of the source's samples at full scale (0..1)

    def as_dict(self) -> dict:
        return self.__dict__.copy()

    @property
    def warnings(self) -> list[str]:
        """Problems that do not stop a call but that a reader of its score should know."""
        if self.clipped_share > CLIPPING_WARN_SHARE:
            return [
                f"{self.clipped_share:.1%} of the audio samples are clipped (at full scale): "
                "distorted speech transcribes worse"
            ]
        return []


@dataclass(frozen=True)
class DecodedAudio:
    """16 kHz float32 samples per channel (one for mono, two for stereo).

    Each channel is a 1-D float32 numpy array: in memory for recordings up to
    `IN_MEMORY_S`, a read-only `np.memmap` over a deleted temporary file for longer ones
    (the disk space is freed when the last reference to it goes).
    """

    probe: AudioProbe
    channels: list[np.ndarray]

    @property
    def is_stereo(self) -> bool:
        return len(self.channels) == 2


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def probe_bytes(data: bytes, name: str) -> AudioProbe:
    """Inspect a recording held in memory; raise AudioError naming `name` if unusable."""
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


def clock(seconds: float) -> str:
    """4:00:00, 12:05 or 7.5 s: durations as people read them in an error."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def _too_long(name: str, what: str, limit_s: float) -> AudioError:
    return AudioError(
        f"{name}: {what}; the maximum is {clock(limit_s)} ({MAX_AUDIO_ENV}={limit_s:g})"
    )


def decode_bytes(
    data: bytes, name: str, max_duration_s: float | None = DEFAULT_MAX_DURATION_S
) -> DecodedAudio:
    """Probe and decode; the duration comes from the decoded samples.

    A recording longer than `max_duration_s` (None: no limit) is refused before decoding
    when its header says so, else as soon as decoding passes the limit.
    """
    probe = probe_bytes(data, name)
    declared = probe.declared_duration_s
    if max_duration_s and declared and declared > max_duration_s:
        raise _too_long(name, f"the header declares {clock(declared)}", max_duration_s)
    try:
        channels, clipped_share = _stream_decode(data, name, probe.channels, max_duration_s)
    except AudioError:
        raise
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
    # Decoders stop quietly at a cut-off stream. FLAC's header holds the exact sample
    # count (other formats' durations are estimates, e.g. VBR MP3), so it can tell.
    if probe.codec == "flac" and declared and duration < declared - max(0.5, 0.02 * declared):
        raise AudioError(
            f"{name}: truncated or corrupt: the header declares {declared:.1f} s "
            f"but only {duration:.1f} s decode"
        )
    probe = AudioProbe(
        **{
            **probe.as_dict(),
            "duration_s": round(duration, 3),
            "clipped_share": round(clipped_share, 6),
        }
    )
    return DecodedAudio(probe=probe, channels=channels)


class _ChannelSink:
    """One channel's float32 samples: in memory up to `in_memory` samples, beyond that in
    an unlinked temporary file that becomes a read-only memmap."""

    def __init__(self, in_memory: int):
        self.in_memory = in_memory
        self.parts: list[np.ndarray] = []
        self.count = 0
        self.file = None

    def write(self, samples: np.ndarray) -> None:
        self.count += len(samples)
        if self.file is None and self.count > self.in_memory:
            # Closed in finish() or discard(); unlinked at once, so nothing is left behind.
            self.file = tempfile.TemporaryFile(prefix="callqa-audio-")  # noqa: SIM115
            for part in self.parts:
                self.file.write(part.tobytes())
            self.parts = []
        if self.file is not None:
            self.file.write(samples.tobytes())
        else:
            self.parts.append(samples)

    def finish(self) -> np.ndarray:
        if self.file is None:
            return np.concatenate(self.parts) if self.parts else np.zeros(0, np.float32)
        self.file.flush()
        samples = np.memmap(self.file, dtype=np.float32, mode="r", shape=(self.count,))
        self.file.close()  # the mapping holds its own descriptor; the file lives as long
        return samples

    def discard(self) -> None:
        self.parts = []
        if self.file is not None:
            self.file.close()


def _clipped(frame) -> tuple[int, int]:
    """(clipped, total) samples of one source frame, in its own sample format."""
    raw = frame.to_ndarray()
    if raw.dtype.kind == "f":
        level, values = CLIP_LEVEL, raw
    elif raw.dtype.kind == "u":  # 8-bit PCM is unsigned around 128
        level, values = CLIP_LEVEL * 127, raw.astype(np.float32) - 128
    else:
        level, values = CLIP_LEVEL * np.iinfo(raw.dtype).max, raw
    return int(np.count_nonzero(np.abs(values.astype(np.float32)) >= level)), raw.size


def _stream_decode(
    data: bytes, name: str, n_channels: int, max_duration_s: float | None
) -> tuple[list[np.ndarray], float]:
    """Frame by frame through a 16 kHz s16 resampler (as faster-whisper's decode_audio,
    so the samples are the same), into one sink per channel."""
    import gc

    import av

    limit = int(max_duration_s * SAMPLE_RATE) if max_duration_s else None
    sinks = [_ChannelSink(IN_MEMORY_S * SAMPLE_RATE) for _ in range(n_channels)]
    resampler = av.AudioResampler(
        format="s16", layout="stereo" if n_channels == 2 else "mono", rate=SAMPLE_RATE
    )
    clipped = total = 0

    def drain(frames) -> None:
        for out in frames:
            pcm = out.to_ndarray().reshape(-1)
            for index, sink in enumerate(sinks):
                sink.write(pcm[index::n_channels].astype(np.float32) / 32768.0)

    try:
        with av.open(io.BytesIO(data), mode="r", metadata_errors="ignore") as container:
            stream = container.streams.audio[0]
            for frame in _valid_frames(container.decode(stream)):
                count, size = _clipped(frame)
                clipped, total = clipped + count, total + size
                frame.pts = None  # as decode_audio: no timestamp checks on odd streams
                drain(resampler.resample(frame))
                if limit and sinks[0].count > limit:
                    decoded = clock(sinks[0].count / SAMPLE_RATE)
                    raise _too_long(name, f"{decoded} decoded and more remains", max_duration_s)
            drain(resampler.resample(None))
        channels = [sink.finish() for sink in sinks]
    except BaseException:
        for sink in sinks:
            sink.discard()
        raise
    finally:
        # PyAV frees resampler internals only on a collection (faster-whisper issue 390).
        del resampler
        gc.collect()
    return channels, (clipped / total if total else 0.0)


def _valid_frames(frames) -> Iterator:
    """Skip frames the decoder rejects (a damaged packet) instead of failing the call."""
    import av

    iterator = iter(frames)
    while True:
        try:
            yield next(iterator)
        except StopIteration:
            return
        except av.error.InvalidDataError:
            continue


def decode_file(path: Path, max_duration_s: float | None = DEFAULT_MAX_DURATION_S) -> DecodedAudio:
    if not path.exists():
        raise AudioError(f"{path}: file not found")
    if not path.is_file():
        raise AudioError(f"{path}: not a regular file")
    return decode_bytes(path.read_bytes(), str(path), max_duration_s)


def iter_chunks(
    samples: np.ndarray, chunk: int = int(CHUNK_S * SAMPLE_RATE), start: int = 0, stop=None
) -> Iterator[np.ndarray]:
    """`samples[start:stop]` in consecutive pieces of `chunk` samples (the last shorter).

    For a file-backed channel each piece is a copy, and the pages read for it are dropped
    from this process before the next one is read, so the resident memory stays one piece
    (the data stays in the file and the page cache)."""
    stop = len(samples) if stop is None else min(stop, len(samples))
    mapping = getattr(samples, "_mmap", None)  # np.memmap's mmap.mmap; None for arrays
    for at in range(start, stop, chunk):
        piece = samples[at : min(at + chunk, stop)]
        if mapping is not None:
            piece = np.array(piece)
            release(samples)
        yield piece


def release(samples: np.ndarray) -> None:
    """Drop a file-backed channel's pages from this process's resident memory; reading
    it again faults them back in from the file. No-op for in-memory arrays."""
    mapping = getattr(samples, "_mmap", None)
    if isinstance(mapping, mmap.mmap) and hasattr(mmap, "MADV_DONTNEED") and not mapping.closed:
        mapping.madvise(mmap.MADV_DONTNEED)


def peak(samples: np.ndarray) -> float:
    return max((float(np.max(np.abs(p))) for p in iter_chunks(samples) if len(p)), default=0.0)


def is_silent(samples: np.ndarray) -> bool:
    return all(len(p) == 0 or float(np.max(np.abs(p))) < SILENCE_PEAK for p in iter_chunks(samples))


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
    if len(samples) < frame or is_silent(samples):
        return []
    n = len(samples) // frame
    step = frame * max(1, int(CHUNK_S * SAMPLE_RATE) // frame)  # whole frames per piece
    rms = np.concatenate(
        [
            np.sqrt(np.mean(piece.reshape(-1, frame) ** 2, axis=1))
            for piece in iter_chunks(samples, step, stop=n * frame)
        ]
    )
    # Threshold relative to the channel's own loud frames, floored above the noise.
    loud = float(np.percentile(rms, 95))
    threshold = max(loud * 0.1, 10 ** (-45 / 20))
    active = rms > threshold
    regions: list[list[float]] = []
    for i in np.flatnonzero(active).tolist():
        start, end = i * frame_s, (i + 1) * frame_s
        if regions and start - regions[-1][1] <= merge_gap_s:
            regions[-1][1] = end
        else:
            regions.append([start, end])
    return [(round(s, 2), round(e, 2)) for s, e in regions if e - s >= min_speech_s]


def voice_seconds(samples: np.ndarray, enough: float | None = None) -> float:
    """Seconds of speech Silero VAD (bundled with faster-whisper) finds, a minute at a
    time; stops counting once `enough` is reached (a long call costs one piece).

    Unlike `speech_regions` it tells voice from music and noise."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    # No padding and short pauses: measure the voice itself, not the chunks Whisper gets.
    options = VadOptions(min_silence_duration_ms=100, speech_pad_ms=0)
    found = 0.0
    for piece in iter_chunks(samples):
        if len(piece) == 0 or float(np.max(np.abs(piece))) < SILENCE_PEAK:
            continue
        spans = get_speech_timestamps(piece, options, sampling_rate=SAMPLE_RATE)
        found += sum(s["end"] - s["start"] for s in spans) / SAMPLE_RATE
        if enough is not None and found >= enough:
            break
    return found


def pause_windows(
    samples: np.ndarray, window_s: float, search_s: float = 30.0
) -> list[tuple[int, int]]:
    """(start, stop) sample ranges of at most `window_s` covering the channel, each cut at
    the quietest 0.1 s of its last `search_s`, so a cut falls in a pause, not in a word.
    A channel no longer than `window_s` is one window."""
    total, size = len(samples), int(window_s * SAMPLE_RATE)
    search, hop = min(int(search_s * SAMPLE_RATE), size // 2), SAMPLE_RATE // 10
    windows, start = [], 0
    while total - start > size:
        low = start + size - search
        region = next(iter_chunks(samples, search, start=low, stop=low + search))
        energy = np.mean(region[: len(region) // hop * hop].reshape(-1, hop) ** 2, axis=1)
        cut = low + int(np.argmin(energy)) * hop + hop // 2
        windows.append((start, cut))
        start = cut
    windows.append((start, total))
    return windows
