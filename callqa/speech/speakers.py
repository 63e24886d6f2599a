"""Offline speaker segmentation of mono calls: Silero VAD, voice embeddings, clustering.

Runs on CPU with what is installed (Silero VAD as shipped in faster-whisper, resemblyzer's
voice encoder and the clustering in NumPy), with no torch, no token and no download:

1. speech regions from Silero VAD, split at pauses of 0.3 s so turns rarely share a region;
2. sliding windows (1.5 s, hop 0.75 s) inside each region; a shorter region is one window,
   its speech looped to the window length;
3. one voice embedding per window (volume normalised as resemblyzer's training data was),
   embedded in batches so memory stays bounded on long calls;
4. spectral clustering of the pruned cosine affinity; the speaker count from its eigenvalues
   (see `cluster`), then windows moved to their nearest voice centroid;
5. per-frame (20 ms) soft votes of the windows covering a frame, a majority (median) filter,
   and turns from runs of one label inside speech.

One label per frame: overlapping speech is given to one speaker (a miss for the other).
"""

from __future__ import annotations

import time

import numpy as np

from callqa.speech.turns import SpeakerSegmentation, SpeakerTurn

SAMPLE_RATE = 16_000
FRAME_S = 0.02  # resolution of the output turns
# Spectral clustering: each window keeps its nearest 30 % as neighbours; one speaker when
# the normalised affinity's second eigenvalue is below 0.66 (demo calls: two-speaker mixes
# 0.70-0.89, one voice over 30+ windows 0.49-0.63; one voice over few windows is less clear).
KEEP_NEIGHBOURS = 0.3
ONE_SPEAKER_LAMBDA2 = 0.66
MIN_WINDOWS_TO_SPLIT = 4  # fewer windows (about 3 s of speech) are taken as one speaker
# A third (fourth...) speaker only with at least this many windows per speaker: the tail of
# the eigenvalues of a small graph is noise (9 windows of one voice "showed" 4 speakers).
WINDOWS_PER_EXTRA_SPEAKER = 6
MEDIAN_FRAMES = 11  # ~0.2 s: removes label flicker shorter than a syllable
MIN_PEAK = 0.002  # digital silence (as callqa.speech.audio.SILENCE_PEAK)


def _vad_options():
    from faster_whisper.vad import VadOptions

    # faster-whisper's defaults (2 s silence, 0.4 s pad) join whole exchanges into one
    # region and pad them into the other party's turn. Demo-call turns are 0.3-0.8 s apart:
    # splitting at 0.3 s pauses scored best (DER 0.077 mean; 0.2 s: 0.095, 0.5 s: 0.084,
    # 0.7 s: 0.18), and wider padding only added false alarm.
    return VadOptions(
        threshold=0.5, min_speech_duration_ms=150, min_silence_duration_ms=300, speech_pad_ms=30
    )


