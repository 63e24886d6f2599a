"""Asset-check logic, as plain functions so tests can feed them bad data directly.

Each returns a `dg.AssetCheckResult`; the assets attach them as in-asset (blocking)
checks so a failed check stops the downstream assets of the same call. Every result says
what it found in its `description` and names the problem in its `problem` metadata
("none" when it passed), which is what the UI shows for that call's check.

The specs (`spec()`) carry the asset's partitions definition, so a check evaluated while
materializing partition `k` is recorded for partition `k`: the UI lists check results
per call (or per tenant), not as one result that "belongs to no partition".
"""

from __future__ import annotations

import warnings

import dagster as dg

from callqa.calls.record import published_schema
from callqa.calls.service import validate_record
from callqa.config.models import Preset
from callqa.scoring.validation import schema_errors
from callqa.speech.audio import AudioProbe
from callqa.speech.diarization import DiarizedTranscript
from callqa.speech.quality import (
    low_confidence_roles,
    role_metadata,
    silence_reason,
    silent_roles,
)
from callqa.speech.transcript import Transcript, covered_seconds

RECORDING_DECODABLE = "recording_decodable"
TRANSCRIPT_COVERS_SPEECH = "transcript_covers_speech"
BOTH_ROLES_PRESENT = "both_roles_present"
ANALYSIS_MATCHES_SCHEMA = "analysis_matches_schema"
ANALYSIS_BUSINESS_RULES = "analysis_business_rules"

# What each check verifies and why it blocks: shown on the check in the Dagster UI.
DESCRIPTIONS = {
    RECORDING_DECODABLE: (
        "The staged recording decodes to 1 or 2 channels of audio with a positive duration "
        "and a known sample rate. Blocking: nothing downstream can transcribe a recording "
        "that does not decode."
    ),
    TRANSCRIPT_COVERS_SPEECH: (
        "At least 80 % of the speech that a simple energy detector finds in the audio lies "
        "inside transcribed segments: a second opinion independent of the speech-to-text "
        "model. Blocking: scoring a transcript that misses what was said would score the "
        "wrong call."
    ),
    BOTH_ROLES_PRESENT: (
        "Both operator and customer speak in the diarized transcript. Blocking when a stereo "
        "channel with speech (at least 1 s) left no transcript line: speech-to-text lost a "
        "party the channel map identifies. A warning when a role never spoke (a silent "
        "channel, one voice in a mono call) or the mono role decision has low confidence: "
        "the call is scored and its record and summary carry the caveat."
    ),
    ANALYSIS_MATCHES_SCHEMA: (
        "The analysis record validates against the published JSON schema "
        "(callqa/schemas/analysis.schema.json). Blocking: a record that fails is never "
        "stored, so consumers of the analyses table only see valid records."
    ),
    ANALYSIS_BUSINESS_RULES: (
        "The analysis follows the preset's rules: every criterion present once, scores within "
        "the scale, every evidence quote found in the transcript, and the total equal to the "
        "weighted total computed by code. Blocking: a record that fails is never stored and "
        "cannot reach the aggregates."
    ),
}

MIN_SPEECH_COVERAGE = 0.8
# A channel with less speech than this did not really "speak" (a cough, a click).
MIN_SPEECH_S = 1.0


