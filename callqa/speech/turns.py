"""Who spoke when: the output every speaker-segmentation backend shares.

A backend (the offline VAD + voice-embedding clusterer, pyannote) looks at mono audio only
and says which anonymous speaker talks when; words are attached to these turns and roles
(operator, customer) are decided afterwards, from what the speakers say.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class SpeakerTurn:
    start: float  # seconds from the start of the recording
    end: float
    speaker: int  # 0..speakers-1, numbered by first appearance


@dataclass(frozen=True)
class SpeakerSegmentation:
    turns: list[SpeakerTurn]  # sorted by start; turns of different speakers may overlap
    speakers: int  # how many distinct speakers the backend found (0 when no speech)
    method: str  # e.g. "vad-resemblyzer", "pyannote"
    details: dict = field(default_factory=dict)  # backend figures for metadata (JSON-safe)


class SpeakerSegmenter(Protocol):
    """Mono 16 kHz float32 samples in, anonymous speaker turns out."""

    method: str

    def segment(self, samples: np.ndarray) -> SpeakerSegmentation: ...
