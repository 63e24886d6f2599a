"""Asset-check logic, as plain functions so tests can feed them bad data directly.

Each returns a `dg.AssetCheckResult`; the assets attach them as in-asset (blocking)
checks so a failed check stops the downstream assets of the same call.
"""

from __future__ import annotations

import dagster as dg

from callqa.analysis import published_schema
from callqa.audio import AudioProbe
from callqa.config.models import Preset
from callqa.diarization import DiarizedTranscript
from callqa.scoring.evidence import quote_found
from callqa.scoring.rubric import weighted_total
from callqa.scoring.validation import coverage_problems, schema_errors
from callqa.transcription import Transcript, covered_seconds

RECORDING_DECODABLE = "recording_decodable"
TRANSCRIPT_COVERS_SPEECH = "transcript_covers_speech"
BOTH_ROLES_PRESENT = "both_roles_present"
ANALYSIS_MATCHES_SCHEMA = "analysis_matches_schema"
ANALYSIS_BUSINESS_RULES = "analysis_business_rules"

MIN_SPEECH_COVERAGE = 0.8
# A channel with less speech than this did not really "speak" (a cough, a click).
MIN_SPEECH_S = 1.0


def check_recording(probe: AudioProbe) -> dg.AssetCheckResult:
    problems = []
    if probe.duration_s <= 0:
        problems.append(f"duration is {probe.duration_s} s")
    if probe.channels not in (1, 2):
        problems.append(f"{probe.channels} channels")
    if probe.sample_rate <= 0:
        problems.append("unknown sample rate")
    return dg.AssetCheckResult(
        check_name=RECORDING_DECODABLE,
        passed=not problems,
        metadata={
            "duration_s": probe.duration_s,
            "channels": probe.channels,
            "problems": "; ".join(problems) or "none",
        },
    )


def check_transcript_coverage(
    transcript: Transcript, regions_by_channel: list[list[tuple[float, float]]]
) -> dg.AssetCheckResult:
    """Energy-detected speech must mostly fall inside transcribed segments."""
    speech = sum(e - s for regions in regions_by_channel for s, e in regions)
    covered = sum(
        covered_seconds(regions, transcript.channels[i].segments)
        for i, regions in enumerate(regions_by_channel)
    )
    coverage = covered / speech if speech else 1.0
    passed = speech > 0 and coverage >= MIN_SPEECH_COVERAGE
    return dg.AssetCheckResult(
        check_name=TRANSCRIPT_COVERS_SPEECH,
        passed=passed,
        metadata={
            "speech_s": round(speech, 2),
            "covered_s": round(covered, 2),
            "coverage": round(coverage, 3),
            "min_coverage": MIN_SPEECH_COVERAGE,
            "problem": "no speech detected"
            if speech == 0
            else ("none" if passed else "transcript misses detected speech"),
        },
    )


def check_roles(
    diarized: DiarizedTranscript, speech_s_by_role: dict[str, float]
) -> dg.AssetCheckResult:
    spoke = {role for role, secs in speech_s_by_role.items() if secs >= MIN_SPEECH_S}
    present = diarized.roles_present()
    missing = sorted(spoke - present)
    return dg.AssetCheckResult(
        check_name=BOTH_ROLES_PRESENT,
        passed=not missing,
        # A mono heuristic cannot know who spoke: warn instead of blocking the call.
        severity=dg.AssetCheckSeverity.ERROR
        if diarized.method.startswith("stereo")
        else dg.AssetCheckSeverity.WARN,
        metadata={
            "roles_with_speech": ", ".join(sorted(spoke)) or "none",
            "roles_in_transcript": ", ".join(sorted(present)) or "none",
            "missing": ", ".join(missing) or "none",
            "method": diarized.method,
        },
    )


def check_analysis_schema(record: dict) -> dg.AssetCheckResult:
    errors = schema_errors(record, published_schema())
    return dg.AssetCheckResult(
        check_name=ANALYSIS_MATCHES_SCHEMA,
        passed=not errors,
        metadata={"errors": len(errors), "first_errors": "\n".join(errors[:5]) or "none"},
    )


def analysis_rule_violations(record: dict, preset: Preset) -> list[str]:
    """The business rules, re-checked on the stored record itself (not the scorer output)."""
    scores = record.get("scores", {})
    criteria = {c.get("id"): c for c in scores.get("criteria", [])}
    problems = coverage_problems([str(cid) for cid in criteria], preset)
    missing = any(p.startswith("missing") for p in problems)
    transcript = "\n".join(
        s.get("text", "") for s in record.get("transcript", {}).get("segments", [])
    )
    for cid, c in criteria.items():
        score = c.get("score")
        if not isinstance(score, int) or not preset.scale.min <= score <= preset.scale.max:
            problems.append(f"{cid}: score {score!r} outside {preset.scale.min}-{preset.scale.max}")
        for ev in c.get("evidence", []):
            if not quote_found(ev.get("quote", ""), transcript):
                problems.append(f"{cid}: evidence not in transcript: {ev.get('quote')!r}")
    if not missing and not any("outside" in p for p in problems):
        expected = weighted_total(
            {cid: criteria[cid]["score"] for cid in preset.criterion_ids}, preset
        )
        if abs(expected - scores.get("total", -1)) > 0.05:
            problems.append(f"total {scores.get('total')} != weighted total {expected}")
    return problems


def check_analysis_rules(record: dict, preset: Preset) -> dg.AssetCheckResult:
    problems = analysis_rule_violations(record, preset)
    return dg.AssetCheckResult(
        check_name=ANALYSIS_BUSINESS_RULES,
        passed=not problems,
        metadata={"violations": len(problems), "details": "\n".join(problems[:10]) or "none"},
    )
