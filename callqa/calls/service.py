"""The per-call service: every step of a call, defined once.

decode and probe → transcribe → diarize → score → assemble the record → validate it.
The Dagster assets call these steps one at a time and persist each result in the
warehouse in between; `callqa analyze` chains them in one process (`analyze_recording`).
Both pick the speech-to-text backend and the scorer from the call's preset through the
same resources, so an operator's overrides (CALLQA_STT, CALLQA_SCORER, ...) apply to both.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from callqa.calls.backends import DiarizationBackends
from callqa.calls.record import AnalysisRecord, build_record, published_schema
from callqa.config.models import Preset, Tenant
from callqa.errors import AudioError, ScoringError
from callqa.privacy.redaction import redact_attempts, redact_transcript, redactor_for
from callqa.scoring.base import Scorer
from callqa.scoring.outcome import ScoringOutcome
from callqa.scoring.validation import business_rule_violations, schema_errors
from callqa.speech import diarization
from callqa.speech.audio import (
    DEFAULT_MAX_DURATION_S,
    DecodedAudio,
    decode_bytes,
    is_silent,
    voice_seconds,
)
from callqa.speech.base import SpeechToText
from callqa.speech.diarization import DiarizedTranscript
from callqa.speech.transcript import Transcript
from callqa.speech.turns import SpeakerSegmenter
from callqa.speech.whisper import is_stock_phrase

logger = logging.getLogger(__name__)


def decode_recording(
    data: bytes, label: str, max_duration_s: float | None = DEFAULT_MAX_DURATION_S
) -> DecodedAudio:
    """Decode and probe a recording; a recording with no signal at all is bad input, and
    one longer than `max_duration_s` (settings.max_audio_s, CALLQA_MAX_AUDIO_S) is refused.
    Clipping is measured (probe.clipped_share) and logged above a threshold, not failed."""
    decoded = decode_bytes(data, label, max_duration_s)
    if all(is_silent(c) for c in decoded.channels):
        raise AudioError(f"{label}: recording is silent (no signal on any channel)")
    for warning in decoded.probe.warnings:
        logger.warning("%s: %s", label, warning)
    return decoded


def transcribe(decoded: DecodedAudio, stt: SpeechToText) -> tuple[Transcript, float]:
    """Speech-to-text with word timestamps; returns the transcript and the seconds it took."""
    started = time.perf_counter()
    result = stt.transcribe(decoded)
    return result, time.perf_counter() - started


def require_speech(
    decoded: DecodedAudio, transcript: Transcript, label: str, min_speech_s: float = 1.0
) -> float:
    """The speech guard after transcription (the pipeline and `callqa analyze`): a call with
    no speech, or too little to score, fails with one clear line instead of being scored
    on what Whisper invents on a fragment (0.2 s of a word comes back as 'Thank you.').

    Voice is measured with Silero VAD, which tells it from music and noise, and counted
    only up to `min_speech_s` (the preset's speech.min_speech_s; 0 turns the minimum off),
    so a normal call costs one minute of VAD. Returns the voice seconds counted."""
    duration = decoded.probe.duration_s
    if min_speech_s <= 0 and transcript.segments:
        return 0.0
    voice = 0.0
    for channel in decoded.channels:
        voice += voice_seconds(channel, enough=min_speech_s - voice)
        if voice >= min_speech_s:
            break
    if voice == 0:
        raise AudioError(
            f"{label}: no speech found in {duration:.1f} s of audio (voice activity detection "
            "finds no voice: music, tones or noise only)"
        )
    if voice < min_speech_s:
        raise AudioError(
            f"{label}: too little speech to score ({voice:.1f} s; minimum {min_speech_s:.1f} s)"
        )
    if not transcript.segments:
        raise AudioError(
            f"{label}: no speech found in {duration:.1f} s of audio (the speech model heard "
            "no words)"
        )
    if all(is_stock_phrase(s.text) for s in transcript.segments):
        said = ", ".join(sorted({repr(s.text) for s in transcript.segments})[:3])
        raise AudioError(
            f"{label}: too little speech to score (only {said}: what the speech model "
            "writes on noise or a fragment of a word)"
        )
    return round(voice, 2)


def diarize(
    transcript: Transcript,
    tenant: Tenant,
    audio: DecodedAudio | None = None,
    *,
    backend: str = "auto",
    segmenter: SpeakerSegmenter | None = None,
) -> DiarizedTranscript:
    """Operator and customer turns, plus conversation metrics. `backend` is the concrete
    choice (`DiarizationBackends.for_preset`); mono backends need the decoded `audio`."""
    return diarization.diarize(
        transcript,
        audio,
        backend=backend,
        channel_map=tenant.channel_map,
        role_hints=tenant.roles,
        tenant_name=tenant.name,
        segmenter=segmenter,
    )


def score(
    diarized: DiarizedTranscript, preset: Preset, category: str | None, scorer: Scorer
) -> ScoringOutcome:
    """Score against the preset's rubric. The outcome keeps every attempt, valid or not;
    callers record the attempts before `require_valid` raises."""
    return scorer.score(diarized, preset, category)


def require_valid(outcome: ScoringOutcome, label: str) -> None:
    if not outcome.valid:
        raise ScoringError(
            f"{label}: no valid analysis after {len(outcome.attempts)} attempt(s): "
            f"{outcome.last_error}"
        )


def assemble(**fields: Any) -> AnalysisRecord:
    """The published record (`build_record`'s fields); the weighted total is computed there,
    by code. Scorer output that does not fit the record is a scoring error, not a crash."""
    try:
        return build_record(**fields)
    except (KeyError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
        raise ScoringError(f"scorer output does not fit the record: {exc}") from exc


@dataclass(frozen=True)
class RecordProblems:
    schema: list[str]
    rules: list[str]

    @property
    def ok(self) -> bool:
        return not self.schema and not self.rules

    def summary(self) -> str:
        parts = [f"schema: {p}" for p in self.schema] + self.rules
        return "; ".join(parts[:5]) + (f" (+{len(parts) - 5} more)" if len(parts) > 5 else "")


def validate_record(record: dict, preset: Preset) -> RecordProblems:
    """The published JSON schema, then the business rules, on the record as it is stored."""
    scores = record.get("scores", {})
    return RecordProblems(
        schema=schema_errors(record, published_schema()),
        rules=business_rule_violations(
            scores.get("criteria", []),
            preset,
            record.get("transcript", {}).get("segments", []),
            total=scores.get("total", -1),
            patterns=record.get("patterns", []),
        ),
    )


@dataclass
class CallAnalysis:
    record: AnalysisRecord
    outcome: ScoringOutcome
    transcribe_s: float


def analyze_recording(
    data: bytes,
    label: str,
    *,
    tenant: Tenant,
    preset: Preset,
    external_id: str,
    stt: SpeechToText,
    scorer: Scorer,
    diarization_backends: DiarizationBackends | None = None,
    category: str | None = None,
    max_duration_s: float | None = DEFAULT_MAX_DURATION_S,
) -> CallAnalysis:
    """One call end to end in this process (what `callqa analyze` runs)."""
    decoded = decode_recording(data, label, max_duration_s)
    transcript, transcribe_s = transcribe(decoded, stt)
    require_speech(decoded, transcript, label, preset.speech.min_speech_s)
    backends = diarization_backends or DiarizationBackends()
    backend = backends.for_preset(preset.speech, stereo=decoded.is_stereo)
    diarized = diarize(
        transcript, tenant, decoded, backend=backend, segmenter=backends.segmenter(backend)
    )
    redact = redactor_for(tenant)
    if redact:  # as in the assets: no PII reaches the scorer or the record
        diarized = redact_transcript(diarized, redact)
    outcome = score(diarized, preset, category, scorer)
    if redact:
        redact_attempts(outcome.attempts, redact)
    require_valid(outcome, label)
    record = assemble(
        tenant=tenant.id,
        external_id=external_id,
        probe=decoded.probe,
        diarized=diarized,
        outcome=outcome,
        preset=preset,
        category=category,
        redacted=redact is not None,
    )
    problems = validate_record(record.model_dump(mode="json"), preset)
    if not problems.ok:
        raise ScoringError(f"{label}: analysis failed validation: {problems.summary()}")
    return CallAnalysis(record=record, outcome=outcome, transcribe_s=transcribe_s)
