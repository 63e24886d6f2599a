"""What a scorer returns (rules or LLM), and the JSON schema the LLM must follow."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from callqa.config.models import Preset


class Evidence(BaseModel):
    model_config = ConfigDict(extra="forbid")
    quote: str = Field(min_length=1, description="verbatim words from the transcript")
    start: float = Field(ge=0, description="start time in seconds of the quoted line")


class CriterionResult(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    score: int
    rationale: str
    evidence: list[Evidence] = Field(default_factory=list)


class Pattern(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: str = Field(description="e.g. objection, competitor_mention, price_question")
    quote: str
    start: float = Field(ge=0)


class ScorerOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    criteria: list[CriterionResult]
    summary: str = Field(min_length=1)
    recommendations: list[str] = Field(default_factory=list)
    patterns: list[Pattern] = Field(default_factory=list)


def response_schema(preset: Preset) -> dict:
    """JSON schema for one scorer reply under `preset` (ids and scale made explicit)."""
    evidence = {
        "type": "object",
        "additionalProperties": False,
        "required": ["quote", "start"],
        "properties": {
            "quote": {"type": "string", "minLength": 1},
            "start": {"type": "number", "minimum": 0},
        },
    }
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["criteria", "summary", "recommendations", "patterns"],
        "properties": {
            "criteria": {
                "type": "array",
                "minItems": len(preset.criteria),
                "maxItems": len(preset.criteria),
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["id", "score", "rationale", "evidence"],
                    "properties": {
                        "id": {"type": "string", "enum": preset.criterion_ids},
                        "score": {
                            "type": "integer",
                            "minimum": preset.scale.min,
                            "maximum": preset.scale.max,
                        },
                        "rationale": {"type": "string"},
                        "evidence": {"type": "array", "items": evidence},
                    },
                },
            },
            "summary": {"type": "string", "minLength": 1},
            "recommendations": {"type": "array", "items": {"type": "string"}},
            "patterns": {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["type", "quote", "start"],
                    "properties": {
                        "type": {"type": "string"},
                        "quote": {"type": "string"},
                        "start": {"type": "number", "minimum": 0},
                    },
                },
            },
        },
    }
