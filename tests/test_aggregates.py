"""Daily aggregates from frames shaped like `Warehouse.analyses_frame` / `criterion_frame`."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from callqa.reporting.aggregates import daily_aggregates
from callqa.speech.diarization import ConversationMetrics, RoleMetrics

D1, D2 = date(2024, 5, 1), date(2024, 5, 2)

ANALYSES_COLUMNS = ["external_id", "call_day", "operator", "total", "cost_usd", "record"]
CRITERION_COLUMNS = ["external_id", "criterion", "score", "call_day", "operator"]


def _metrics(duration: float, op_share: float, silence: float, interruptions: int) -> dict:
    def role(share: float) -> RoleMetrics:
        return RoleMetrics(
            talk_time_s=duration * share,
            talk_share=share,
            words=10,
            words_per_minute=120,
            interruptions=0,
        )

    return ConversationMetrics(
        duration_s=duration,
        silence_ratio=silence,
        overlap_s=0,
        overlap_count=0,
        interruption_count=interruptions,
        longest_monologue_s=5,
        longest_monologue_speaker="operator",
        turns=4,
        roles={"operator": role(op_share), "customer": role(round(1 - op_share, 3))},
    ).model_dump(mode="json")


# (external_id, day, operator, total, cost, duration, operator share, silence, interruptions)
CALLS = [
    ("c1", D1, "ann", 80.0, 0.010, 60.0, 0.6, 0.1, 1),
    ("c2", D1, "ann", 60.0, 0.020, 120.0, 0.4, 0.3, 0),
    ("c3", D1, "bob", 40.0, 0.005, 30.0, 0.5, 0.2, 3),
    ("c4", D2, "ann", 90.0, 0.001, 45.0, 0.7, 0.0, 0),
    ("c5", D2, None, 70.0, 0.002, 15.0, 0.3, 0.5, 2),
]
# (external_id, criterion, score)
SCORES = [
    ("c1", "greeting", 5),
    ("c1", "closing", 4),
    ("c2", "greeting", 3),
    ("c2", "closing", 2),
    ("c3", "greeting", 1),
    ("c3", "closing", 3),
    ("c4", "greeting", 4),
    ("c4", "closing", 5),
    ("c5", "greeting", 2),
    ("c5", "closing", 1),
]


def _frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    analyses = pd.DataFrame(
        [
            {
                "external_id": ext,
                "call_day": day,
                "operator": op,
                "total": total,
                "cost_usd": cost,
                "record": {"metrics": _metrics(dur, share, silence, intr)},
            }
            for ext, day, op, total, cost, dur, share, silence, intr in CALLS
        ],
        columns=ANALYSES_COLUMNS,
    )
    meta = {ext: (day, op) for ext, day, op, *_ in CALLS}
    criteria = pd.DataFrame(
        [
            {
                "external_id": ext,
                "criterion": crit,
                "score": score,
                "call_day": meta[ext][0],
                "operator": meta[ext][1],
            }
            for ext, crit, score in SCORES
        ],
        columns=CRITERION_COLUMNS,
    )
    return analyses, criteria


def _by_key(rows: list[dict], *keys: str) -> dict:
    return {tuple(r[k] for k in keys): r for r in rows}


def test_one_row_per_day_for_the_team_and_each_operator():
    call_rows, _ = daily_aggregates(*_frames())
    assert sorted((r["day"], r["operator"]) for r in call_rows) == [
        (D1, "*"),
        (D1, "ann"),
        (D1, "bob"),
        (D2, "*"),
        (D2, "ann"),
        (D2, "unknown"),
    ]


def test_call_row_values():
    rows = _by_key(daily_aggregates(*_frames())[0], "day", "operator")

    team = rows[(D1, "*")]
    assert team["calls"] == 3
    assert team["mean_total"] == 60.0
    assert (team["min_total"], team["max_total"]) == (40.0, 80.0)
    assert team["audio_s"] == 210.0
    assert team["cost_usd"] == pytest.approx(0.035)
    assert team["mean_operator_talk_share"] == 0.5
    assert team["mean_silence_ratio"] == 0.2
    assert team["interruptions"] == 4

    ann = rows[(D1, "ann")]
    assert (ann["calls"], ann["mean_total"], ann["min_total"], ann["max_total"]) == (
        2,
        70.0,
        60.0,
        80.0,
    )
    assert (ann["audio_s"], ann["interruptions"]) == (180.0, 1)
    assert ann["cost_usd"] == pytest.approx(0.03)

    bob = rows[(D1, "bob")]
    assert (bob["calls"], bob["mean_total"], bob["min_total"], bob["max_total"]) == (
        1,
        40.0,
        40.0,
        40.0,
    )

    day2 = rows[(D2, "*")]
    assert (day2["calls"], day2["mean_total"], day2["min_total"], day2["max_total"]) == (
        2,
        80.0,
        70.0,
        90.0,
    )
    assert day2["mean_operator_talk_share"] == 0.5
    assert rows[(D2, "unknown")]["calls"] == 1  # a call without operator is still counted


def test_mean_total_is_rounded_to_two_decimals():
    analyses, criteria = _frames()
    analyses.loc[analyses["external_id"] == "c3", "total"] = 41.0
    rows = _by_key(daily_aggregates(analyses, criteria)[0], "day", "operator")
    assert rows[(D1, "*")]["mean_total"] == 60.33


def test_criterion_means_per_day_and_operator():
    _, criterion_rows = daily_aggregates(*_frames())
    rows = _by_key(criterion_rows, "day", "operator", "criterion")
    assert len(criterion_rows) == 12  # (3 + 3 groups) x 2 criteria
    assert (rows[(D1, "*", "greeting")]["calls"], rows[(D1, "*", "greeting")]["mean_score"]) == (
        3,
        3.0,
    )
    assert rows[(D1, "*", "closing")]["mean_score"] == 3.0
    assert rows[(D1, "ann", "greeting")]["mean_score"] == 4.0
    assert rows[(D1, "ann", "closing")]["mean_score"] == 3.0
    assert rows[(D1, "bob", "greeting")]["mean_score"] == 1.0
    assert rows[(D2, "*", "closing")]["mean_score"] == 3.0
    assert rows[(D2, "unknown", "greeting")]["mean_score"] == 2.0
    assert rows[(D2, "ann", "closing")]["calls"] == 1


def test_criterion_mean_is_rounded_to_three_decimals():
    analyses, criteria = _frames()
    criteria.loc[
        (criteria["external_id"] == "c3") & (criteria["criterion"] == "greeting"), "score"
    ] = 2
    rows = _by_key(daily_aggregates(analyses, criteria)[1], "day", "operator", "criterion")
    assert rows[(D1, "*", "greeting")]["mean_score"] == 3.333


def test_rows_hold_plain_python_values():
    call_rows, criterion_rows = daily_aggregates(*_frames())
    for row in call_rows:
        assert type(row["calls"]) is int and type(row["interruptions"]) is int
        assert type(row["mean_total"]) is float
    for row in criterion_rows:
        assert type(row["calls"]) is int and type(row["mean_score"]) is float


def test_empty_input_gives_no_rows():
    empty_analyses = pd.DataFrame(columns=ANALYSES_COLUMNS)
    empty_criteria = pd.DataFrame(columns=CRITERION_COLUMNS)
    assert daily_aggregates(empty_analyses, empty_criteria) == ([], [])
