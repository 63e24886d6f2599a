"""Who spoke when with pyannote.audio 4.x (the `pyannote` diarization backend).

pyannote.audio and torch are not part of the default install (`./dev pyannote` adds them,
docs/pyannote.md). The pipeline loads from a local folder (CALLQA_PYANNOTE_MODEL: e.g.
pyannote/speaker-diarization-community-1 downloaded once) or, with CALLQA_PYANNOTE_TOKEN,
from the Hugging Face hub. Audio goes in as a decoded waveform, so pyannote's own file
decoder (torchcodec + FFmpeg) is never needed. pyannote's usage telemetry is switched off:
call recordings are customer data, and their durations are nobody else's business.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from callqa.errors import ConfigError
from callqa.settings import PYANNOTE_MODEL_ENV, PYANNOTE_TOKEN_ENV
from callqa.speech.turns import SpeakerSegmentation, SpeakerTurn

SAMPLE_RATE = 16_000
HUB_MODEL = "pyannote/speaker-diarization-community-1"
INSTALL_HINT = "install with ./dev pyannote (docs/pyannote.md)"
MODEL_HINT = (
    f"download {HUB_MODEL} to a folder and set {PYANNOTE_MODEL_ENV} to it, "
    f"or set {PYANNOTE_TOKEN_ENV} to a Hugging Face token that may read it"
)
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


class PyannoteError(ConfigError):
    """pyannote.audio is not installed, or its pipeline cannot be found or loaded."""


@dataclass(frozen=True)
class ModelSource:
    """Where the pipeline comes from (shown in metadata and errors; never the token)."""

    checkpoint: str  # a local folder / config.yaml (absolute), or a hub id
    local: bool


def resolve_source(model: str | None, token: str | None) -> ModelSource:
    """The pipeline to load: `model` as a local path when it exists, else as a hub id when a
    token is set; with neither, the community pipeline from the hub (token needed)."""
    if model:
        path = Path(model).expanduser()
        if path.is_dir():
            if not (path / "config.yaml").is_file():
                raise PyannoteError(
                    f"pyannote model not found at {path}: the folder has no config.yaml; "
                    f"{MODEL_HINT}; {INSTALL_HINT}"
                )
            return ModelSource(str(path.resolve()), local=True)
        if path.is_file():
            return ModelSource(str(path.resolve()), local=True)
        if token and _HUB_ID.fullmatch(model):
            return ModelSource(model, local=False)
        raise PyannoteError(f"pyannote model not found at {path}: {MODEL_HINT}; {INSTALL_HINT}")
    if token:
        return ModelSource(HUB_MODEL, local=False)
    raise PyannoteError(f"pyannote model not set: {MODEL_HINT}; {INSTALL_HINT}")


def _count(name: str, value: int | None) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise PyannoteError(f"pyannote {name}={value!r}: expected a whole number of 1 or more")
    return value


class PyannoteSegmenter:
    """Mono 16 kHz samples in, anonymous speaker turns out, from a pyannote pipeline.

    `model`/`token` default to CALLQA_PYANNOTE_MODEL / CALLQA_PYANNOTE_TOKEN. The token is
    kept only to download; it never reaches logs, errors or `details`. `exclusive` (default)
    takes pyannote's exclusive diarization, one speaker at a time, which is what words are
    attached to; False keeps overlapping speech as overlapping turns. `threads`: torch CPU
    threads (default: torch's own, one per core).
    """

    method = "pyannote"

    def __init__(
        self,
        model: str | None = None,
        token: str | None = None,
        *,
        num_speakers: int | None = None,
        min_speakers: int | None = None,
        max_speakers: int | None = None,
        exclusive: bool = True,
        device: str = "cpu",
        threads: int | None = None,
    ) -> None:
        model = model if model is not None else _env(PYANNOTE_MODEL_ENV)
        self._token = token if token is not None else _env(PYANNOTE_TOKEN_ENV)
        self.source = resolve_source(model, self._token)
        if not self.source.local and not (self._token or "").startswith("hf_"):
            # pyannote hands other tokens to its paid API, not to the hub.
            raise PyannoteError(
                f"{PYANNOTE_TOKEN_ENV} is not a Hugging Face access token (those start "
                f"with hf_); {MODEL_HINT}"
            )
        self.num_speakers = _count("num_speakers", num_speakers)
        self.min_speakers = _count("min_speakers", min_speakers)
        self.max_speakers = _count("max_speakers", max_speakers)
        if min_speakers and max_speakers and min_speakers > max_speakers:
            raise PyannoteError(
                f"pyannote min_speakers={min_speakers} is above max_speakers={max_speakers}"
            )
        self.exclusive = exclusive
        self.device = device
        self.threads = _count("threads", threads)

    def load(self):
        """The pipeline, loaded once per process (model, device) and shared."""
        return _load_pipeline(self.source, self._token, self.device)

    def segment(self, samples: np.ndarray) -> SpeakerSegmentation:
        samples = np.asarray(samples)
        if samples.ndim != 1:
            raise PyannoteError(f"pyannote expects mono samples, got shape {samples.shape}")
        duration = len(samples) / SAMPLE_RATE
        details = {
            "model": self.source.checkpoint,
            "turns_from": "exclusive" if self.exclusive else "overlapping",
        }
        if len(samples) == 0:
            return SpeakerSegmentation([], 0, self.method, details)
        pipeline = self.load()  # first: a missing pyannote/torch is reported in one line
        import torch

        if self.threads:
            # torch's intra-op threads, process-wide: calls sharing this host's cores should
            # not each spin up a thread per core (Settings.effective_whisper_threads).
            torch.set_num_threads(self.threads)
        started = time.perf_counter()
        waveform = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))[None]
        requested = {
            k: v
            for k, v in (
                ("num_speakers", self.num_speakers),
                ("min_speakers", self.min_speakers),
                ("max_speakers", self.max_speakers),
            )
            if v is not None
        }
        with warnings.catch_warnings():
            # Silent stretches in a window make the embedding pooling warn (std of one frame).
            warnings.filterwarnings("ignore", message=r"std\(\): degrees of freedom")
            output = pipeline({"waveform": waveform, "sample_rate": SAMPLE_RATE}, **requested)
        turns = turns_of(_annotation(output, self.exclusive), duration)
        return SpeakerSegmentation(
            turns=turns,
            speakers=len({t.speaker for t in turns}),
            method=self.method,
            details={
                **details,
                **requested,
                "pyannote_s": round(time.perf_counter() - started, 3),
            },
        )


def turns_of(annotation, duration: float) -> list[SpeakerTurn]:
    """pyannote's speech turns, clipped to the recording (its windows are padded past the
    end), sorted, with speaker ids 0.. numbered by first appearance."""
    raw = []
    for segment, _track, label in annotation.itertracks(yield_label=True):
        start = round(max(0.0, float(segment.start)), 3)
        end = round(min(duration, float(segment.end)), 3)
        if end > start:
            raw.append((start, end, str(label)))
    raw.sort(key=lambda r: (r[0], r[1], r[2]))
    ids: dict[str, int] = {}
    return [SpeakerTurn(s, e, ids.setdefault(label, len(ids))) for s, e, label in raw]


def _annotation(output, exclusive: bool):
    # 4.x returns DiarizeOutput; a pipeline configured with legacy=True (3.x behaviour)
    # returns the Annotation itself.
    if hasattr(output, "speaker_diarization"):
        return output.exclusive_speaker_diarization if exclusive else output.speaker_diarization
    return output


def _env(name: str) -> str | None:
    return os.environ.get(name, "").strip() or None


_lock = threading.Lock()
_pipelines: dict[tuple[ModelSource, str], object] = {}


def _load_pipeline(source: ModelSource, token: str | None, device: str):
    with _lock:
        key = (source, device)
        if key not in _pipelines:
            _pipelines[key] = _build(source, token, device)
        return _pipelines[key]


def _import_pyannote():
    # Usage telemetry off before anything of pyannote runs (it reads this on every call).
    os.environ["PYANNOTE_METRICS_ENABLED"] = "false"
    try:
        with warnings.catch_warnings():
            # pyannote warns at import when torchcodec cannot load FFmpeg: callqa hands it
            # decoded audio, so its file decoder is never used.
            warnings.filterwarnings("ignore", message=r"(?s).*torchcodec")
            import torch
            from pyannote.audio import Pipeline
    except (ImportError, OSError) as exc:  # OSError: a torch library that does not load
        detail = " ".join(str(exc).split())[:200]
        raise PyannoteError(
            f"pyannote.audio is not installed or does not import ({exc.__class__.__name__}: "
            f"{detail}); {INSTALL_HINT}"
        ) from None
    return torch, Pipeline


def _build(source: ModelSource, token: str | None, device: str):
    torch, Pipeline = _import_pyannote()
    # pyannote prints its own advice on download errors; ours is the one line below.
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            # A local config may still name hub models (3.x pipelines do): the token goes along.
            pipeline = Pipeline.from_pretrained(source.checkpoint, token=token)
    except Exception as exc:
        raise PyannoteError(_load_error(source, exc, token)) from None
    if pipeline is None:
        raise PyannoteError(
            f"pyannote model {source.checkpoint}: nothing found to load; {MODEL_HINT}"
        )
    if device != "cpu":
        try:
            pipeline.to(torch.device(device))
        except Exception as exc:
            raise PyannoteError(f"pyannote device {device!r}: {exc}") from None
    return pipeline


def _load_error(source: ModelSource, exc: Exception, token: str | None) -> str:
    name = exc.__class__.__name__
    kinds = {c.__name__ for c in type(exc).__mro__}
    where = f"pyannote model {source.checkpoint}"
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if "GatedRepoError" in kinds or status in (401, 403):
        return (
            f"{where} is gated: accept its conditions at https://hf.co/{source.checkpoint} "
            f"with the account of {PYANNOTE_TOKEN_ENV}, or {MODEL_HINT}"
        )
    # Before "not found": LocalEntryNotFoundError is an EntryNotFoundError too.
    if kinds & {
        "LocalEntryNotFoundError",
        "OfflineModeIsEnabled",
        "ConnectError",
        "ConnectionError",
    }:
        return f"{where} could not be downloaded (offline?): {MODEL_HINT}"
    if kinds & {"RepositoryNotFoundError", "EntryNotFoundError", "RemoteEntryNotFoundError"}:
        return f"{where} not found on the Hugging Face hub: {MODEL_HINT}"
    detail = " ".join(str(exc).split())[:300]
    if token:
        detail = detail.replace(token, "***")
    return f"{where} could not be loaded ({name}: {detail}); {MODEL_HINT}"
