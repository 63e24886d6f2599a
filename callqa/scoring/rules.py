"""A deterministic rules scorer: honest, offline, explainable, driven by the preset.

No usable LLM runs offline on a laptop CPU, so the rules scorer interprets each
criterion's `rule` (callqa/config/rules.py) over the diarized transcript: the cues, the
points and the score table all live in the preset, so a new preset needs no new code.
It cites the lines each rule used, and its output says plainly that rules, not an LLM,
produced it.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from callqa.config.models import Criterion, PatternSpec, Preset
from callqa.config.rules import Hits, PointsRule, ResponseRule, Window, rule_problems
from callqa.errors import ScoringError
from callqa.scoring.evidence import normalize
from callqa.scoring.outcome import Attempt, ScoringOutcome
from callqa.scoring.output import CriterionResult, Evidence, Pattern, ScorerOutput
from callqa.scoring.validation import rule_violations
from callqa.speech.diarization import (
    INTERRUPTION_MIN_OVERLAP_S,
    DiarizedSegment,
    DiarizedTranscript,
)

SCORER_NAME = "rules"
RULES_VERSION = "rules-v2"
NOTE = "Scored by deterministic keyword rules, not by an LLM."

# Lines cited per criterion: enough to check the score, few enough to read.
CITE_POINTS = 3
CITE_RESPONSE = 4

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@lru_cache(maxsize=4096)
def _norm(phrase: str) -> str:
    return normalize(phrase)


def phrase_hits(text: str, phrases: Iterable[str]) -> list[str]:
    """The phrases found in `text` as whole words (case and punctuation ignored)."""
    norm = f" {normalize(text)} "
    return [p for p in phrases if _norm(p) and f" {_norm(p)} " in norm]


def is_question(text: str, openers: Sequence[str]) -> bool:
    """A sentence ends with '?' or opens with one of `openers` (whole words: 'However, ...'
    does not open with 'how')."""
    starts = tuple(f"{_norm(q)} " for q in openers if _norm(q))
    return any(
        s.endswith("?") or f"{normalize(s)} ".startswith(starts)
        for s in _SENTENCE_END.split(text.strip())
        if s
    )


def _interrupts(seg: DiarizedSegment, segments: Sequence[DiarizedSegment]) -> bool:
    """Started while the other party still talked (as `conversation_metrics` counts it)."""
    return any(
        o.speaker != seg.speaker
        and o.start < seg.start
        and o.end - seg.start >= INTERRUPTION_MIN_OVERLAP_S
        for o in segments
    )


def _cite(segments: Iterable[DiarizedSegment], limit: int) -> list[Evidence]:
    return [
        Evidence(quote=s.text, start=round(s.start, 2), speaker=s.speaker)
        for s in _quotable(segments)[:limit]
    ]


def _unique(segments: Iterable[DiarizedSegment]) -> list[DiarizedSegment]:
    seen: dict[int, DiarizedSegment] = {}
    for seg in segments:
        seen.setdefault(id(seg), seg)
    return list(seen.values())


def _quotable(segments: Iterable[DiarizedSegment]) -> list[DiarizedSegment]:
    """Lines with words in them (a line of only punctuation cannot be quoted)."""
    return [s for s in segments if normalize(s.text)]


def _clamp(value: int, preset: Preset) -> int:
    return max(preset.scale.min, min(preset.scale.max, value))


def _round(value: float) -> int:
    return math.floor(value + 0.5)


def _quoted(phrases: Sequence[str]) -> str:
    return ", ".join(f"'{p}'" for p in phrases)


def _sentence(text: str) -> str:
    text = text.strip()
    return f"{text} " if not text or text.endswith((".", "!", "?")) else f"{text}. "


class Call:
    """The transcript with what every rule needs computed once: lines by speaker, the
    detected patterns."""

    def __init__(self, diarized: DiarizedTranscript, preset: Preset) -> None:
        self.diarized = diarized
        self.segments = list(diarized.segments)
        self.patterns: list[Pattern] = []
        self.pattern_lines: dict[str, list[DiarizedSegment]] = {}
        for spec in preset.patterns:
            lines = [s for s in self.of(spec.speaker) if phrase_hits(s.text, spec.cues)]
            self.pattern_lines[spec.id] = lines
            self.patterns += [
                Pattern(type=spec.id, quote=s.text, start=round(s.start, 2), speaker=s.speaker)
                for s in lines
            ]
        self.patterns.sort(key=lambda p: p.start)

    def of(self, speaker: str) -> list[DiarizedSegment]:
        return [s for s in self.segments if speaker == "any" or s.speaker == speaker]

    def lines(self, speaker: str, window: Window) -> list[DiarizedSegment]:
        duration = self.diarized.duration_s
        return [
            s
            for s in self.of(speaker)
            if (window.first_s is None or s.start <= window.first_s)
            and (window.after_fraction is None or s.start >= duration * window.after_fraction)
        ]

    def first_line(self, speaker: str) -> list[DiarizedSegment]:
        return _quotable(self.of(speaker))[:1]


# --- points rules ------------------------------------------------------------------------


@dataclass
class _Counted:
    hits: Hits
    count: int
    points: float
    lines: list[DiarizedSegment]
    found: list[str] = field(default_factory=list)

    def describe(self, rule_speaker: str) -> str:
        default = {"phrases": "phrases", "question": "questions", "interruption": "interruptions"}
        label = self.hits.label or default[self.hits.match]
        if self.hits.speaker and self.hits.speaker != rule_speaker:
            label += f" (the {self.hits.speaker}'s lines)"
        phrases = f" ({_quoted(self.found)})" if self.found else ""
        if self.hits.count == "present":
            return f"{label}: {'found' + phrases if self.count else 'not found'}"
        unit = {
            "question": "question(s)",
            "interruption": "interruption(s)",
        }.get(self.hits.match, "distinct phrase(s)" if self.hits.count == "distinct" else "line(s)")
        return f"{label}: {self.count} {unit}{phrases}"


def _count(item: Hits, lines: list[DiarizedSegment], call: Call) -> _Counted:
    found: list[str] = []
    if item.match == "phrases":
        matched = [(s, phrase_hits(s.text, item.phrases)) for s in lines]
        hit_lines = [s for s, words in matched if words]
        in_any = {p for _, words in matched for p in words}
        found = [p for p in dict.fromkeys(item.phrases) if p in in_any]
    elif item.match == "question":
        hit_lines = [s for s in lines if is_question(s.text, item.phrases)]
    else:
        hit_lines = [s for s in lines if _interrupts(s, call.segments)]
    if item.count == "present":
        count = int(bool(hit_lines))
    elif item.count == "distinct" and item.match == "phrases":
        count = len(found)
    else:
        count = len(hit_lines)
    points = count * item.points
    if item.max_points is not None:
        points = max(-item.max_points, min(item.max_points, points))
    return _Counted(item, count, points, hit_lines, found)


def _scope(speaker: str, window: Window) -> str:
    where = []
    if window.first_s is not None:
        where.append(f"in the first {window.first_s:g} s")
    if window.after_fraction is not None:
        where.append(f"after the first {window.after_fraction:.0%} of the call")
    return f"the {speaker}'s lines" + (f" {' and '.join(where)}" if where else "")


def _points_evidence(counted: list[_Counted]) -> list[DiarizedSegment]:
    """The first line of each item that hit (so a fault is cited next to the praise), then
    more hits in call order; listed in call order."""
    firsts = [_quotable(c.lines)[0] for c in counted if _quotable(c.lines)]
    rest = sorted((s for c in counted for s in _quotable(c.lines)), key=lambda s: s.start)
    return sorted(_unique([*firsts, *rest])[:CITE_POINTS], key=lambda s: s.start)


def _score_points(criterion: Criterion, rule: PointsRule, call: Call, preset: Preset):
    intro = _sentence(rule.rationale)
    if not call.first_line(rule.speaker):
        # Nothing to judge (no line with words): the lowest score, citing the other party.
        other = "customer" if rule.speaker == "operator" else "operator"
        return CriterionResult(
            id=criterion.id,
            score=preset.scale.min,
            rationale=f"{intro}The {rule.speaker} says nothing in this call: lowest score.",
            evidence=_cite(call.first_line(other), CITE_POINTS),
        )
    counted, examined = [], []
    for item in rule.items:
        lines = call.lines(item.speaker or rule.speaker, rule.window)
        examined += _quotable(lines)[:1]
        counted.append(_count(item, lines, call))
    total = sum(c.points for c in counted)
    if rule.scores is not None:
        raw = rule.scores[max(0, min(len(rule.scores) - 1, math.floor(total)))]
        how = f"{total:g} point(s) -> score {raw}"
    else:
        base = rule.base if rule.base is not None else preset.scale.min
        raw = _round(base + total)
        steps = "".join(f" {'-' if c.points < 0 else '+'} {abs(c.points):g}" for c in counted)
        how = f"score {base:g}{steps} = {raw}"
    score = _clamp(raw, preset)
    if score != raw:
        how += f", kept to the scale: {score}"
    cited = _points_evidence(counted)
    if not cited:
        # Nothing matched: cite what was said instead, so a reader can check the miss.
        cited = examined[:1] or call.first_line(rule.speaker)
        if not examined:
            how += f"; none of the {rule.speaker}'s lines falls in that part of the call"
    rationale = (
        f"{intro}In {_scope(rule.speaker, rule.window)}: "
        f"{'; '.join(c.describe(rule.speaker) for c in counted)}. {how[0].upper()}{how[1:]}."
    )
    return CriterionResult(
        id=criterion.id, score=score, rationale=rationale, evidence=_cite(cited, CITE_POINTS)
    )


# --- response rules ----------------------------------------------------------------------


def _reply(call: Call, said: DiarizedSegment, turns: int) -> list[DiarizedSegment]:
    """The operator's lines answering `said`: from its start until the customer has spoken
    `turns` more times."""
    following = [s for s in call.segments if s.start >= said.start and s is not said]
    customer = [s.start for s in following if s.speaker == "customer"]
    cutoff = customer[turns - 1] if len(customer) >= turns else math.inf
    return [s for s in following if s.speaker == "operator" and s.start < cutoff]


def _score_response(criterion: Criterion, rule: ResponseRule, call: Call, preset: Preset):
    intro = _sentence(rule.rationale)
    specs = rule.trigger_patterns(preset)
    names = "/".join(rule.triggers)
    occurrences = sorted(
        _unique(s for spec in specs for s in call.pattern_lines[spec.id]), key=lambda s: s.start
    )
    if not occurrences:
        if rule.scores.none is None:
            return CriterionResult(
                id=criterion.id,
                score=None,
                rationale=f"{intro}No {names} in this call, so it does not apply (N/A).",
                evidence=[],
            )
        speakers = {spec.speaker for spec in specs} - {"any"}
        looked = speakers.pop() if len(speakers) == 1 else "customer"
        shown = call.first_line(looked) or call.first_line("operator")
        return CriterionResult(
            id=criterion.id,
            score=_clamp(rule.scores.none, preset),
            rationale=f"{intro}No {names} in this call: score {rule.scores.none}.",
            evidence=_cite(shown, CITE_RESPONSE),
        )
    cited: list[DiarizedSegment] = []
    answered = handled = 0
    good_found: list[str] = []
    bad_found: list[str] = []
    for said in occurrences:
        cited.append(said)
        reply = _reply(call, said, rule.reply_turns)
        if not reply:
            continue
        answered += 1
        cited += reply
        text = " ".join(s.text for s in reply)
        good, bad = phrase_hits(text, rule.good), phrase_hits(text, rule.bad)
        good_found += good
        bad_found += bad
        if good and not bad:
            handled += 1
    share = handled / len(occurrences)
    s = rule.scores
    raw = (
        s.all_handled
        if share == 1
        else s.most_handled
        if share >= 0.5
        else s.answered
        if answered
        else s.ignored
    )
    found = []
    if good_found:
        found.append(f"good cues: {_quoted(list(dict.fromkeys(good_found)))}")
    if bad_found:
        found.append(f"bad cues: {_quoted(list(dict.fromkeys(bad_found)))}")
    kinds = ", ".join(spec.id for spec in specs if call.pattern_lines[spec.id])
    kinds = f" ({kinds})" if kinds != names else ""
    rationale = (
        f"{intro}{len(occurrences)} line(s) with {names}{kinds}; the operator answered "
        f"{answered}, {handled} with a good cue and no bad one"
        f"{' (' + '; '.join(found) + ')' if found else ''}. "
        f"{handled} of {len(occurrences)} handled -> score {_clamp(raw, preset)}."
    )
    return CriterionResult(
        id=criterion.id,
        score=_clamp(raw, preset),
        rationale=rationale,
        evidence=_cite(_unique(cited), CITE_RESPONSE),
    )


# --- the scorer --------------------------------------------------------------------------


def _score(criterion: Criterion, call: Call, preset: Preset) -> CriterionResult:
    condition = criterion.applies_when
    if condition is not None and not call.pattern_lines.get(condition.pattern):
        spec: PatternSpec | None = preset.pattern(condition.pattern)
        said = spec.description.strip().rstrip(".") if spec else ""
        what = f" ({said[:1].lower()}{said[1:]})" if said else ""
        return CriterionResult(
            id=criterion.id,
            score=None,
            rationale=(
                f"Applies only when {condition.pattern}{what} is found in the call; it was "
                "not, so N/A."
            ),
            evidence=[],
        )
    if isinstance(criterion.rule, ResponseRule):
        return _score_response(criterion, criterion.rule, call, preset)
    return _score_points(criterion, criterion.rule, call, preset)


def _summary(criteria: list[CriterionResult], patterns: list[Pattern]) -> str:
    scored = [c for c in criteria if c.score is not None]
    parts = [NOTE]
    if scored:
        strongest = max(scored, key=lambda c: c.score)
        weakest = min(scored, key=lambda c: c.score)
        parts.append(
            f"Strongest: {strongest.id} ({strongest.score}); weakest: {weakest.id} "
            f"({weakest.score})."
        )
    na = [c.id for c in criteria if c.score is None]
    if na:
        parts.append(f"Not applicable: {', '.join(na)}.")
    counts: dict[str, int] = {}
    for p in patterns:
        counts[p.type] = counts.get(p.type, 0) + 1
    parts.append(
        "Patterns: " + ", ".join(f"{t} x{n}" for t, n in counts.items()) + "."
        if counts
        else "No patterns detected."
    )
    return " ".join(parts)


def score_with_rules(diarized: DiarizedTranscript, preset: Preset) -> ScoringOutcome:
    started = time.perf_counter()
    problems = rule_problems(preset)
    if problems:
        raise ScoringError(
            f"preset {preset.id!r}: the rules scorer cannot score it: " + "; ".join(problems)
        )
    call = Call(diarized, preset)
    criteria = [_score(c, call, preset) for c in preset.criteria]
    descriptions = {c.id: c.description for c in preset.criteria}
    recommendations = [
        f"Improve {c.id.replace('_', ' ')}: {descriptions[c.id]}"
        for c in sorted((c for c in criteria if c.score is not None), key=lambda c: c.score)[:2]
        if c.score < preset.scale.max - 1
    ]
    output = ScorerOutput(
        criteria=criteria,
        summary=_summary(criteria, call.patterns),
        recommendations=recommendations,
        patterns=call.patterns,
    )
    problems = rule_violations(output, preset, diarized.segments)
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
    """Scorer interface (`score(diarized, preset, category)`) over the preset's rules."""

    model = RULES_VERSION

    def score(
        self, diarized: DiarizedTranscript, preset: Preset, category: str | None = None
    ) -> ScoringOutcome:
        return score_with_rules(diarized, preset)
