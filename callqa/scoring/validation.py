"""Validation of scorer output: JSON schema, pydantic, and the business rules."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from callqa.config.models import Preset
from callqa.scoring.evidence import quote_problem, turns
from callqa.scoring.output import ScorerOutput, response_schema
from callqa.scoring.rubric import weighted_total


def schema_errors(instance: object, schema: dict) -> list[str]:
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema)
    return [
        f"{'/'.join(str(p) for p in err.absolute_path) or '<root>'}: {err.message}"
        for err in sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    ]


def coverage_problems(ids: list[str], preset: Preset) -> list[str]:
    """Criteria missing, unknown or repeated among the scored `ids`, named by id."""
    problems = []
    missing = [cid for cid in preset.criterion_ids if cid not in ids]
    unknown = sorted(set(ids) - set(preset.criterion_ids))
    repeated = sorted({cid for cid in ids if ids.count(cid) > 1})
    if missing:
        problems.append(f"missing criteria: {', '.join(missing)}")
    if unknown:
        problems.append(f"unknown criteria: {', '.join(unknown)}")
    if repeated:
        problems.append(f"criteria scored more than once: {', '.join(repeated)}")
    return problems


def _scored_ids(data: object) -> list[str] | None:
    """The criterion ids in a raw reply, if it has a list of criteria at all."""
    items = data.get("criteria") if isinstance(data, dict) else None
    if not isinstance(items, list):
        return None
    return [c["id"] for c in items if isinstance(c, dict) and isinstance(c.get("id"), str)]


@dataclass(frozen=True)
class EvidenceTally:
    """How many evidence quotes (criteria and patterns) were checked and held up."""

    quotes: int
    verified: int

    @property
    def rate(self) -> float | None:
        return round(self.verified / self.quotes, 4) if self.quotes else None


def _quotes(criteria, patterns):
    for c in criteria:
        for ev in c.get("evidence") or []:
            yield str(c.get("id")), ev
    for p in patterns or []:
        yield f"pattern {p.get('type')}", p


def evidence_tally(criteria, patterns, segments) -> EvidenceTally:
    transcript = turns(segments)
    checked = [
        quote_problem(
            str(q.get("quote", "")), float(q.get("start", -1)), str(q.get("speaker")), transcript
        )
        for _, q in _quotes(criteria, patterns)
    ]
    return EvidenceTally(quotes=len(checked), verified=sum(p is None for p in checked))


def business_rule_violations(
    criteria: Sequence[Mapping[str, Any]],
    preset: Preset,
    segments: Sequence[Any],
    total: float | None = None,
    patterns: Sequence[Mapping[str, Any]] | None = None,
) -> list[str]:
    """The business rules of a scored call, in one place: the scorers apply them to their
    output and the `analysis_business_rules` check re-applies them to the stored record.

    `criteria` are dicts with `id`, `score` (None = N/A) and `evidence` (`quote`, `start`,
    `speaker`); `segments` the diarized transcript's lines (`start`, `end`, `speaker`,
    `text`) that every quote must be grounded in; `patterns` the detected patterns (their
    quotes are grounded too, and they decide whether conditional criteria apply);
    `total`, when given, must equal the weighted total computed from the scores.
    """
    ids = [str(c.get("id")) for c in criteria]
    problems = coverage_problems(ids, preset)
    found = {str(p.get("type")) for p in patterns or []}
    by_id = {c.id: c for c in preset.criteria}
    in_scale = True
    for c in criteria:
        cid, score = c.get("id"), c.get("score")
        spec = by_id.get(str(cid))
        condition = spec.applies_when if spec else None
        if score is None:
            if spec is not None and not spec.may_be_na:
                in_scale = False
                problems.append(f"{cid}: scored N/A but the criterion always applies")
            elif condition and condition.pattern in found and not spec.allow_na:
                problems.append(
                    f"{cid}: scored N/A but its condition holds (pattern "
                    f"{condition.pattern!r} was found)"
                )
            continue
        if (
            not isinstance(score, int)
            or isinstance(score, bool)
            or not (preset.scale.min <= score <= preset.scale.max)
        ):
            in_scale = False
            problems.append(
                f"{cid}: score {score!r} outside scale {preset.scale.min}-{preset.scale.max}"
            )
        if condition and condition.pattern not in found:
            problems.append(
                f"{cid}: scored although it applies only when pattern {condition.pattern!r} "
                "is found, and it was not: score it null (N/A)"
            )
        if not c.get("evidence"):
            problems.append(f"{cid}: no evidence quote for score {score!r}")
    known_patterns = {p.id for p in preset.patterns}
    for p in patterns or []:
        if known_patterns and p.get("type") not in known_patterns:
            problems.append(
                f"pattern type {p.get('type')!r} is not one of the preset's: "
                f"{', '.join(sorted(known_patterns))}"
            )
    transcript = turns(segments)
    for label, q in _quotes(criteria, patterns):
        problem = quote_problem(
            str(q.get("quote", "")), float(q.get("start", -1)), str(q.get("speaker")), transcript
        )
        if problem:
            problems.append(f"{label}: {problem}")
    if total is not None and in_scale and not problems:
        try:
            expected = weighted_total({c["id"]: c["score"] for c in criteria}, preset)
        except ValueError as exc:
            problems.append(str(exc))
        else:
            if abs(expected - total) > 0.05:
                problems.append(f"total {total} != weighted total {expected}")
    elif in_scale and all(c.get("score") is None for c in criteria) and criteria:
        problems.append("no criterion applies to this call: every score is N/A")
    return problems


def rule_violations(output: ScorerOutput, preset: Preset, segments: Sequence[Any]) -> list[str]:
    """Business rules on a scorer's reply (see `business_rule_violations`)."""
    return business_rule_violations(
        [c.model_dump() for c in output.criteria],
        preset,
        segments,
        patterns=[p.model_dump() for p in output.patterns],
    )


_FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\r?\n?(.*?)```", re.DOTALL)
# Where a JSON object may start inside prose: `{` then a key or the closing brace.
_OBJECT_START = re.compile(r"\{\s*[\"}]")
# Decoding is tried at this many candidate starts at most, so prose full of braces
# cannot make parsing quadratic.
_MAX_CANDIDATES = 50


def _objects_in(text: str) -> list[object]:
    """The top-level JSON objects embedded in `text`, in order."""
    decoder = json.JSONDecoder()
    found, pos, tries = [], 0, 0
    while tries < _MAX_CANDIDATES:
        match = _OBJECT_START.search(text, pos)
        if match is None:
            break
        tries += 1
        try:
            value, end = decoder.raw_decode(text, match.start())
        except json.JSONDecodeError:
            pos = match.start() + 1
            continue
        if isinstance(value, dict) and value:  # `{}` in prose is no candidate reply
            found.append(value)
        pos = end
    return found


def _extract_json(raw: str) -> tuple[object | None, str | None]:
    """The JSON value of a reply, tolerating a ```json fence or prose around one object.

    Returns (value, None) or (None, why not)."""
    if not isinstance(raw, str) or not raw.strip():
        return None, "reply is empty: expected one JSON object"
    try:
        return json.loads(raw), None
    except json.JSONDecodeError as exc:
        strict_error = exc
    fenced = [block for block in _FENCE.findall(raw) if block.strip()]
    for block in fenced if len(fenced) == 1 else []:
        try:
            return json.loads(block), None
        except json.JSONDecodeError as exc:
            return None, f"reply is not valid JSON: the fenced block does not parse: {exc}"
    objects = _objects_in(raw)
    if len(objects) == 1:
        return objects[0], None
    if len(objects) > 1:
        return None, f"reply holds {len(objects)} JSON objects: expected exactly one"
    return None, f"reply is not valid JSON: {strict_error}"


def parse_output(
    raw: str, preset: Preset, segments: Sequence[Any]
) -> tuple[ScorerOutput | None, list[str]]:
    """Parse and fully validate a scorer reply; return (output, []) or (None, errors).

    Two layers: the JSON schema (with pydantic), then the business rules. The reply may
    be wrapped in a ```json fence or have prose around its one JSON object (providers
    without structured output); anything else is rejected."""
    data, problem = _extract_json(raw)
    if problem:
        return None, [problem]
    errors = schema_errors(data, response_schema(preset))
    if errors:
        # A wrong number of criteria fails the schema before the rules run; still name
        # which ids are missing or extra, so the retry feedback is actionable.
        ids = _scored_ids(data)
        coverage = coverage_problems(ids, preset) if ids is not None else []
        return None, [f"schema: {e}" for e in errors] + coverage
    try:
        output = ScorerOutput.model_validate(data)
    except ValidationError as exc:
        return None, [f"model: {e['loc']}: {e['msg']}" for e in exc.errors()]
    violations = rule_violations(output, preset, segments)
    if violations:
        return None, violations
    return output, []
