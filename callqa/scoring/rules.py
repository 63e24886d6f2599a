"""A deterministic rules scorer for the default rubric: honest, offline, explainable.

No usable LLM runs offline on a laptop CPU, so the embedded default scores the same six
criteria from the diarized transcript with transparent rules, and cites the utterances
each rule used. Its output says plainly that rules, not an LLM, produced it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable

from callqa.config.models import Preset
from callqa.errors import ScoringError
from callqa.scoring.evidence import normalize
from callqa.scoring.outcome import Attempt, ScoringOutcome
from callqa.scoring.output import CriterionResult, Evidence, Pattern, ScorerOutput
from callqa.scoring.validation import rule_violations
from callqa.speech.diarization import DiarizedSegment, DiarizedTranscript

SCORER_NAME = "rules"
RULES_VERSION = "rules-v1"
NOTE = "Scored by deterministic keyword rules, not by an LLM."


def _phrases(text: str) -> tuple[str, ...]:
    """A lexicon written as "a | b | c": one string per lexicon keeps them easy to review."""
    return tuple(p.strip() for p in text.split("|") if p.strip())


GREETING = _phrases(
    "hello | hi | good morning | good afternoon | good evening | welcome | thank you for "
    "calling | thanks for calling"
)
# "I am ..." is left out on purpose: "I am sorry" is not an introduction.
INTRODUCTION = _phrases("my name is | this is | speaking with | calling from | my name's")
OFFER_HELP = _phrases("how can i help | how may i help | what can i do for you | how can i assist")
QUESTION_START = _phrases(
    "what | how | why | when | where | which | who | could you | can you | would you | do "
    "you | does your | are you | is your | tell me"
)
PRESENTATION = _phrases(
    "plan | offer | package | includes | include | price | per month | save | saves | "
    "benefit | feature | unlimited | discount | free"
)
OBJECTION = _phrases(
    "too expensive | expensive | not sure | already have | not interested | think about "
    "it | too much | cheaper | competitor | can't afford | don't need"
)
HANDLING = _phrases(
    "understand | i see | however | actually | that's why | compared | good question | "
    "fair point | let me explain | in fact | discount | save"
)
CLOSING = _phrases(
    "next step | schedule | send you | follow up | sign up | set up | shall we | book | "
    "confirm | appointment | contract | order"
)
FAREWELL = _phrases("thank you for your time | have a great day | have a nice day | goodbye | bye")
POLITE = _phrases(
    "please | thank you | thanks | happy to | glad | of course | absolutely | certainly | "
    "my pleasure | great question | sure"
)
RUDE = _phrases(
    "whatever | not my problem | i don't know | calm down | take it or leave it | what do "
    "you want | listen | i told you | that's the price | no idea | hurry"
)

GREETING_WINDOW_S = 15.0


def _has(text: str, phrases: Iterable[str]) -> list[str]:
    norm = f" {normalize(text)} "
    return [p for p in phrases if f" {normalize(p)} " in norm]


def _is_question(seg: DiarizedSegment) -> bool:
    sentences = re.split(r"(?<=[.!?])\s+", seg.text.strip())
    # Whole words only: "Whatever, ..." or "However, ..." is not a question.
    starts = tuple(f"{q} " for q in QUESTION_START)
    return any(s.endswith("?") or f"{normalize(s)} ".startswith(starts) for s in sentences if s)


def _cite(segments: Iterable[DiarizedSegment], limit: int = 3) -> list[Evidence]:
    return [Evidence(quote=s.text, start=round(s.start, 2)) for s in list(segments)[:limit]]


def _merge(*groups: list[DiarizedSegment]) -> list[DiarizedSegment]:
    """Segments from several rule hits, once each, in call order."""
    seen: dict[tuple[float, str], DiarizedSegment] = {}
    for seg in (s for g in groups for s in g):
        seen.setdefault((seg.start, seg.speaker), seg)
    return sorted(seen.values(), key=lambda s: s.start)


def _clamp(value: int, preset: Preset) -> int:
    return max(preset.scale.min, min(preset.scale.max, value))


def _greeting(ops: list[DiarizedSegment], preset) -> CriterionResult:
    early = [s for s in ops if s.start <= GREETING_WINDOW_S]
    greet = [s for s in early if _has(s.text, GREETING)]
    intro = [s for s in early if _has(s.text, INTRODUCTION)]
    offer = [s for s in early if _has(s.text, OFFER_HELP)]
    parts = sum(bool(x) for x in (greet, intro, offer))
    score = {0: 1, 1: 3, 2: 4, 3: 5}[parts]
    used = _merge(greet, intro, offer)
    rationale = (
        f"In the first {GREETING_WINDOW_S:.0f} s the operator "
        f"{'greeted' if greet else 'did not greet'}, "
        f"{'introduced themself' if intro else 'gave no introduction'} and "
        f"{'offered help' if offer else 'did not offer help'}."
    )
    return CriterionResult(
        id="greeting", score=_clamp(score, preset), rationale=rationale, evidence=_cite(used)
    )


def _needs_discovery(ops, preset) -> CriterionResult:
    questions = [s for s in ops if _is_question(s)]
    score = _clamp(1 + len(questions), preset)
    return CriterionResult(
        id="needs_discovery",
        score=score,
        rationale=f"The operator asked {len(questions)} question(s) about the customer's needs.",
        evidence=_cite(questions),
    )


def _presentation(ops, preset) -> CriterionResult:
    hits = [s for s in ops if _has(s.text, PRESENTATION)]
    terms = sorted({t for s in hits for t in _has(s.text, PRESENTATION)})
    score = _clamp(1 + min(4, len(terms)), preset)
    return CriterionResult(
        id="presentation",
        score=score,
        rationale=(
            f"Offer presented with {len(terms)} distinct benefit/price term(s)"
            + (f": {', '.join(terms)}." if terms else ".")
        ),
        evidence=_cite(hits),
    )


def _reply_turn(segments: list[DiarizedSegment], said: DiarizedSegment) -> list[DiarizedSegment]:
    """The operator's lines answering `said`: from its start until the customer's next line."""
    following = [s for s in segments if s.start >= said.start and s is not said]
    next_customer = next((s.start for s in following if s.speaker == "customer"), float("inf"))
    return [s for s in following if s.speaker == "operator" and s.start < next_customer]


def _objections(segments, preset) -> tuple[CriterionResult, list[Pattern]]:
    patterns, evidence, handled, answered = [], [], 0, 0
    objections = [s for s in segments if s.speaker == "customer" and _has(s.text, OBJECTION)]
    for obj in objections:
        patterns.append(Pattern(type="objection", quote=obj.text, start=round(obj.start, 2)))
        evidence.append(obj)
        reply = _reply_turn(segments, obj)
        if not reply:
            continue
        answered += 1
        evidence.extend(reply)
        text = " ".join(s.text for s in reply)
        if _has(text, HANDLING) and not _has(text, RUDE):
            handled += 1
    if not objections:
        return CriterionResult(
            id="objection_handling",
            score=_clamp(3, preset),
            rationale="No customer objection detected; neutral score.",
            evidence=[],
        ), patterns
    share = handled / len(objections)
    score = 5 if share == 1 else 4 if share >= 0.5 else 2 if answered else 1
    return CriterionResult(
        id="objection_handling",
        score=_clamp(score, preset),
        rationale=(
            f"{len(objections)} objection(s); {answered} answered, {handled} answered "
            "with acknowledgement or substance."
        ),
        evidence=_cite(evidence, limit=4),
    ), patterns


def _closing(ops, duration_s, preset) -> CriterionResult:
    late = [s for s in ops if s.start >= duration_s * 0.5]
    steps = [s for s in late if _has(s.text, CLOSING)]
    bye = [s for s in late if _has(s.text, FAREWELL)]
    score = 1 + min(3, 2 * len(steps)) + (1 if bye else 0)
    return CriterionResult(
        id="closing",
        score=_clamp(score, preset),
        rationale=(
            f"{len(steps)} next-step proposal(s) in the second half of the call; "
            f"{'a' if bye else 'no'} polite farewell."
        ),
        evidence=_cite(_merge(steps, bye)),
    )


def _tone(ops, diarized: DiarizedTranscript, preset) -> CriterionResult:
    polite = [s for s in ops if _has(s.text, POLITE)]
    rude = [s for s in ops if _has(s.text, RUDE)]
    interrupts = diarized.metrics.roles["operator"].interruptions
    score = 3 + min(2, len(polite)) - min(2, 2 * len(rude)) - min(1, interrupts)
    return CriterionResult(
        id="tone",
        score=_clamp(score, preset),
        rationale=(
            f"{len(polite)} polite and {len(rude)} dismissive operator line(s); "
            f"the operator interrupted {interrupts} time(s)."
        ),
        evidence=_cite(_merge(rude, polite)),
    )


def score_with_rules(diarized: DiarizedTranscript, preset: Preset) -> ScoringOutcome:
    started = time.perf_counter()
    known = {"greeting", "needs_discovery", "presentation", "objection_handling", "closing", "tone"}
    unknown = [cid for cid in preset.criterion_ids if cid not in known]
    if unknown:
        raise ScoringError(
            f"preset {preset.id!r}: the rules scorer has no rule for {', '.join(unknown)}; "
            "use the LLM scorer for custom criteria"
        )
    segments = diarized.segments
    ops = [s for s in segments if s.speaker == "operator"]
    objection, patterns = _objections(segments, preset)
    results = {
        "greeting": _greeting(ops, preset),
        "needs_discovery": _needs_discovery(ops, preset),
        "presentation": _presentation(ops, preset),
        "objection_handling": objection,
        "closing": _closing(ops, diarized.duration_s, preset),
        "tone": _tone(ops, diarized, preset),
    }
    criteria = [results[cid] for cid in preset.criterion_ids]
    weakest = min(criteria, key=lambda c: c.score)
    strongest = max(criteria, key=lambda c: c.score)
    summary = (
        f"{NOTE} Strongest: {strongest.id} ({strongest.score}); weakest: {weakest.id} "
        f"({weakest.score}). {len(patterns)} objection(s) detected."
    )
    recommendations = [
        f"Improve {c.id.replace('_', ' ')}: {next(x.description for x in preset.criteria if x.id == c.id)}"
        for c in sorted(criteria, key=lambda c: c.score)[:2]
        if c.score < preset.scale.max - 1
    ]
    output = ScorerOutput(
        criteria=criteria, summary=summary, recommendations=recommendations, patterns=patterns
    )
    problems = rule_violations(output, preset, diarized.spoken_text())
    attempt = Attempt(
        attempt=1,
        scorer=SCORER_NAME,
        model=RULES_VERSION,
        prompt_version=preset.prompt_version,
        latency_ms=round((time.perf_counter() - started) * 1000, 1),
        raw_output=output.model_dump_json(),
        valid=not problems,
        error="; ".join(problems) or None,
    )
    return ScoringOutcome(
        scorer=SCORER_NAME,
        model=RULES_VERSION,
        prompt_version=preset.prompt_version,
        output=None if problems else output,
        attempts=[attempt],
        note=NOTE,
    )


class RulesScorer:
    """Scorer interface (`score(diarized, preset, category)`) over the rules above."""

    model = RULES_VERSION

    def score(
        self, diarized: DiarizedTranscript, preset: Preset, category: str | None = None
    ) -> ScoringOutcome:
        return score_with_rules(diarized, preset)