def voice_regions(samples: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) sample indices of speech, from Silero VAD."""
    from faster_whisper.vad import get_speech_timestamps

    found = get_speech_timestamps(samples, _vad_options(), sampling_rate=SAMPLE_RATE)
    return [(int(r["start"]), int(r["end"])) for r in found if r["end"] > r["start"]]


def sliding_windows(regions: list[tuple[int, int]], window: int, hop: int) -> list[tuple[int, int]]:
    """Windows of `window` samples every `hop` inside each region, the last flush with its end."""
    out = []
    for start, end in regions:
        if end - start <= window:
            out.append((start, end))
            continue
        for s in range(start, end - window, hop):
            out.append((s, s + window))
        out.append((end - window, end))
    return out


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _filled(clip: np.ndarray, length: int) -> np.ndarray:
    """Short speech repeated to `length` samples.

    resemblyzer zero-pads anything shorter than 1.6 s; an embedding of mostly padding drifts
    towards one side (measured on the demo calls: nearly every sub-second turn landed in the
    same cluster, whoever spoke), while the looped voice keeps its own character.
    """
    if len(clip) >= length or len(clip) == 0:
        return clip
    return np.tile(clip, -(-length // len(clip)))[:length]


def affinity(embeddings: np.ndarray, keep: float = KEEP_NEIGHBOURS) -> np.ndarray:
    """Cosine affinity with each row pruned to its nearest `keep` share, then symmetrised.

    Pruning (Wang et al. 2018, "Speaker diarization with LSTM") keeps an outlier window or
    a slow drift within one voice from bridging two speakers.
    """
    a = np.clip(embeddings @ embeddings.T, 0.0, None)
    n = len(a)
    kth = max(2, int(np.ceil(keep * n)))
    threshold = -np.sort(-a, axis=1)[:, kth - 1 : kth]
    a = np.where(a >= threshold, a, 0.01 * a)
    return np.maximum(a, a.T)


def cluster(
    embeddings: np.ndarray, min_speakers: int, max_speakers: int
) -> tuple[np.ndarray, dict]:
    """Labels 0..k-1 per window (spectral clustering), and the figures k was chosen on.

    k is 1 when the second eigenvalue of the normalised affinity is small (one voice's
    windows form one well-connected graph); otherwise the k >= 2 after which the eigenvalues
    drop most, a larger k only when its drop is clearly (1.5x) the larger.
    """
    n = len(embeddings)
    max_k = min(max_speakers, n - 1)
    if n < MIN_WINDOWS_TO_SPLIT or max_k < 2:
        if min_speakers < 2 or n < min_speakers:
            return np.zeros(n, dtype=int), {}
        max_k = min(max_speakers, n)  # a fixed count was asked for: honour it
    a = affinity(embeddings)
    degree = a.sum(axis=1)
    normalised = a / np.sqrt(np.outer(degree, degree))
    values, vectors = np.linalg.eigh(normalised)
    values, vectors = values[::-1], vectors[:, ::-1]
    figures: dict = {"eigenvalues": [round(float(v), 3) for v in values[: max_k + 1]]}
    if min_speakers <= 1 and (len(values) < 2 or values[1] < ONE_SPEAKER_LAMBDA2):
        return np.zeros(n, dtype=int), figures
    k = max(2, min_speakers)
    for candidate in range(k + 1, min(max_k, n // WINDOWS_PER_EXTRA_SPEAKER) + 1):
        gap = values[candidate - 1] - values[candidate] if candidate < n else 0.0
        if gap > 1.5 * (values[k - 1] - values[k]):
            k = candidate
    rows = _normalise(vectors[:, :k])
    labels = _refine(embeddings, _kmeans(rows, k))
    centroids = _centroids(embeddings, labels)
    cos = centroids @ centroids.T
    figures["closest_centroids_cos"] = round(float(np.max(cos[~np.eye(len(cos), dtype=bool)])), 3)
    return labels, figures


def _kmeans(rows: np.ndarray, k: int, rounds: int = 50) -> np.ndarray:
    """Labels 0..k-1 by Lloyd's k-means from farthest-point seeds (deterministic).

    The rows are the spectral embedding, where speakers are compact and far apart, so one
    well-seeded run does; scikit-learn's KMeans gave the same labels on the demo calls but
    cost more (importing it and its ten restarts) than the rest of the clustering together.
    """
    seeds = [int(np.argmax(np.linalg.norm(rows - rows.mean(0), axis=1)))]
    while len(seeds) < k:
        nearest = np.min(np.linalg.norm(rows[:, None] - rows[seeds][None], axis=2), axis=1)
        seeds.append(int(np.argmax(nearest)))
    centres = rows[seeds]
    labels = np.full(len(rows), -1)
    for _ in range(rounds):
        new = np.argmin(np.linalg.norm(rows[:, None] - centres[None], axis=2), axis=1)
        if np.array_equal(new, labels):
            break
        labels = new
        centres = np.stack(
            [rows[labels == c].mean(0) if (labels == c).any() else centres[c] for c in range(k)]
        )
    return np.unique(labels, return_inverse=True)[1]


def _centroids(embeddings: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return _normalise(np.stack([embeddings[labels == c].mean(0) for c in range(labels.max() + 1)]))


def _refine(embeddings: np.ndarray, labels: np.ndarray, rounds: int = 5) -> np.ndarray:
    """Move windows to their nearest centroid in embedding space (spherical k-means rounds):
    the spectral split decides the groups, the voices themselves settle the borderline
    windows (on the demo calls this took one call's DER from 0.18 to 0.14)."""
    k = int(labels.max()) + 1
    for _ in range(rounds):
        new = np.argmax(embeddings @ _centroids(embeddings, labels).T, axis=1)
        if np.array_equal(new, labels) or len(np.unique(new)) < k:
            break
        labels = new
    return labels


def _median(labels: np.ndarray, width: int) -> np.ndarray:
    """Majority label in a sliding window (a median filter generalised to many labels)."""
    if len(labels) < 3 or width < 3:
        return labels
    k = int(labels.max()) + 1
    counts = np.zeros((len(labels), k))
    counts[np.arange(len(labels)), labels] = 1
    kernel = np.ones(width)
    smooth = np.stack([np.convolve(counts[:, c], kernel, mode="same") for c in range(k)], 1)
    return np.argmax(smooth, axis=1)


class EmbeddingSegmenter:
    """Anonymous speaker turns of a mono recording (SpeakerSegmenter protocol)."""

    method = "vad-resemblyzer"

    def __init__(
        self,
        num_speakers: int | None = None,
        min_speakers: int = 1,
        max_speakers: int = 4,
        window_s: float = 1.5,
        hop_s: float = 0.75,
        batch_size: int = 64,
    ) -> None:
        if num_speakers is not None:
            if num_speakers < 1:
                raise ValueError(f"num_speakers must be at least 1, got {num_speakers}")
            min_speakers = max_speakers = num_speakers
        if not 1 <= min_speakers <= max_speakers:
            raise ValueError(
                f"need 1 <= min_speakers <= max_speakers, got {min_speakers}, {max_speakers}"
            )
        if not 0 < hop_s <= window_s:
            raise ValueError(f"need 0 < hop_s <= window_s, got hop {hop_s}, window {window_s}")
        self.min_speakers = min_speakers
        self.max_speakers = max_speakers
        self.window = int(window_s * SAMPLE_RATE)
        self.hop = int(hop_s * SAMPLE_RATE)
        self.batch_size = batch_size

    def segment(self, samples: np.ndarray) -> SpeakerSegmentation:
        from threadpoolctl import threadpool_limits

        from callqa.speech.voice_encoder import VoiceEncoder, normalize_volume

        began = time.perf_counter()
        audio = np.asarray(samples, dtype=np.float32)
        if audio.ndim != 1:
            raise ValueError(f"segment: expected mono samples (1-D), got shape {audio.shape}")
        duration = len(audio) / SAMPLE_RATE
        details: dict = {"duration_s": round(duration, 2), "window_s": self.window / SAMPLE_RATE}
        silent = len(audio) == 0 or float(np.max(np.abs(audio))) < MIN_PEAK
        regions = [] if silent else voice_regions(audio)
        details["speech_s"] = round(sum(e - s for s, e in regions) / SAMPLE_RATE, 2)
        details["regions"] = len(regions)
        windows = sliding_windows(regions, self.window, self.hop)
        details["windows"] = len(windows)
        if not windows:
            details["seconds"] = round(time.perf_counter() - began, 3)
            return SpeakerSegmentation(turns=[], speakers=0, method=self.method, details=details)

        encoder = VoiceEncoder.load()
        # Clips are prepared one batch at a time: an hour of audio is ~5,000 windows, and
        # only their 256-float embeddings need to stay in memory.
        parts = []
        # The LSTM's matrices are small (64x256 @ 256x1024 per step): BLAS threads cost more
        # in hand-offs than they save, and on a busy 2-core host made a 5-minute call take
        # 5-38 s instead of 3 s.
        with threadpool_limits(limits=1, user_api="blas"):
            for first in range(0, len(windows), self.batch_size):
                clips = [
                    _filled(normalize_volume(audio[s:e]), self.window)
                    for s, e in windows[first : first + self.batch_size]
                ]
                parts.append(encoder.embed_batch(clips, batch_size=self.batch_size))
        embeddings = np.concatenate(parts)
        labels, figures = cluster(embeddings, self.min_speakers, self.max_speakers)
        details.update(figures)
        turns = self._turns(regions, windows, embeddings, labels, len(audio))
        speakers = len({t.speaker for t in turns})
        details["speakers_estimated"] = speakers
        details["seconds"] = round(time.perf_counter() - began, 3)
        return SpeakerSegmentation(
            turns=turns, speakers=speakers, method=self.method, details=details
        )

    def _turns(
        self,
        regions: list[tuple[int, int]],
        windows: list[tuple[int, int]],
        embeddings: np.ndarray,
        labels: np.ndarray,
        n_samples: int,
    ) -> list[SpeakerTurn]:
        frame = int(FRAME_S * SAMPLE_RATE)
        n_frames = -(-n_samples // frame)
        centroids = _centroids(embeddings, labels)
        k = len(centroids)
        # Soft votes: each window adds its similarity to every centroid over the frames it
        # covers, so a frame between two windows goes to the voice both lean towards.
        votes = np.zeros((n_frames, k))
        scores = embeddings @ centroids.T
        for (start, end), score in zip(windows, scores, strict=True):
            votes[start // frame : -(-end // frame)] += score
        raw: list[tuple[int, int, int]] = []  # (first frame, last frame + 1, label)
        for start, end in regions:
            a, b = start // frame, max(start // frame + 1, -(-end // frame))
            region_labels = _median(np.argmax(votes[a:b], axis=1), MEDIAN_FRAMES)
            changes = np.flatnonzero(np.diff(region_labels)) + 1
            for lo, hi in zip(np.r_[0, changes], np.r_[changes, len(region_labels)], strict=True):
                raw.append((a + int(lo), a + int(hi), int(region_labels[lo])))
        # Speakers numbered by first appearance.
        order: dict[int, int] = {}
        turns = []
        for lo, hi, label in raw:
            speaker = order.setdefault(label, len(order))
            start_s = round(lo * FRAME_S, 2)
            end_s = round(min(hi * frame, n_samples) / SAMPLE_RATE, 2)
            turns.append(SpeakerTurn(start=start_s, end=end_s, speaker=speaker))
        return turns
