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
from callqa.speech.audio import AudioProbe
from callqa.speech.diarization import ConversationMetrics, DiarizedTranscript

SCHEMA_VERSION = "1.0"
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


class CriterionScore(BaseModel):
    id: str
    name: str
    score: int
    weight: float = Field(description="normalised weight, the weights sum to 1")
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


class ScoringInfo(BaseModel):
    scorer: Literal["rules", "llm"]
    model: str | None
    prompt_version: str
    preset: str
    tokens: TokenUsage
    cost_usd: float = Field(ge=0)
    latency_ms: float = Field(ge=0)
    attempts: int = Field(ge=1)
    valid: bool
    note: str = ""


class AnalysisRecord(BaseModel):
    schema_version: Literal["1.0"] = SCHEMA_VERSION
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
    """Position of the lowest score; among equal scores, the heaviest criterion counts."""
    return min(range(len(criteria)), key=lambda i: (criteria[i]["score"], -criteria[i]["weight"]))


def build_record(
    *,
    tenant: str,
    external_id: str,
    probe: AudioProbe,
    diarized: DiarizedTranscript,
    outcome: ScoringOutcome,
    preset: Preset,
    category: str | None = None,
    operator: str | None = None,
    started_at: datetime | None = None,
) -> AnalysisRecord:
    """Assemble the record from a valid scoring outcome; the total is computed here."""
    if outcome.output is None:
        raise ValueError("build_record needs a valid scoring outcome")
    weights = normalized_weights(preset)
    names = {c.id: c.name for c in preset.criteria}
    by_id = {c.id: c for c in outcome.output.criteria}
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
    return AnalysisRecord(
        call=CallInfo(
            tenant=tenant,
            external_id=external_id,
            category=category,
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
        ),
        metrics=diarized.metrics,
        scores=Scores(
            scale=ScaleOut(min=preset.scale.min, max=preset.scale.max),
            criteria=criteria,
            total=weighted_total({c.id: c.score for c in criteria}, preset),
        ),
        patterns=outcome.output.patterns,
        recommendations=outcome.output.recommendations,
        summary=outcome.output.summary,
        scoring=ScoringInfo(
            scorer=outcome.scorer,
            model=outcome.model,
            prompt_version=outcome.prompt_version,
            preset=preset.id,
            tokens=TokenUsage(
                prompt=prompt_tokens,
                completion=completion_tokens,
                total=prompt_tokens + completion_tokens,
            ),
            cost_usd=outcome.cost_usd,
            latency_ms=outcome.latency_ms,
            attempts=len(outcome.attempts),
            valid=True,
            note=outcome.note,
        ),
    )


def generated_schema() -> dict:
    schema = AnalysisRecord.model_json_schema(mode="serialization")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://github.com/callqa/callqa/schemas/analysis.schema.json"
    return schema


@cache
def published_schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())
