"""The per-call service: every step of a call, defined once.

decode and probe → transcribe → diarize → score → assemble the record → validate it.
The Dagster assets call these steps one at a time and persist each result in the
warehouse in between; `callqa analyze` chains them in one process (`analyze_recording`).
Both pick the speech-to-text backend and the scorer from the call's preset through the
same resources, so an operator's overrides (CALLQA_STT, CALLQA_SCORER, ...) apply to both.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from callqa.calls.record import AnalysisRecord, build_record, published_schema
from callqa.config.models import Preset, Tenant
from callqa.errors import AudioError, ScoringError
from callqa.privacy.redaction import redact_attempts, redact_transcript, redactor_for
from callqa.scoring.base import Scorer
from callqa.scoring.outcome import ScoringOutcome
from callqa.scoring.validation import business_rule_violations, schema_errors
from callqa.speech.audio import DecodedAudio, decode_bytes, is_silent
from callqa.speech.base import SpeechToText
from callqa.speech.diarization import DiarizedTranscript, diarizer_for
from callqa.speech.transcript import Transcript


def decode_recording(data: bytes, label: str) -> DecodedAudio:
    """Decode and probe a recording; a recording with no signal at all is bad input."""
    decoded = decode_bytes(data, label)
    if all(is_silent(c) for c in decoded.channels):
        raise AudioError(f"{label}: recording is silent (no signal on any channel)")
    return decoded


def transcribe(decoded: DecodedAudio, stt: SpeechToText) -> tuple[Transcript, float]:
    """Speech-to-text with word timestamps; returns the transcript and the seconds it took."""
    started = time.perf_counter()
    result = stt.transcribe(decoded)
    return result, time.perf_counter() - started


def diarize(transcript: Transcript, tenant: Tenant) -> DiarizedTranscript:
    """Operator and customer turns, plus conversation metrics."""
    return diarizer_for(transcript, tenant.channel_map).diarize(transcript)


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
    category: str | None = None,
) -> CallAnalysis:
    """One call end to end in this process (what `callqa analyze` runs)."""
    decoded = decode_recording(data, label)
    transcript, transcribe_s = transcribe(decoded, stt)
    if not transcript.segments:
        raise AudioError(f"{label}: no speech found in {decoded.probe.duration_s:.1f} s of audio")
    diarized = diarize(transcript, tenant)
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