def spec(
    name: str,
    asset: str,
    partitions_def: dg.PartitionsDefinition,
    *,
    blocking: bool = True,
    description: str | None = None,
) -> dg.AssetCheckSpec:
    """An in-asset check partitioned like its asset, so each result belongs to a partition.

    `AssetCheckSpec(partitions_def=...)` is a preview API in Dagster 1.13 (it warns once at
    definition time); the execution side is stable: an `AssetCheckResult` reported while
    materializing partition `k` becomes an evaluation (and check execution record) for `k`.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return dg.AssetCheckSpec(
            name,
            asset=asset,
            blocking=blocking,
            partitions_def=partitions_def,
            description=description or DESCRIPTIONS[name],
        )


def _result(
    name: str,
    problem: str | None,
    metadata: dict,
    passed_text: str,
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
    failed_detail: str | None = None,
) -> dg.AssetCheckResult:
    """A check result whose description says what was found (the problem, with
    `failed_detail` if given, when it failed) and whose `problem` metadata names what is
    wrong ("none" when it passed)."""
    if problem is None:
        description = passed_text
    else:
        description = f"{problem}: {failed_detail}" if failed_detail else problem
    return dg.AssetCheckResult(
        check_name=name,
        passed=problem is None,
        severity=severity,
        description=description,
        metadata={"problem": problem or "none", **metadata},
    )


def check_recording(probe: AudioProbe) -> dg.AssetCheckResult:
    problems = []
    if probe.duration_s <= 0:
        problems.append(f"duration is {probe.duration_s} s")
    if probe.channels not in (1, 2):
        problems.append(f"{probe.channels} channels")
    if probe.sample_rate <= 0:
        problems.append("unknown sample rate")
    return _result(
        RECORDING_DECODABLE,
        f"recording not usable: {'; '.join(problems)}" if problems else None,
        {
            "duration_s": probe.duration_s,
            "channels": probe.channels,
            "problems": "; ".join(problems) or "none",
        },
        f"{probe.duration_s:.1f} s, {probe.channels} channel(s), {probe.sample_rate} Hz",
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
    if speech == 0:
        problem = "no speech detected"
    elif coverage < MIN_SPEECH_COVERAGE:
        problem = "transcript misses detected speech"
    else:
        problem = None
    measured = (
        f"{coverage:.0%} of {speech:.1f} s of detected speech is transcribed "
        f"(at least {MIN_SPEECH_COVERAGE:.0%} required)"
    )
    return _result(
        TRANSCRIPT_COVERS_SPEECH,
        problem,
        {
            "speech_s": round(speech, 2),
            "covered_s": round(covered, 2),
            "coverage": round(coverage, 3),
            "min_coverage": MIN_SPEECH_COVERAGE,
        },
        measured,
        failed_detail=measured if speech else None,
    )


def check_roles(
    diarized: DiarizedTranscript, speech_s_by_role: dict[str, float]
) -> dg.AssetCheckResult:
    """Both roles must speak. A role whose audio has speech but no transcript line was lost
    by speech-to-text (blocking on stereo, where the channel says who it is); a role that
    never spoke (a dead channel, one voice in a mono call) fails as a warning: the call is
    still scored and its record and summary say the conversation was one-sided."""
    present = diarized.roles_present()
    lost = sorted(
        role
        for role, secs in speech_s_by_role.items()
        if secs >= MIN_SPEECH_S and role not in present
    )
    never = [r for r in silent_roles(diarized) if r not in lost]
    problems = [f"no transcript lines for role(s) that spoke: {', '.join(lost)}"] if lost else []
    problems += [f"the {role} never speaks ({silence_reason(diarized)})" for role in never]
    low = low_confidence_roles(diarized)
    if low:
        problems.append(low)
    stereo = diarized.method.startswith("stereo")
    return _result(
        BOTH_ROLES_PRESENT,
        "; ".join(problems) or None,
        {
            "roles_with_speech": ", ".join(
                sorted(r for r, secs in speech_s_by_role.items() if secs >= MIN_SPEECH_S)
            )
            or "none",
            "roles_in_transcript": ", ".join(sorted(present)) or "none",
            "missing": ", ".join(lost) or "none",
            "never_spoke": ", ".join(never) or "none",
            "method": diarized.method,
            **role_metadata(diarized),
        },
        f"roles in the transcript: {', '.join(sorted(present)) or 'none'} ({diarized.method})",
        # Only a stereo channel that spoke but left no transcript blocks: speech-to-text
        # lost a party the channel map identifies. Everything else is scored, with caveats.
        severity=dg.AssetCheckSeverity.ERROR if stereo and lost else dg.AssetCheckSeverity.WARN,
    )


def schema_check_result(errors: list[str]) -> dg.AssetCheckResult:
    return _result(
        ANALYSIS_MATCHES_SCHEMA,
        f"{len(errors)} schema error(s), first: {errors[0]}" if errors else None,
        {"errors": len(errors), "first_errors": "\n".join(errors[:5]) or "none"},
        "the record matches the published analysis schema",
    )


def rules_check_result(problems: list[str]) -> dg.AssetCheckResult:
    return _result(
        ANALYSIS_BUSINESS_RULES,
        f"{len(problems)} rule violation(s): {'; '.join(problems[:3])}" if problems else None,
        {"violations": len(problems), "details": "\n".join(problems[:10]) or "none"},
        "criteria, scale, evidence quotes and weighted total all check out",
    )


def check_analysis_schema(record: dict) -> dg.AssetCheckResult:
    return schema_check_result(schema_errors(record, published_schema()))


def analysis_rule_violations(record: dict, preset: Preset) -> list[str]:
    """The business rules, re-checked on the stored record itself (not the scorer output)."""
    return validate_record(record, preset).rules


def check_analysis_rules(record: dict, preset: Preset) -> dg.AssetCheckResult:
    return rules_check_result(analysis_rule_violations(record, preset))
