"""The speech interfaces: a backend is chosen per call from its preset, not per process."""

from __future__ import annotations

from typing import Protocol

from callqa.speech.audio import DecodedAudio
from callqa.speech.diarization import DiarizedTranscript
from callqa.speech.transcript import Transcript


class SpeechToText(Protocol):
    """Turns a decoded recording into a per-channel transcript with word timestamps."""

    @property
    def label(self) -> str:
        """Provider and model, as stored with the transcript (e.g. `whisper:tiny.en`)."""
        ...

    def transcribe(self, audio: DecodedAudio) -> Transcript: ...


class Diarizer(Protocol):
    """Splits a transcript into operator and customer turns. The audio is what mono
    backends segment by voice; the stereo channel map and the pause heuristic ignore it."""

    method: str

    def diarize(self, transcript: Transcript, audio: DecodedAudio) -> DiarizedTranscript: ...
