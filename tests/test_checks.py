"""Asset-check logic: every check passes on good data and fails, saying why, on bad data."""

from __future__ import annotations

import copy

import dagster as dg
import pytest

from callqa.assets import checks
from callqa.calls.record import build_record
from callqa.config.models import Preset
from callqa.scoring.outcome import Attempt, ScoringOutcome
from callqa.scoring.output import CriterionResult, Evidence, ScorerOutput
from callqa.scoring.rubric import normalized_weights, weighted_total
from callqa.speech.audio import AudioProbe
from callqa.speech.diarization import DiarizedSegment, DiarizedTranscript, conversation_metrics
from callqa.speech.transcript import ChannelTranscript, Segment, Transcript

PROBE = AudioProbe(
    sha256="0" * 64,
    size_bytes=160_044,
    codec="pcm_s16le",
    container="wav",
    channels=2,
    sample_rate=8000,
    duration_s=10.0,
)


def _meta(result: dg.AssetCheckResult, key: str):
    return result.metadata[key].value


def _preset() -> Preset:
    return Preset(
        id="p1",
        scale={"min": 1, "max": 5},
        criteria=[
            {"id": "greeting", "name": "Greeting", "weight": 1, "description": "hello"},
            {"id": "closing", "name": "Closing", "weight": 3, "description": "next step"},
        ],
        prompt_template="$transcript",
    )


def _diarized(method="stereo-channel-map", roles=("operator", "customer")) -> DiarizedTranscript:
    lines = {
        "operator": (0, 4, "Hello, Northwind, this is Ann."),
        "customer": (4.5, 8, "Hi, I'd like a cheaper plan."),
    }
    segments = [
        DiarizedSegment(start=lines[r][0], end=lines[r][1], speaker=r, text=lines[r][2])
        for r in roles
    ]
    return DiarizedTranscript(
        method=method,
        language="en",
        duration_s=10,
        segments=segments,
        metrics=conversation_metrics(segments, 10),
    )


def _record(preset: Preset | None = None) -> dict:
    preset = preset or _preset()
    output = ScorerOutput(
        criteria=[
            CriterionResult(
                id="greeting",
                score=5,
                rationale="named the company",
                evidence=[Evidence(quote="this is Ann", start=0, speaker="operator")],
            ),
            CriterionResult(
                id="closing",
                score=2,
                rationale="no next step",
                evidence=[Evidence(quote="a cheaper plan", start=4.5, speaker="customer")],
            ),
        ],
        summary="Friendly opening, weak close.",
        recommendations=["Propose a concrete next step."],
    )
    outcome = ScoringOutcome(
        scorer="rules",
        model=None,
        prompt_version=preset.prompt_version,
        output=output,
        attempts=[
            Attempt(
                attempt=1,
                scorer="rules",
                model=None,
                prompt_version=preset.prompt_version,
                valid=True,
            )
        ],
    )
    return build_record(
        tenant="demo",
        external_id="c1",
        probe=PROBE,
        diarized=_diarized(),
        outcome=outcome,
        preset=preset,
    ).model_dump(mode="json")


# recording --------------------------------------------------------------------------------


def test_check_recording_passes_on_a_decodable_recording():
    result = checks.check_recording(PROBE)
    assert result.passed
    assert result.check_name == checks.RECORDING_DECODABLE
    assert _meta(result, "problems") == "none"


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"duration_s": 0.0}, "duration is 0.0 s"),
        ({"channels": 6}, "6 channels"),
        ({"sample_rate": 0}, "unknown sample rate"),
    ],
)
def test_check_recording_fails_on_bad_probe(changes, problem):
    result = checks.check_recording(AudioProbe(**{**PROBE.as_dict(), **changes}))
    assert not result.passed
    assert problem in _meta(result, "problems")
    # The UI shows the problem as the result's description and its `problem` metadata.
    assert result.description == f"recording not usable: {problem}"
    assert _meta(result, "problem") == result.description


# transcript coverage ----------------------------------------------------------------------


def _transcript(*channels: list[tuple[float, float]]) -> Transcript:
    return Transcript(
        model="tiny.en",
        duration_s=20,
        channels=[
            ChannelTranscript(
                channel=i,
                segments=[Segment(start=s, end=e, text="words", channel=i) for s, e in spans],
            )
            for i, spans in enumerate(channels)
        ],
    )


def test_coverage_passes_when_segments_cover_the_speech():
    transcript = _transcript([(0.2, 3.9), (6, 9)], [(4, 5.8)])
    result = checks.check_transcript_coverage(transcript, [[(0, 4), (6, 9)], [(4, 6)]])
    assert result.passed
    assert _meta(result, "coverage") == 1.0
    assert _meta(result, "problem") == "none"


