from __future__ import annotations

from typing import Literal

import dagster as dg
from pydantic import Field

from callqa.scoring.llm import LLMScorer
from callqa.scoring.rules import RulesScorer


class ScorerResource(dg.ConfigurableResource):
    """Anything with `get_scorer()` returning an object with `score(diarized, preset, category)`."""

    def get_scorer(self) -> RulesScorer | LLMScorer:
        raise NotImplementedError


class RulesScorerResource(ScorerResource):
    """Deterministic keyword rules for the default rubric: offline, no API key."""

    def get_scorer(self) -> RulesScorer:
        return RulesScorer()


class LLMScorerResource(ScorerResource):
    """Any litellm model: OpenAI, OpenRouter, Anthropic, Ollama, vLLM, local servers."""

    model: str | None = Field(None, description="litellm model string; unset = the preset's")
    api_base: str | None = Field(None, description="OpenAI-compatible endpoint, if not default")
    api_key: str | None = Field(
        None, description="Set with dg.EnvVar; unset = the provider's usual environment variable"
    )
    timeout_s: float | None = Field(None, description="unset = the preset's")
    response_format: Literal["json_schema", "json_object"] = Field(
        "json_schema", description="json_object for providers without JSON-schema output"
    )

    def get_scorer(self) -> LLMScorer:
        return LLMScorer(
            model=self.model,
            api_base=self.api_base,
            api_key=self.api_key,
            timeout_s=self.timeout_s,
            response_format=self.response_format,
        )
