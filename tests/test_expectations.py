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
        "cost_usd": 0.0,
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


def test_good_aggregates_pass():
    report = validate_aggregates(
        [call_row(), call_row(operator="anna", calls=1)], [criterion_row()], Scale(min=1, max=5)
    )
    assert report.success and report.evaluated > 10


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
    assert validate_aggregates([], [], Scale()).success