def test_coverage_fails_when_speech_is_missing_from_the_transcript():
    # Channel 1 spoke for 6 s but has no segments at all.
    transcript = _transcript([(0, 4)], [])
    result = checks.check_transcript_coverage(transcript, [[(0, 4)], [(5, 11)]])
    assert not result.passed
    assert _meta(result, "coverage") == pytest.approx(0.4)
    assert _meta(result, "problem") == "transcript misses detected speech"
    assert result.description == (
        "transcript misses detected speech: 40% of 10.0 s of detected speech is transcribed "
        "(at least 80% required)"
    )


def test_coverage_does_not_count_a_second_twice():
    # Many short, closely spaced segments: their padded spans overlap. Only 0-3 s of the
    # 10 s of speech is transcribed, so the check must fail (it passed when overlapping
    # spans were each counted).
    spans = [(i * 0.3, i * 0.3 + 0.2) for i in range(10)]
    result = checks.check_transcript_coverage(_transcript(spans), [[(0, 3), (3, 10)]])
    assert not result.passed
    assert _meta(result, "covered_s") <= 3.5
    assert _meta(result, "coverage") < checks.MIN_SPEECH_COVERAGE


def test_coverage_fails_when_no_speech_was_detected():
    result = checks.check_transcript_coverage(_transcript([(0, 2)]), [[]])
    assert not result.passed
    assert _meta(result, "problem") == "no speech detected"


# roles ------------------------------------------------------------------------------------


def test_roles_pass_when_each_speaking_role_is_in_the_transcript():
    result = checks.check_roles(_diarized(), {"operator": 4.0, "customer": 3.5})
    assert result.passed
    assert _meta(result, "never_spoke") == "none"


@pytest.mark.parametrize(
    ("method", "severity"),
    [
        ("stereo-channel-map", dg.AssetCheckSeverity.ERROR),
        ("mono-pause-heuristic", dg.AssetCheckSeverity.WARN),
    ],
)
def test_roles_fail_when_a_speaking_role_is_missing(method, severity):
    diarized = _diarized(method=method, roles=("operator",))
    result = checks.check_roles(diarized, {"operator": 4.0, "customer": 1.0})
    assert not result.passed
    assert result.severity == severity
    assert _meta(result, "missing") == "customer"
    assert result.description == "no transcript lines for role(s) that spoke: customer"
    assert _meta(result, "roles_in_transcript") == "operator"


@pytest.mark.parametrize("customer_speech_s", [0.0, 0.5])
def test_roles_fail_as_a_warning_when_a_channel_never_speaks(customer_speech_s):
    """A dead customer channel (or one that only clicked) is a one-sided call: the check
    sees it, without blocking the score, which says so itself."""
    diarized = _diarized(roles=("operator",))
    result = checks.check_roles(diarized, {"operator": 4.0, "customer": customer_speech_s})
    assert not result.passed
    assert result.severity == dg.AssetCheckSeverity.WARN
    assert _meta(result, "never_spoke") == "customer"
    assert _meta(result, "missing") == "none"
    assert result.description == (
        "the customer never speaks (one-sided recording: its channel has no speech)"
    )


# analysis schema --------------------------------------------------------------------------


def test_schema_check_passes_on_a_built_record():
    result = checks.check_analysis_schema(_record())
    assert result.passed, _meta(result, "first_errors")
    assert _meta(result, "errors") == 0


def _without_summary(r):
    del r["summary"]


def _total_as_text(r):
    r["scores"]["total"] = "high"


def _score_as_float(r):
    r["scores"]["criteria"][0]["score"] = 4.5


def _unknown_speaker(r):
    r["transcript"]["segments"][0]["speaker"] = "robot"


@pytest.mark.parametrize(
    ("breaks", "where"),
    [
        (_without_summary, "'summary' is a required property"),
        (_total_as_text, "scores/total"),
        (_score_as_float, "scores/criteria/0/score"),
        (_unknown_speaker, "transcript/segments/0/speaker"),
    ],
)
def test_schema_check_fails_on_malformed_record(breaks, where):
    record = _record()
    breaks(record)
    result = checks.check_analysis_schema(record)
    assert not result.passed
    assert _meta(result, "errors") >= 1
    assert where in _meta(result, "first_errors")
    assert result.description.startswith(f"{_meta(result, 'errors')} schema error(s), first: ")


# business rules ---------------------------------------------------------------------------


def test_rules_pass_on_a_built_record():
    result = checks.check_analysis_rules(_record(), _preset())
    assert result.passed, _meta(result, "details")
    assert _meta(result, "violations") == 0


