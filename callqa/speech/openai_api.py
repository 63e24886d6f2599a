"""Speech-to-text through an OpenAI-compatible `/audio/transcriptions` endpoint.

Works with OpenAI, Groq, a local faster-whisper-server / speaches, or any server that
speaks the same API. Each channel is sent as 16 kHz mono WAV with
`response_format=verbose_json` and word + segment timestamp granularities.
"""

from __future__ import annotations

import io
import wave
from dataclasses import dataclass

import numpy as np

from callqa.errors import TranscriptionError
from callqa.speech.audio import SAMPLE_RATE, DecodedAudio
from callqa.speech.transcript import ChannelTranscript, Segment, Transcript, Word
from callqa.speech.whisper import transcribe_channels


def wav_bytes(samples: np.ndarray) -> bytes:
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm.tobytes())
    return buffer.getvalue()


def _segments_with_words(payload: dict, channel: int) -> list[Segment]:
    words = [
        Word(
            start=round(float(w["start"]), 2),
            end=round(float(w["end"]), 2),
            word=str(w["word"]).strip(),
        )
        for w in payload.get("words") or []
    ]
    segments = []
    for raw in payload.get("segments") or []:
        start, end = round(float(raw["start"]), 2), round(float(raw["end"]), 2)
        text = str(raw.get("text", "")).strip()
        if not text:
            continue
        inside = [w for w in words if start - 0.01 <= w.start < end + 0.01]
        segments.append(Segment(start=start, end=end, text=text, channel=channel, words=inside))
    return segments


@dataclass
class OpenAITranscriber:
    api_base: str
    api_key: str | None = None
    model: str = "whisper-1"
    language: str | None = "en"
    timeout_s: float = 300.0

    def _error(self, message: str) -> TranscriptionError:
        if self.api_key:
            message = message.replace(self.api_key, "***")
        return TranscriptionError(f"transcription API {self.api_base}: {message}")

    def transcribe_channel(self, samples: np.ndarray, channel: int) -> ChannelTranscript:
        import requests

        data = [
            ("model", self.model),
            ("response_format", "verbose_json"),
            ("timestamp_granularities[]", "word"),
            ("timestamp_granularities[]", "segment"),
        ]
        if self.language:
            data.append(("language", self.language))
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        try:
            response = requests.post(
                f"{self.api_base.rstrip('/')}/audio/transcriptions",
                files={"file": (f"channel-{channel}.wav", wav_bytes(samples), "audio/wav")},
                data=data,
                headers=headers,
                timeout=(10, self.timeout_s),
            )
        except requests.RequestException as exc:
            raise self._error(f"request failed ({exc.__class__.__name__})") from exc
        if response.status_code != 200:
            raise self._error(f"HTTP {response.status_code}: {response.text[:300]}")
        try:
            payload = response.json()
            segments = _segments_with_words(payload, channel)
        except (ValueError, KeyError, TypeError) as exc:
            raise self._error(f"reply is not a verbose_json transcription ({exc})") from exc
        return ChannelTranscript(
            channel=channel, language=payload.get("language"), segments=segments
        )

    @property
    def label(self) -> str:
        return self.model

    def transcribe(self, audio: DecodedAudio) -> Transcript:
        return transcribe_channels(audio, self.model, self.transcribe_channel)
