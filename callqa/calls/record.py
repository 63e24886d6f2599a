"""The analysis record: the published, JSON-schema-validated result for one call.

`callqa/schemas/analysis.schema.json` is generated from `AnalysisRecord`
(`callqa schema --write`); a test keeps the two in step.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from callqa.config.models import Preset, Role
from callqa.scoring.outcome import ScoringOutcome
from callqa.scoring.output import Evidence, Pattern
from callqa.scoring.rubric import normalized_weights, weighted_total
from callqa.scoring.validation import evidence_tally
from callqa.speech.audio import AudioProbe
from callqa.speech.diarization import ConversationMetrics, DiarizedTranscript
from callqa.speech.quality import speech_warnings

# 2.0: N/A criteria (score null), evidence and patterns name their speaker, scoring info
# records the A/B variant, evidence verification, redaction and whether cost is known.
# 2.1: the transcript carries its speech warnings (a role that never spoke, ...).
SCHEMA_VERSION = "2.1"
SCHEMA_PATH = Path(__file__).parents[1] / "schemas" / "analysis.schema.json"


class AudioInfo(BaseModel):
    sha256: str
    duration_s: float
    channels: int
    sample_rate: int
    codec: str


class CallInfo(BaseModel):
    tenant: str
    external_id: str
    category: str | None = None
    category_source: Literal["crm", "classified", "default"] = Field(
        "crm", description="crm: given with the call; classified: from the transcript"
    )
    operator: str | None = None
    started_at: datetime | None = None
    audio: AudioInfo


class TranscriptSegment(BaseModel):
    start: float = Field(ge=0, description="seconds")
    end: float = Field(ge=0, description="seconds")
    speaker: Role
    text: str


class TranscriptOut(BaseModel):
    language: str | None
    diarization: str
    segments: list[TranscriptSegment]
    warnings: list[str] = Field(
        default_factory=list,
        description="caveats on the speech the scores rest on (e.g. a role that never "
        "speaks); the summary opens with them",
    )


class CriterionScore(BaseModel):
    id: str
    name: str
    score: int | None = Field(description="null = N/A: left out of the total")
    weight: float = Field(
        description="normalised weight among the criteria that apply (they sum to 1); 0 if N/A"
    )
    rationale: str
    evidence: list[Evidence]


class ScaleOut(BaseModel):
    min: int
    max: int


class Scores(BaseModel):
    scale: ScaleOut
    criteria: list[CriterionScore]
    total: float = Field(ge=0, le=100, description="weighted total computed by code, 0-100")


class TokenUsage(BaseModel):
    prompt: int = Field(ge=0)
    completion: int = Field(ge=0)
    total: int = Field(ge=0)


class EvidenceCheck(BaseModel):
    quotes: int = Field(ge=0, description="evidence and pattern quotes checked")
    verified: int = Field(
        ge=0,
        description="quotes found, as whole words, said by the cited speaker near the cited time",
    )


class ScoringInfo(BaseModel):
    scorer: Literal["rules", "llm"]
    model: str | None
    prompt_version: str
    preset: str
    variant: str = Field("control", description="A/B variant of the preset, 'control' if none")
    tokens: TokenUsage
    cost_usd: float = Field(ge=0)
    cost_known: bool = Field(
        True, description="false: a model without a price (cost_usd then counts nothing for it)"
    )
    evidence: EvidenceCheck = EvidenceCheck(quotes=0, verified=0)
    redacted: bool = Field(False, description="PII was masked in the transcript before scoring")
    latency_ms: float = Field(ge=0)
    attempts: int = Field(ge=1)
    valid: bool
    note: str = ""


class AnalysisRecord(BaseModel):
    # Records stored before 2.1 still load (readers show what they have); every new
    # record is 2.0.
    schema_version: Literal["1.0", "2.0", "2.1"] = SCHEMA_VERSION
    call: CallInfo
    transcript: TranscriptOut
    metrics: ConversationMetrics
    scores: Scores
    patterns: list[Pattern]
    recommendations: list[str]
    summary: str
    scoring: ScoringInfo

    @property
    def weakest(self) -> CriterionScore:
        return self.scores.criteria[weakest_index([c.model_dump() for c in self.scores.criteria])]


def weakest_index(criteria: list[dict]) -> int:
    """Position of the lowest score; among equal scores, the heaviest criterion counts.
    N/A criteria are never the weakest."""
    scored = [i for i, c in enumerate(criteria) if c["score"] is not None] or [0]
    return min(scored, key=lambda i: (criteria[i]["score"], -criteria[i]["weight"]))


def build_record(
    *,
    tenant: str,
    external_id: str,
    probe: AudioProbe,
    diarized: DiarizedTranscript,
    outcome: ScoringOutcome,
    preset: Preset,
    category: str | None = None,
    category_source: str = "crm",
    operator: str | None = None,
    started_at: datetime | None = None,
    variant: str = "control",
    redacted: bool = False,
) -> AnalysisRecord:
    """Assemble the record from a valid scoring outcome; the total is computed here."""
    if outcome.output is None:
        raise ValueError("build_record needs a valid scoring outcome")
    names = {c.id: c.name for c in preset.criteria}
    by_id = {c.id: c for c in outcome.output.criteria}
    weights = normalized_weights(preset, {cid: r.score for cid, r in by_id.items()})
    criteria = [
        CriterionScore(
            id=cid,
            name=names[cid],
            score=by_id[cid].score,
            weight=round(weights[cid], 4),
            rationale=by_id[cid].rationale,
            evidence=by_id[cid].evidence,
        )
        for cid in preset.criterion_ids
    ]
    prompt_tokens, completion_tokens = outcome.prompt_tokens, outcome.completion_tokens
    warnings = speech_warnings(diarized)
    tally = evidence_tally(
        [c.model_dump() for c in outcome.output.criteria],
        [p.model_dump() for p in outcome.output.patterns],
        diarized.segments,
    )
    return AnalysisRecord(
        call=CallInfo(
            tenant=tenant,
            external_id=external_id,
            category=category,
            category_source=category_source,
            operator=operator,
            started_at=started_at,
            audio=AudioInfo(
                sha256=probe.sha256,
                duration_s=probe.duration_s,
                channels=probe.channels,
                sample_rate=probe.sample_rate,
                codec=probe.codec,
            ),
        ),
        transcript=TranscriptOut(
            language=diarized.language,
            diarization=diarized.method,
            segments=[
                TranscriptSegment(start=s.start, end=s.end, speaker=s.speaker, text=s.text)
                for s in diarized.segments
            ],
            warnings=warnings,
        ),
        metrics=diarized.metrics,
        scores=Scores(
            scale=ScaleOut(min=preset.scale.min, max=preset.scale.max),
            criteria=criteria,
            total=weighted_total({c.id: c.score for c in criteria}, preset),
        ),
        patterns=outcome.output.patterns,
        recommendations=outcome.output.recommendations,
        summary=_with_caveats(outcome.output.summary, warnings),
        scoring=ScoringInfo(
            scorer=outcome.scorer,
            model=outcome.model,
            prompt_version=outcome.prompt_version,
            preset=preset.id,
            variant=variant,
            tokens=TokenUsage(
                prompt=prompt_tokens,
                completion=completion_tokens,
                total=prompt_tokens + completion_tokens,
            ),
            cost_usd=outcome.cost_usd,
            cost_known=outcome.cost_known,
            evidence=EvidenceCheck(quotes=tally.quotes, verified=tally.verified),
            redacted=redacted,
            latency_ms=outcome.latency_ms,
            attempts=len(outcome.attempts),
            valid=True,
            note=outcome.note,
        ),
    )


def _with_caveats(summary: str, warnings: list[str]) -> str:
    """The summary a manager reads in the CRM card: a score resting on a one-sided call
    says so first."""
    if not warnings:
        return summary
    caveats = "; ".join(w[0].upper() + w[1:] for w in warnings)
    return f"Caution: {caveats}. {summary}"


def generated_schema() -> dict:
    schema = AnalysisRecord.model_json_schema(mode="serialization")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://github.com/callqa/callqa/schemas/analysis.schema.json"
    return schema


@cache
def published_schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())
