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
from callqa.config.rules import RuleSpec, rule_problems

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


ID_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"


class Condition(_Strict):
    """When a conditional criterion applies: a pattern of the preset was found in the call."""

    pattern: str = Field(
        pattern=ID_PATTERN, description="Id of one of the preset's patterns, e.g. cancel_intent."
    )


class Criterion(_Strict):
    id: str = Field(pattern=ID_PATTERN)
    name: str
    weight: float = Field(gt=0, description="Relative weight; weights are normalised to sum 1.")
    description: str
    anchors: dict[int, str] = Field(
        default_factory=dict,
        description="What each score level means (score -> description), shown to the scorer.",
    )
    allow_na: bool = Field(
        False,
        description=(
            "May be scored N/A (null) when the call gives no occasion for it; N/A criteria "
            "are left out of the total, not scored as neutral."
        ),
    )
    applies_when: Condition | None = Field(
        None,
        description=(
            "Conditional criterion: scored only when this pattern was found in the call, "
            "N/A otherwise (e.g. a retention offer only if the customer asked to cancel)."
        ),
    )
    rule: RuleSpec | None = Field(
        None, description="How the offline rules scorer scores it (its cues live here)."
    )

    @property
    def may_be_na(self) -> bool:
        return self.allow_na or self.applies_when is not None


PatternKind = Literal["objection", "competitor", "intent", "forbidden", "other"]


class PatternSpec(_Strict):
    """Something to detect in calls and count in the aggregates."""

    id: str = Field(pattern=ID_PATTERN)
    kind: PatternKind
    description: str
    speaker: Literal["operator", "customer", "any"] = "any"
    cues: list[str] = Field(
        default_factory=list, description="Phrases the rules scorer detects it by (whole words)."
    )


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
    language: str | None = Field(
        "en",
        description=(
            "Language code (en, de, ...), or null / 'auto' to detect it per channel (the "
            "detected language and its probability are stored with the transcript)."
        ),
    )
    beam_size: int = Field(5, ge=1, le=20)
    vad_filter: bool = Field(
        True,
        description="faster-whisper skips what Silero VAD finds is not speech before decoding.",
    )
    min_speech_s: float = Field(
        1.0,
        ge=0,
        le=60,
        description=(
            "A call with less voice than this (Silero VAD seconds) fails as 'too little speech "
            "to score' instead of being scored on a fragment; 0 turns the check off."
        ),
    )
    diarization: Literal["auto", "channel", "embedding", "pyannote", "pause"] = Field(
        "auto",
        description=(
            "Who spoke when. auto: channel for stereo, embedding for mono; channel: one party "
            "per stereo channel (tenant channel_map); embedding: offline voice embeddings "
            "(VAD + Resemblyzer); pyannote: a local pyannote pipeline (CALLQA_PYANNOTE_MODEL); "
            "pause: the old pause heuristic. CALLQA_DIARIZATION overrides every preset."
        ),
    )


class Price(_Strict):
    """List price of a model litellm's bundled price map does not know (USD per million
    tokens); 0 for a local model is an explicit zero, not a missing price."""

    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)


class LLMSettings(_Strict):
    model: str = Field("openai/gpt-4o-mini", description="Any litellm model string.")
    fallback_models: list[str] = Field(
        default_factory=list,
        description="Tried in order when the model keeps failing (errors or invalid replies).",
    )
    temperature: float = Field(0.0, ge=0, le=2)
    max_tokens: int = Field(2000, ge=100)
    timeout_s: float = Field(120.0, gt=0)
    max_reply_chars: int = Field(
        100_000, ge=1000, description="A longer reply is rejected (and stored truncated)."
    )
    prices: dict[str, Price] = Field(
        default_factory=dict,
        description="Model -> price, for models missing from litellm's bundled price map.",
    )


class Variant(_Strict):
    """An A/B variant: a share of calls (chosen by call key) scored with another prompt
    or model. What it leaves unset is the preset's."""

    id: str = Field(pattern=ID_PATTERN)
    share: float = Field(gt=0, lt=1, description="Fraction of calls routed to this variant.")
    llm: LLMSettings | None = None
    prompt_template: str | None = None


