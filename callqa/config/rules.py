"""How the offline rules scorer scores a criterion: its cues live in the preset.

Two kinds of rule cover the bundled rubrics, so a new preset needs no new code:

- `points`: a score from counted evidence in one speaker's lines (optionally only the
  first seconds or the later part of the call): a base plus points per hit, or a score
  looked up by points. Items count lines with phrases, distinct phrases, questions or
  interruptions.
- `response`: how the operator answered each occurrence of a pattern (an objection, a
  cancellation request): the share of occurrences answered with good cues and without
  bad ones.

Phrases match whole words, ignoring case and punctuation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from callqa.config.base import Strict

if TYPE_CHECKING:
    from callqa.config.models import PatternSpec, Preset


class Hits(Strict):
    """One thing to count, and what each hit is worth."""

    match: Literal["phrases", "question", "interruption"] = Field(
        "phrases",
        description=(
            "phrases: lines with one of `phrases`; question: lines asking something (a "
            "sentence ending in '?' or opening with one of `phrases`, e.g. 'what', 'could "
            "you'); interruption: times the speaker talked over the other party."
        ),
    )
    phrases: list[str] = Field(default_factory=list)
    count: Literal["lines", "distinct", "present"] = Field(
        "lines",
        description="lines: matching lines; distinct: different phrases found; present: 0 or 1.",
    )
    points: float = Field(1.0, description="Points per hit; negative for a fault.")
    max_points: float | None = Field(
        None, gt=0, description="Cap on the absolute points this item adds or takes."
    )
    label: str = Field("", description="What this item looks for, in words, for the rationale.")
    speaker: Literal["operator", "customer"] | None = Field(
        None, description="Whose lines this item counts; unset = the rule's speaker."
    )


class Window(Strict):
    first_s: float | None = Field(None, gt=0, description="Only lines starting this early.")
    after_fraction: float | None = Field(
        None, ge=0, lt=1, description="Only lines after this fraction of the call."
    )


class PointsRule(Strict):
    kind: Literal["points"] = "points"
    speaker: Literal["operator", "customer"] = "operator"
    window: Window = Window()
    base: float | None = Field(None, description="Starting score; unset = the scale's minimum.")
    items: list[Hits] = Field(min_length=1)
    scores: list[int] | None = Field(
        None,
        min_length=1,
        description="Score by total points (index 0, 1, ...; the last for more); unset = "
        "base + points, clamped to the scale.",
    )
    rationale: str = Field("", description="What the rule looked for, in words, for the rationale.")


class ResponseScores(Strict):
    all_handled: int = 5
    most_handled: int = Field(4, description="At least half of the occurrences handled.")
    answered: int = Field(2, description="Fewer handled, but at least one answered at all.")
    ignored: int = 1
    none: int | None = Field(
        None,
        description="Score when the trigger never occurs; unset = N/A (the criterion must "
        "allow N/A, or apply only when the trigger's pattern is found).",
    )


class ResponseRule(Strict):
    kind: Literal["response"] = "response"
    trigger: str | list[str] = Field(
        description=(
            "Pattern id(s) or pattern kind(s) (e.g. `objection`: every objection pattern) "
            "whose occurrences the operator must answer; a name is an id before a kind."
        )
    )
    good: list[str] = Field(description="Cues of a good answer (acknowledgement, substance).")
    bad: list[str] = Field(default_factory=list, description="Cues that spoil an answer.")
    reply_turns: int = Field(
        1,
        ge=1,
        description=(
            "The answer is the operator's lines until the customer has spoken this many "
            "more times (1: the operator's very next turn)."
        ),
    )
    scores: ResponseScores = ResponseScores()
    rationale: str = Field("", description="What the rule looked for, in words, for the rationale.")

    @property
    def triggers(self) -> list[str]:
        return [self.trigger] if isinstance(self.trigger, str) else list(self.trigger)

    def trigger_patterns(self, preset: Preset) -> list[PatternSpec]:
        """The preset's patterns the trigger names (by id, else by kind), in preset order."""
        ids = {p.id for p in preset.patterns}
        wanted = set()
        for ref in self.triggers:
            wanted |= {ref} if ref in ids else {p.id for p in preset.patterns if p.kind == ref}
        return [p for p in preset.patterns if p.id in wanted]


RuleSpec = Annotated[PointsRule | ResponseRule, Field(discriminator="kind")]


def rule_problems(preset: Preset, require_rules: bool = True) -> list[str]:
    """What keeps the rules scorer from scoring `preset`, one message per problem.

    `require_rules=False` checks only the rules that are there (for a preset scored by an
    LLM, whose criteria need no rule)."""
    problems = []
    missing = [c.id for c in preset.criteria if c.rule is None]
    if missing and require_rules:
        problems.append(
            f"criteria without a rule: {', '.join(missing)} (add a `rule` to each, or use "
            "the LLM scorer for this preset)"
        )
    ids = {p.id for p in preset.patterns}
    kinds = {p.kind for p in preset.patterns}
    for c in preset.criteria:
        rule = c.rule
        if not isinstance(rule, ResponseRule):
            continue
        unknown = [t for t in rule.triggers if t not in ids and t not in kinds]
        if unknown:
            problems.append(
                f"criterion {c.id!r}: trigger {', '.join(map(repr, unknown))} is neither a "
                f"pattern id nor a pattern kind of the preset (patterns: "
                f"{', '.join(sorted(ids)) or 'none'})"
            )
            continue
        triggered_by = {p.id for p in rule.trigger_patterns(preset)}
        guarded = c.applies_when is not None and c.applies_when.pattern in triggered_by
        if rule.scores.none is None and not c.allow_na and not guarded:
            problems.append(
                f"criterion {c.id!r}: its rule gives N/A when {'/'.join(rule.triggers)} never "
                "occurs, but the criterion does not allow N/A: set `allow_na: true`, set "
                "`rule.scores.none`, or make it apply only when the trigger's pattern is found"
            )
    return problems
