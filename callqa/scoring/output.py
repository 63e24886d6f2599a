"""What a scorer returns (rules or LLM), and the JSON schema the LLM must follow."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from callqa.config.models import Preset, Role


class Evidence(BaseModel):
    model_config = ConfigDict(extra="forbid")
    quote: str = Field(min_length=1, description="verbatim words from the transcript")
    start: float = Field(ge=0, description="start time in seconds of the quoted line")
    # Required of every scorer (the response schema and the business rules demand it);
    # optional here only so records stored before schema 2.0 still load.
    speaker: Role | None = Field(None, description="who said the quoted words")


class CriterionResult(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    score: int | None = Field(description="on the preset's scale; null = N/A (not applicable)")
    rationale: str
    evidence: list[Evidence] = Field(default_factory=list)


class Pattern(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: str = Field(description="id of one of the preset's patterns, e.g. price_objection")
    quote: str
    start: float = Field(ge=0)
    speaker: Role | None = Field(None, description="who said it (always set since schema 2.0)")


class ScorerOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    criteria: list[CriterionResult]
    summary: str = Field(min_length=1)
    recommendations: list[str] = Field(default_factory=list)
    patterns: list[Pattern] = Field(default_factory=list)


def _quote_schema(extra: dict | None = None) -> dict:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": [*(extra or {}), "quote", "start", "speaker"],
        "properties": {
            **(extra or {}),
            "quote": {"type": "string", "minLength": 1},
            "start": {"type": "number", "minimum": 0},
            "speaker": {"type": "string", "enum": ["operator", "customer"]},
        },
    }


def response_schema(preset: Preset) -> dict:
    """JSON schema for one scorer reply under `preset` (ids, scale and N/A made explicit).

    Strict structured output (OpenAI's `json_schema` with `strict: true`) needs every
    property required and no open objects, which this schema keeps to."""
    score = {"type": "integer", "minimum": preset.scale.min, "maximum": preset.scale.max}
    if any(c.may_be_na for c in preset.criteria):
        # A type list (not anyOf) keeps errors specific: "7 is greater than the maximum".
        score["type"] = ["integer", "null"]
    pattern_type = {"type": "string"}
    if preset.patterns:
        pattern_type["enum"] = [p.id for p in preset.patterns]
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
                        "score": score,
                        "rationale": {"type": "string"},
                        "evidence": {"type": "array", "items": _quote_schema()},
                    },
                },
            },
            "summary": {"type": "string", "minLength": 1},
            "recommendations": {"type": "array", "items": {"type": "string"}},
            "patterns": {
                "type": "array",
                "items": _quote_schema({"type": pattern_type}),
            },
        },
    }
