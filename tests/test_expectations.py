"""great-expectations suites on the aggregate rows: pass on good rows, fail on bad ones."""

from datetime import date

from callqa.config.models import Scale
from callqa.reporting.expectations import validate_aggregates


def call_row(**overrides):
    row = {
        "day": date(2026, 11, 20),
        "operator": "*",
        "calls": 2,
        "mean_total": 60.0,
        "min_total": 40.0,
        "max_total": 80.0,
        "audio_s": 70.0,
        "llm_cost_usd": 0.004,
        "speech_cost_usd": 0.006,
        "cost_usd": 0.01,
        "unpriced_calls": 1,
        "mean_evidence_rate": 0.9,
        "mean_operator_talk_share": 0.6,
        "mean_silence_ratio": 0.2,
        "interruptions": 1,
    }
    return {**row, **overrides}


def criterion_row(**overrides):
    row = {
        "day": date(2026, 11, 20),
        "operator": "*",
        "criterion": "greeting",
        "calls": 2,
        "mean_score": 3.5,
    }
    return {**row, **overrides}


def pattern_row(**overrides):
    row = {
        "day": date(2026, 11, 20),
        "operator": "*",
        "pattern": "price_objection",
        "kind": "objection",
        "calls": 2,
        "mentions": 3,
        "share_of_calls": 0.5,
    }
    return {**row, **overrides}


def test_good_aggregates_pass():
    report = validate_aggregates(
        [call_row(), call_row(operator="anna", calls=1, mean_evidence_rate=None)],
        [criterion_row()],
        Scale(min=1, max=5),
        [pattern_row(), pattern_row(pattern="cancel_intent", kind="intent", mentions=2)],
    )
    assert report.success, report.failures
    assert report.evaluated > 25


def test_bad_costs_and_counts_fail():
    report = validate_aggregates(
        [
            call_row(speech_cost_usd=-0.5, cost_usd=-0.496),
            call_row(operator="anna", calls=1, unpriced_calls=2, mean_evidence_rate=1.5),
        ],
        [],
        Scale(),
    )
    text = "\n".join(report.failures)
    for column in ("speech_cost_usd", "'cost_usd'", "unpriced_calls", "mean_evidence_rate"):
        assert column in text, column
    assert "llm_cost_usd" not in text
    assert len(report.failures) == 4


def test_bad_pattern_rows_fail():
    report = validate_aggregates(
        [],
        [],
        Scale(),
        [
            pattern_row(share_of_calls=1.5),
            pattern_row(operator="anna", mentions=1),  # fewer mentions than calls
            pattern_row(operator="anna", calls=0, mentions=0, share_of_calls=0.0),
        ],
    )
    text = "\n".join(report.failures)
    assert "share_of_calls" in text
    assert "'column_A': 'mentions'" in text
    assert "expect_compound_columns_to_be_unique" in text  # (day, 'anna', pattern) twice
    assert "'calls', 'min_value': 1" in text


def test_bad_aggregates_fail_with_named_columns():
    report = validate_aggregates(
        [call_row(mean_total=120.0, max_total=130.0), call_row(mean_total=30.0)],
        [criterion_row(mean_score=7.0)],
        Scale(min=1, max=5),
    )
    assert not report.success
    text = "\n".join(report.failures)
    assert "mean_total" in text  # out of 0-100, and below min_total in the second row
    assert "expect_compound_columns_to_be_unique" in text  # the same (day, operator) twice
    assert "mean_score" in text  # 7 on a 1-5 scale


def test_empty_aggregates_are_trivially_valid():
    assert validate_aggregates([], [], Scale(), []).success
