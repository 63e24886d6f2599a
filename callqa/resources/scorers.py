from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import dagster as dg
from pydantic import Field

from callqa.calls.backends import ScorerBackends
from callqa.config.models import Preset
from callqa.scoring.base import Scorer


class ScorerResource(dg.ConfigurableResource):
    """Scoring for each call: the call's preset picks rules or an LLM (and which model);
    the fields here are the deployment's endpoint and key, and operator overrides."""

    scorer: str | None = Field(
        None, description="Override every preset's scorer (CALLQA_SCORER); unset = the preset's"
    )
    model: str | None = Field(
        None, description="Override the preset's litellm model (CALLQA_LLM_MODEL)"
    )
    api_base: str | None = Field(None, description="OpenAI-compatible endpoint, if not default")
    api_key: str | None = Field(
        None, description="Set with dg.EnvVar; unset = the provider's usual environment variable"
    )
    timeout_s: float | None = Field(
        None, description="Timeout of each model's request in seconds; unset = the preset's"
    )
    response_format: Literal["auto", "json_schema", "json_object", "none"] = Field(
        "auto",
        description=(
            "auto: a strict JSON schema for models litellm knows support it, else JSON mode "
            "or none, parsed tolerantly; json_schema / json_object / none force one"
        ),
    )

    def for_preset(self, preset: Preset, redact: Callable[[str], str] | None = None) -> Scorer:
        return ScorerBackends(
            scorer=self.scorer,
            model=self.model,
            api_base=self.api_base,
            api_key=self.api_key,
            timeout_s=self.timeout_s,
            response_format=self.response_format,
        ).for_preset(preset, redact=redact)