def _drop_closing(r):
    r["scores"]["criteria"] = [c for c in r["scores"]["criteria"] if c["id"] != "closing"]


def _score_out_of_scale(r):
    r["scores"]["criteria"][1]["score"] = 9


def _invented_quote(r):
    r["scores"]["criteria"][0]["evidence"] = [
        {"quote": "best price guaranteed", "start": 0, "speaker": "operator"}
    ]


def _wrong_total(r):
    r["scores"]["total"] = 100.0


def _extra_criterion(r):
    r["scores"]["criteria"].append({**r["scores"]["criteria"][0], "id": "tone"})


@pytest.mark.parametrize(
    ("breaks", "detail"),
    [
        (_drop_closing, "missing criteria: closing"),
        (_score_out_of_scale, "closing: score 9 outside scale 1-5"),
        (
            _invented_quote,
            "greeting: quote not found in the transcript (as whole words): 'best price guaranteed'",
        ),
        (_wrong_total, "total 100.0 != weighted total 43.8"),
        (_extra_criterion, "unknown criteria: tone"),
    ],
)
def test_rules_fail_and_name_the_problem(breaks, detail):
    record = _record()
    breaks(record)
    result = checks.check_analysis_rules(record, _preset())
    assert not result.passed
    assert detail in _meta(result, "details")
    assert _meta(result, "violations") >= 1
    assert result.description.startswith(f"{_meta(result, 'violations')} rule violation(s): ")
    assert detail in _meta(result, "problem")


def test_rules_accept_a_re_punctuated_quote():
    record = _record()
    record["scores"]["criteria"][0]["evidence"] = [
        {"quote": "northwind this is ann", "start": 0, "speaker": "operator"}
    ]
    assert checks.check_analysis_rules(record, _preset()).passed


def test_built_record_total_uses_the_preset_weights():
    record = _record()
    # greeting 5/5 (weight 1), closing 2/5 (weight 3): (1 * 1 + 3 * 0.25) / 4 = 43.75 %.
    assert record["scores"]["total"] == pytest.approx(43.8)
    assert [c["weight"] for c in record["scores"]["criteria"]] == [0.25, 0.75]
    # A rules check against a preset with other weights notices the mismatch.
    reweighted = Preset.model_validate(
        {
            **_preset().model_dump(),
            "criteria": [{**c.model_dump(), "weight": 1} for c in _preset().criteria],
        }
    )
    result = checks.check_analysis_rules(copy.deepcopy(record), reweighted)
    assert not result.passed
    assert "!= weighted total 62.5" in _meta(result, "details")


# what the UI shows ------------------------------------------------------------------------


def test_passing_checks_say_what_they_found():
    results = [
        checks.check_recording(PROBE),
        checks.check_transcript_coverage(_transcript([(0, 4)]), [[(0, 4)]]),
        checks.check_roles(_diarized(), {"operator": 4.0, "customer": 3.5}),
        checks.check_analysis_schema(_record()),
        checks.check_analysis_rules(_record(), _preset()),
    ]
    assert [r.check_name for r in results] == list(checks.DESCRIPTIONS)
    for result in results:
        assert result.passed and _meta(result, "problem") == "none"
        assert result.description
    assert results[0].description == "10.0 s, 2 channel(s), 8000 Hz"
    assert results[1].description.startswith("100% of 4.0 s of detected speech is transcribed")


def test_check_specs_are_partitioned_and_described():
    partitions = dg.DynamicPartitionsDefinition(name="calls")
    spec = checks.spec(checks.RECORDING_DECODABLE, "raw_audio", partitions)
    assert spec.partitions_def == partitions and spec.blocking
    assert spec.description == checks.DESCRIPTIONS[checks.RECORDING_DECODABLE]


# weighted total ---------------------------------------------------------------------------


def test_weighted_total_bounds_and_weights():
    preset = _preset()
    assert normalized_weights(preset) == {"greeting": 0.25, "closing": 0.75}
    assert weighted_total({"greeting": 5, "closing": 5}, preset) == 100.0
    assert weighted_total({"greeting": 1, "closing": 1}, preset) == 0.0
    assert weighted_total({"greeting": 3, "closing": 3}, preset) == 50.0
    # The heavier criterion moves the total three times as far.
    assert weighted_total({"greeting": 5, "closing": 1}, preset) == 25.0
    assert weighted_total({"greeting": 1, "closing": 5}, preset) == 75.0


def test_weighted_total_on_another_scale():
    preset = Preset.model_validate({**_preset().model_dump(), "scale": {"min": 0, "max": 10}})
    assert weighted_total({"greeting": 10, "closing": 0}, preset) == 25.0
    assert weighted_total({"greeting": 0, "closing": 10}, preset) == 75.0