class Preset(_Strict):
    id: str = Field(pattern=SLUG_PATTERN)
    description: str = ""
    scale: Scale = Scale()
    criteria: list[Criterion] = Field(min_length=1)
    scorer: Literal["rules", "llm"] = Field(
        "rules",
        description=(
            "rules: offline rules, each criterion's `rule` (cues in the preset); llm: the llm "
            "settings."
        ),
    )
    speech: SpeechSettings = SpeechSettings()
    llm: LLMSettings = LLMSettings()
    prompt_template: str = Field(
        description=(
            "string.Template text; placeholders: $criteria, $patterns, $scale_min, "
            "$scale_max, $transcript, $call_category."
        )
    )
    patterns: list[PatternSpec] = Field(
        default_factory=list,
        description="Patterns to detect (objections, competitors, intents, forbidden phrases).",
    )
    category_cues: list[str] = Field(
        default_factory=list,
        description=(
            "Phrases typical of this preset's calls: a call arriving without a category is "
            "classified to the tenant category whose preset's cues it matches best."
        ),
    )
    variants: list[Variant] = Field(
        default_factory=list, description="A/B variants; the rest of the calls get the preset."
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
        return _require_transcript(template)

    @model_validator(mode="after")
    def _consistent(self) -> Preset:
        pattern_ids = [p.id for p in self.patterns]
        dupes = sorted({i for i in pattern_ids if pattern_ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate pattern ids: {', '.join(dupes)}")
        for c in self.criteria:
            if c.applies_when and c.applies_when.pattern not in pattern_ids:
                raise ValueError(
                    f"criterion {c.id!r} applies when pattern {c.applies_when.pattern!r} is "
                    f"found, but the preset defines no such pattern (has: "
                    f"{', '.join(pattern_ids) or 'none'})"
                )
            outside = [s for s in c.anchors if not self.scale.min <= s <= self.scale.max]
            if outside:
                raise ValueError(f"criterion {c.id!r}: anchors {outside} outside the scale")
        problems = rule_problems(self, require_rules=False)
        if problems:
            raise ValueError("; ".join(problems))
        if not any(not c.may_be_na for c in self.criteria):
            raise ValueError("at least one criterion must always apply (not N/A)")
        variant_ids = [v.id for v in self.variants]
        if len(set(variant_ids)) != len(variant_ids) or "control" in variant_ids:
            raise ValueError("variant ids must be unique and not 'control'")
        if sum(v.share for v in self.variants) >= 1:
            raise ValueError("variant shares must sum to less than 1 (the rest is control)")
        for v in self.variants:
            if v.prompt_template is not None:
                _require_transcript(v.prompt_template)
        return self

    def pattern(self, pattern_id: str) -> PatternSpec | None:
        return next((p for p in self.patterns if p.id == pattern_id), None)

    def variant_for(self, call_key: str) -> str:
        """The variant a call is routed to, deterministically by its key: 'control' or an id.

        The key is hashed with the preset id, so each preset splits calls independently."""
        if not self.variants:
            return CONTROL
        digest = hashlib.sha256(f"{self.id}:{call_key}".encode()).digest()
        point = int.from_bytes(digest[:8], "big") / 2**64
        edge = 0.0
        for v in self.variants:
            edge += v.share
            if point < edge:
                return v.id
        return CONTROL

    def with_variant(self, variant_id: str) -> Preset:
        """This preset as the variant scores with it (control: unchanged)."""
        if variant_id == CONTROL:
            return self
        v = next((v for v in self.variants if v.id == variant_id), None)
        if v is None:
            raise ValueError(f"preset {self.id!r} has no variant {variant_id!r}")
        update = {}
        if v.llm is not None:
            update["llm"] = v.llm
        if v.prompt_template is not None:
            update["prompt_template"] = v.prompt_template
        return self.model_copy(update=update)

    @property
    def criterion_ids(self) -> list[str]:
        return [c.id for c in self.criteria]

    @property
    def prompt_version(self) -> str:
        """Content hash of everything that changes what the scorer is asked: the preset
        and the version of the code-side prompt (delimiting, rendering of criteria)."""
        from callqa.scoring.prompt import PROMPT_FORMAT

        canonical = json.dumps(
            [PROMPT_FORMAT, self.model_dump(mode="json", exclude={"description"})],
            sort_keys=True,
        )
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]


CONTROL = "control"


def _require_transcript(template: str) -> str:
    if "$transcript" not in template and "${transcript}" not in template:
        raise ValueError("prompt_template must contain the $transcript placeholder")
    return template


class Redaction(_Strict):
    """PII masked before a transcript leaves for an external LLM, and in stored text."""

    enabled: bool = Field(True, description="Mask PII in what goes to an LLM and what is stored.")
    kinds: list[Literal["card", "phone", "email"]] = Field(
        default_factory=lambda: ["card", "phone", "email"],
        description="Built-in detectors: Luhn-checked card numbers, phone numbers, e-mails.",
    )
    patterns: dict[str, str] = Field(
        default_factory=dict,
        description="Name -> regular expression of more things to mask, e.g. contract numbers.",
    )

    @field_validator("patterns")
    @classmethod
    def _compiles(cls, patterns: dict[str, str]) -> dict[str, str]:
        import re

        for name, regex in patterns.items():
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,31}", name):
                raise ValueError(f"redaction pattern name {name!r}: letters, digits, _ only")
            try:
                re.compile(regex)
            except re.error as exc:
                raise ValueError(f"redaction pattern {name!r} does not compile: {exc}") from None
        return patterns


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


class RoleHints(_Strict):
    """How to tell the operator among the anonymous speakers of a mono recording."""

    operator_names: list[str] = Field(
        default_factory=list,
        description="Names the operators introduce themselves with ('this is Anna').",
    )
    company_names: list[str] = Field(
        default_factory=list,
        description="Names the operators greet with, besides the tenant's own name.",
    )
    operator_speaker: Literal["auto", "first", "second"] = Field(
        "auto",
        description=(
            "auto: decided from what each speaker says; first / second: the speaker who talks "
            "first / second is the operator (e.g. always inbound / always outbound lines)."
        ),
    )
    min_confidence: float = Field(
        0.6,
        ge=0,
        le=1,
        description="Below this confidence the role decision is flagged as low confidence.",
    )

    @field_validator("operator_names", "company_names")
    @classmethod
    def _no_blank_names(cls, names: list[str]) -> list[str]:
        if any(not n.strip() for n in names):
            raise ValueError("names must not be blank")
        return [n.strip() for n in names]


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
    roles: RoleHints = Field(
        RoleHints(), description="Which speaker of a mono recording is the operator."
    )
    auto_process: bool = Field(
        True, description="Process staged calls automatically (else wait for manual selection)."
    )
    presets: dict[str, str] = Field(
        default_factory=lambda: {"default": "sales-default"},
        description="Call category -> preset id; 'default' applies to any other category.",
    )
    alerts: Alerts = Alerts()
    redaction: Redaction = Redaction()
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
