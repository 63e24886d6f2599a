"""Tenants and AI presets: validated config files, reviewed like code.

The JSON schemas in `callqa/schemas/` are generated from these models
(`callqa schema --write`) and published for editors and CI of config repos.
"""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import Field, field_validator, model_validator

from callqa.calls.keys import TENANT_RE
from callqa.config.base import Strict as _Strict
from callqa.config.crm import AlertDestination, CrmConfig

Role = Literal["operator", "customer"]
SLUG_PATTERN = TENANT_RE.pattern


class Scale(_Strict):
    min: int = 1
    max: int = 5

    @model_validator(mode="after")
    def _ordered(self) -> Scale:
        if self.max <= self.min:
            raise ValueError(f"scale max ({self.max}) must be greater than min ({self.min})")
        return self


class Criterion(_Strict):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")
    name: str
    weight: float = Field(gt=0, description="Relative weight; weights are normalised to sum 1.")
    description: str


class SpeechSettings(_Strict):
    provider: Literal["whisper", "openai"] = Field(
        "whisper",
        description=(
            "whisper: faster-whisper on this machine; openai: an OpenAI-compatible "
            "transcription API (endpoint and key from CALLQA_STT_API_BASE / _KEY)."
        ),
    )
    model: str = Field(
        "tiny.en",
        description="faster-whisper model name or path; 'tiny.en' is the bundled offline model.",
    )
    api_model: str = Field("whisper-1", description="Model name sent to a transcription API.")
    language: str | None = "en"
    beam_size: int = Field(5, ge=1, le=20)


class LLMSettings(_Strict):
    model: str = Field("openai/gpt-4o-mini", description="Any litellm model string.")
    temperature: float = Field(0.0, ge=0, le=2)
    max_tokens: int = Field(2000, ge=100)
    timeout_s: float = Field(120.0, gt=0)


class Preset(_Strict):
    id: str = Field(pattern=SLUG_PATTERN)
    description: str = ""
    scale: Scale = Scale()
    criteria: list[Criterion] = Field(min_length=1)
    scorer: Literal["rules", "llm"] = Field(
        "rules",
        description="rules: offline keyword rules (default rubric only); llm: the llm settings.",
    )
    speech: SpeechSettings = SpeechSettings()
    llm: LLMSettings = LLMSettings()
    prompt_template: str = Field(
        description=(
            "string.Template text; placeholders: $criteria, $scale_min, $scale_max, "
            "$transcript, $call_category."
        )
    )

    @field_validator("criteria")
    @classmethod
    def _unique_ids(cls, criteria: list[Criterion]) -> list[Criterion]:
        ids = [c.id for c in criteria]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate criterion ids: {', '.join(dupes)}")
        return criteria

    @field_validator("prompt_template")
    @classmethod
    def _has_transcript(cls, template: str) -> str:
        if "$transcript" not in template and "${transcript}" not in template:
            raise ValueError("prompt_template must contain the $transcript placeholder")
        return template

    @property
    def criterion_ids(self) -> list[str]:
        return [c.id for c in self.criteria]

    @property
    def prompt_version(self) -> str:
        """Content hash of everything that changes what the scorer is asked."""
        canonical = json.dumps(
            self.model_dump(mode="json", exclude={"description"}), sort_keys=True
        )
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]


class ChannelMap(_Strict):
    """Which role speaks on which channel of a stereo recording."""

    left: Role = "operator"
    right: Role = "customer"

    @model_validator(mode="after")
    def _distinct(self) -> ChannelMap:
        if self.left == self.right:
            raise ValueError("channel_map must give the two channels different roles")
        return self

    def role_of(self, channel: int) -> Role:
        return self.left if channel == 0 else self.right


class Alerts(_Strict):
    low_score_threshold: float = Field(
        50.0, ge=0, le=100, description="A call whose total is below this gets one alert."
    )
    destination: AlertDestination | None = Field(
        None, description="Where low-score alerts go; none: no alerts are sent."
    )


class Tenant(_Strict):
    id: str = Field(pattern=SLUG_PATTERN)
    name: str
    crm: CrmConfig | None = Field(
        None,
        description=(
            "Where this tenant's calls come from and where results go back (adapter by "
            "name); none: calls are staged by hand (`callqa stage add`) only."
        ),
    )
    channel_map: ChannelMap = ChannelMap()
    auto_process: bool = Field(
        True, description="Process staged calls automatically (else wait for manual selection)."
    )
    presets: dict[str, str] = Field(
        default_factory=lambda: {"default": "sales-default"},
        description="Call category -> preset id; 'default' applies to any other category.",
    )
    alerts: Alerts = Alerts()
    retention_days: int = Field(
        90,
        ge=1,
        description=(
            "Days a scored call keeps its Dagster `calls` partition; older scored calls' "
            "partitions are retired daily (the warehouse keeps every row). Calls per day x "
            "retention_days should stay well under 100,000 partitions (docs/capacity.md)."
        ),
    )

    @field_validator("presets")
    @classmethod
    def _has_default(cls, presets: dict[str, str]) -> dict[str, str]:
        if "default" not in presets:
            raise ValueError("presets must map a 'default' category")
        return presets

    def preset_id_for(self, category: str | None) -> str:
        return self.presets.get(category or "default", self.presets["default"])
