"""`callqa eval scoring` and `callqa grades load`: how far to trust the scores.

callqa eval scoring    score the shipped labelled set and compare with its human scores
callqa grades load     load analysts' human scores (CSV) into the warehouse
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from callqa.calls.backends import ScorerBackends
    from callqa.evaluation.labelled import LabelledSet

FIGURES = ("pairs", "excluded", "exact", "within_one", "qwk", "spearman", "bias")


def _warehouse():
    from callqa.cli import _warehouse

    return _warehouse()


def _score_calls(labelled: LabelledSet, backends: ScorerBackends) -> list[dict]:
    """Each labelled call scored by the scorer the real code would use for its preset."""
    from callqa.errors import ScoringError
    from callqa.scoring.rubric import weighted_total
    from callqa.scoring.validation import evidence_tally

    results = []
    for call in labelled.calls.values():
        preset = labelled.presets[call.category]
        result = {
            "call_id": call.call_id,
            "category": call.category,
            "preset": preset.id,
            "designed_defects": call.designed_defects,
            "valid": False,
            "scores": {},
            "total": None,
            "quotes": 0,
            "verified": 0,
            "error": None,
        }
        try:
            outcome = backends.for_preset(preset).score(call.transcript, preset, call.category)
        except ScoringError as exc:  # e.g. a criterion the rules scorer has no rule for
            results.append({**result, "error": str(exc)})
            continue
        if outcome.output is None:
            results.append({**result, "error": outcome.last_error or "no valid output"})
            continue
        criteria = [c.model_dump() for c in outcome.output.criteria]
        tally = evidence_tally(
            criteria,
            [p.model_dump() for p in outcome.output.patterns],
            call.transcript.segments,
        )
        scores = {c["id"]: c["score"] for c in criteria}
        result.update(
            valid=True,
            scores=scores,
            total=weighted_total(scores, preset),
            quotes=tally.quotes,
            verified=tally.verified,
            prompt_version=outcome.prompt_version,
            scorer=outcome.scorer,
            model=outcome.model,
        )
        results.append(result)
    return results


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def evaluate_scoring(labelled: LabelledSet, backends: ScorerBackends) -> dict:
    """Score every labelled call and compare with the human scores: per category and
    criterion (model vs each human grade) and between graders where two graded a call;
    plus the share of calls scored validly and the evidence verification rate."""
    from callqa.evaluation.agreement import (
        HUMAN_HUMAN,
        MODEL_HUMAN,
        agreement,
        agreement_rows,
        grader_pairs,
        model_pairs,
    )

    results = _score_calls(labelled, backends)
    grades = [g.as_row() for g in labelled.grade_list]
    categories = {}
    all_model, all_human, all_first, all_second = [], [], [], []
    for category, preset in labelled.presets.items():
        mine = [r for r in results if r["category"] == category]
        ids = {r["call_id"] for r in mine}
        versions = [
            {
                "external_id": r["call_id"],
                "preset": preset.id,
                "prompt_version": r["prompt_version"],
                "variant": "control",
                "scores": r["scores"],
            }
            for r in mine
            if r["valid"]
        ]
        graded = [g for g in grades if g["external_id"] in ids]
        rows = agreement_rows(
            versions,
            graded,
            {cid: preset.id for cid in ids},
            {preset.id: (preset.scale.min, preset.scale.max)},
        )
        pairs = model_pairs({v["external_id"]: v["scores"] for v in versions}, graded)
        all_model += [p["model"] for p in pairs]
        all_human += [p["human"] for p in pairs]
        between = grader_pairs(graded)
        all_first += [p["first"] for p in between]
        all_second += [p["second"] for p in between]
        categories[category] = {
            "preset": preset.id,
            "prompt_version": preset.prompt_version,
            "calls": len(mine),
            "valid": sum(r["valid"] for r in mine),
            "graders": sorted({g["grader"] for g in graded}),
            "double_graded_calls": len({p["external_id"] for p in between}),
            "model_human": [_figures(r) for r in rows if r["comparison"] == MODEL_HUMAN],
            "human_human": [_figures(r) for r in rows if r["comparison"] == HUMAN_HUMAN],
        }
    scales = {(p.scale.min, p.scale.max) for p in labelled.presets.values()}
    overall = {}
    if len(scales) == 1:  # pooling across presets only means something on one scale
        low, high = scales.pop()
        overall = {
            "model_human": agreement(all_model, all_human, low, high).as_dict(),
            "human_human": agreement(all_first, all_second, low, high).as_dict(),
        }
    quotes = sum(r["quotes"] for r in results)
    verified = sum(r["verified"] for r in results)
    valid = sum(r["valid"] for r in results)
    scorer = next((r["scorer"] for r in results if r["valid"]), backends.scorer)
    return {
        "labelled_set": str(labelled.directory),
        "scorer": scorer,
        "calls": len(results),
        "valid": valid,
        "valid_rate": _rate(valid, len(results)),
        "evidence": {"quotes": quotes, "verified": verified, "rate": _rate(verified, quotes)},
        "categories": categories,
        "overall": overall,
        "results": [
            {k: v for k, v in r.items() if k not in ("quotes", "verified")} for r in results
        ],
    }


def _figures(row: dict) -> dict:
    return {"criterion": row["criterion"], **{k: row[k] for k in FIGURES}}


def _num(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def _pct(part: int, whole: int) -> str:
    return f"{part}/{whole} ({100 * part / whole:.1f}%)" if whole else f"{part}/{whole}"


def _line(label: str, f: dict) -> str:
    return (
        f"  {label:<20} {f['pairs']:>5} {f['excluded']:>4}  {_num(f['exact']):>5}  "
        f"{_num(f['within_one']):>5}  {_num(f['qwk']):>5}  {_num(f['spearman']):>8}  "
        f"{_num(f['bias'], signed=True):>5}"
    )


def _header(first: str) -> str:
    return (
        f"  {first:<20} {'pairs':>5} {'N/A':>4}  {'exact':>5}  {'±1':>5}  {'QWK':>5}  "
        f"{'Spearman':>8}  {'bias':>5}"
    )


def format_report(report: dict) -> str:
    """The evaluation as text: one table per category (criteria, then '*' = pooled)."""
    out = [
        f"Labelled set: {report['calls']} calls ({report['labelled_set']}), scored by "
        f"{report['scorer']}",
        f"Validly scored: {_pct(report['valid'], report['calls'])}; evidence quotes "
        f"verified: {_pct(report['evidence']['verified'], report['evidence']['quotes'])}",
        "Model vs each human grade; N/A = pairs left out because a side was N/A; "
        "bias = mean model - mean human.",
    ]
    header = _header("criterion")
    for category, c in report["categories"].items():
        out += [
            "",
            f"{category}: preset {c['preset']} (prompt version {c['prompt_version']}), "
            f"{c['calls']} calls, {c['valid']} scored validly",
        ]
        if not c["model_human"]:
            out.append("  no validly scored call has human scores")
        else:
            out.append(header)
            out += [_line(f["criterion"], f) for f in c["model_human"]]
        pooled = next((f for f in c["human_human"] if f["criterion"] == "*"), None)
        if pooled:
            out.append(
                _line(f"graders ({c['double_graded_calls']} calls)", pooled)
                + f"   ({' vs '.join(c['graders'])}, all criteria)"
            )
    if report["overall"]:
        out += ["", "All categories pooled:", _header("comparison")]
        out.append(_line("model vs human", report["overall"]["model_human"]))
        out.append(_line("grader vs grader", report["overall"]["human_human"]))
    return "\n".join(out)


def cmd_eval_scoring(args: argparse.Namespace) -> int:
    from callqa import settings
    from callqa.calls.backends import backends_from_settings
    from callqa.evaluation.labelled import load_labelled_set

    labelled = load_labelled_set(Path(args.set) if args.set else None)
    _, backends = backends_from_settings(settings.load_settings())
    if args.scorer:
        backends = replace(backends, scorer=args.scorer)
    report = evaluate_scoring(labelled, backends)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def _call_presets(registry, tenant, known: dict[str, dict], ids: set[str]) -> dict:
    """The preset whose rubric each known, graded call's grades must fit: the one it was
    scored with, else the one its category maps to."""
    presets = {}
    for external_id in ids & set(known):
        info = known[external_id]
        preset_id = info["preset"] if info["preset"] in registry.presets else None
        presets[external_id] = registry.preset(preset_id or tenant.preset_id_for(info["category"]))
    return presets


def cmd_grades_load(args: argparse.Namespace) -> int:
    from callqa import settings
    from callqa.config.registry import default_registry
    from callqa.evaluation.labelled import GradesError, check_grades, read_grades_csv

    registry = default_registry()
    tenant = registry.tenant(args.tenant)
    path = Path(args.file)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise GradesError(f"{path}: cannot read: {exc}") from exc
    grades = read_grades_csv(text, str(path))
    with _warehouse() as warehouse:
        known = warehouse.known_calls(tenant.id)
        presets = _call_presets(registry, tenant, known, {g.external_id for g in grades})
        problems, unknown = check_grades(grades, presets)
        if problems:  # nothing is loaded from a file with errors: fix it and load again
            listed = "\n  ".join(problems[:20])
            more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
            raise GradesError(
                f"{path}: {len(problems)} problem(s), nothing loaded:\n  {listed}{more}"
            )
        kept = [g for g in grades if g.external_id in presets]
        loaded = warehouse.load_human_grades(tenant.id, [g.as_row() for g in kept])
    lines_of: dict[str, list[int]] = {}
    for g in unknown:
        lines_of.setdefault(g.external_id, []).append(g.line)
    for external_id, lines in lines_of.items():
        print(
            f"not loaded: call {external_id} (line{'s' if len(lines) > 1 else ''} "
            f"{', '.join(map(str, lines))}): tenant {tenant.id} has no such call"
        )
    calls = len({g.external_id for g in kept})
    graders = len({g.grader for g in kept})
    print(
        f"loaded {loaded} grade(s) for {calls} call(s) by {graders} grader(s) into "
        f"human_grades of tenant {tenant.id} in {settings.redact_url(settings.database_url())}"
        + (
            f"; {len(unknown)} row(s) for {len(lines_of)} unknown call(s) skipped"
            if unknown
            else ""
        ),
        file=sys.stderr,
    )
    return 1 if unknown and not loaded else 0


def add_parsers(sub) -> None:
    evaluate = sub.add_parser(
        "eval",
        help="measure the scorer against human graders, or speech on a labelled speech set",
        description=(
            "Evaluate scoring against human scores (see `eval scoring -h`), or speech "
            "recognition and diarization on labelled audio (see `eval speech -h`)."
        ),
    )
    eval_actions = evaluate.add_subparsers(dest="eval_action", required=True, metavar="ACTION")
    scoring = eval_actions.add_parser(
        "scoring",
        help="score the labelled set and report agreement with its human scores",
        description=(
            "Score every call of the labelled set (callqa/evaluation/labelled_set: calls with "
            "designed defects, graded by QA leads) with the scorer the pipeline uses for its "
            "category's bundled preset, and print per category and criterion: pairs, exact "
            "agreement, agreement within ±1, quadratic-weighted Cohen's kappa, Spearman "
            "correlation and bias (mean model - mean human); the agreement between the two "
            "graders where both graded a call; the share of calls scored validly and the "
            "evidence verification rate. N/A pairs are left out and counted."
        ),
    )
    scoring.add_argument(
        "--set",
        default=None,
        metavar="DIR",
        help="a labelled set folder (calls/*.json and human_scores.csv; default: the bundled one)",
    )
    scoring.add_argument(
        "--scorer",
        choices=["rules", "llm"],
        default=None,
        help="rules: offline rules; llm: litellm with CALLQA_LLM_* settings (default: "
        "CALLQA_SCORER, else the preset's)",
    )
    scoring.add_argument("--json", action="store_true", help="print the figures as JSON")
    scoring.set_defaults(func=cmd_eval_scoring)
    from callqa.cli_speech_eval import add_parser as add_speech_parser

    add_speech_parser(eval_actions)

    grades = sub.add_parser(
        "grades",
        help="load human graders' scores for the grader_agreement asset",
        description="Human scores of a tenant's calls (see `grades load -h`).",
    )
    grade_actions = grades.add_subparsers(dest="grades_action", required=True, metavar="ACTION")
    load = grade_actions.add_parser(
        "load",
        help="load a CSV of human scores into human_grades",
        description=(
            "Load a CSV with the columns call_id, criterion, score, grader (an empty score, "
            "NA or N/A = the grader marked it N/A) into the warehouse's human_grades table; "
            "a grader's new score for a call and criterion replaces the old one. Every grade "
            "must fit the rubric of the preset the call was scored with (else the one its "
            "category maps to): known criterion, score within the scale. A file with errors "
            "loads nothing, and each error names its line. Rows for calls the tenant does "
            "not have are reported and not loaded. The grader_agreement asset compares them "
            "with the model's scores."
        ),
    )
    load.add_argument("file", metavar="FILE.csv", help="the human scores")
    load.add_argument("--tenant", required=True, help="tenant whose calls were graded")
    load.set_defaults(func=cmd_grades_load)
