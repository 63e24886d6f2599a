"""Validation of scorer output: JSON schema, pydantic, and the business rules."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from callqa.config.models import Preset
from callqa.scoring.evidence import quote_found
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


def business_rule_violations(
    criteria: Sequence[Mapping[str, Any]],
    preset: Preset,
    transcript_text: str,
    total: float | None = None,
) -> list[str]:
    """The business rules of a scored call, in one place: the scorers apply them to their
    output and the `analysis_business_rules` check re-applies them to the stored record.

    `criteria` are dicts with `id`, `score` and `evidence` (`quote`, `start`);
    `transcript_text` is the spoken words only (no speaker labels or timestamps, so a
    quote of "operator" is not found in a label); `total`, when given, must equal the
    weighted total computed from the scores.
    """
    ids = [str(c.get("id")) for c in criteria]
    problems = coverage_problems(ids, preset)
    in_scale = True
    for c in criteria:
        cid, score = c.get("id"), c.get("score")
        if not isinstance(score, int) or not preset.scale.min <= score <= preset.scale.max:
            in_scale = False
            problems.append(
                f"{cid}: score {score!r} outside scale {preset.scale.min}-{preset.scale.max}"
            )
        for ev in c.get("evidence") or []:
            if not quote_found(ev.get("quote", ""), transcript_text):
                problems.append(
                    f"{cid}: evidence quote not found in transcript: {ev.get('quote')!r}"
                )
    if total is not None and in_scale and not problems:
        expected = weighted_total({c["id"]: c["score"] for c in criteria}, preset)
        if abs(expected - total) > 0.05:
            problems.append(f"total {total} != weighted total {expected}")
    return problems


def rule_violations(output: ScorerOutput, preset: Preset, transcript_text: str) -> list[str]:
    """Business rules on a scorer's reply (see `business_rule_violations`)."""
    return business_rule_violations(
        [c.model_dump() for c in output.criteria], preset, transcript_text
    )


def parse_output(
    raw: str, preset: Preset, transcript_text: str
) -> tuple[ScorerOutput | None, list[str]]:
    """Parse and fully validate a scorer reply; return (output, []) or (None, errors)."""
    try:
        data = json.loads(raw)
    except (TypeError, json.JSONDecodeError) as exc:
        return None, [f"reply is not valid JSON: {exc}"]
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
    violations = rule_violations(output, preset, transcript_text)
    if violations:
        return None, violations
    return output, []
