"""Daily aggregates from frames shaped like `Warehouse.analyses_frame` / `criterion_frame` /
`pattern_frame`, and what the aggregates asset publishes about them."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from callqa.assets.aggregates import (
    COLUMN_DESCRIPTIONS,
    TABLE_COLUMN_DESCRIPTIONS,
    table_schema,
    tenant_scale,
)
from callqa.config.models import Preset, Tenant
from callqa.config.registry import Registry
from callqa.reporting.aggregates import daily_aggregates, daily_pattern_aggregates
from callqa.speech.diarization import ConversationMetrics, RoleMetrics
from callqa.storage import tables as t
from callqa.storage.warehouse import FRAME_COLUMNS

D1, D2 = date(2024, 5, 1), date(2024, 5, 2)

ANALYSES_COLUMNS = FRAME_COLUMNS
CRITERION_COLUMNS = ["external_id", "criterion", "score", "call_day", "operator"]
PATTERN_COLUMNS = ["external_id", "pattern", "kind", "call_day", "operator"]


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


# (external_id, day, operator, total, LLM cost, duration, operator share, silence,
#  interruptions)
CALLS = [
    ("c1", D1, "ann", 80.0, 0.010, 60.0, 0.6, 0.1, 1),
    ("c2", D1, "ann", 60.0, 0.020, 120.0, 0.4, 0.3, 0),
    ("c3", D1, "bob", 40.0, 0.005, 30.0, 0.5, 0.2, 3),
    ("c4", D2, "ann", 90.0, 0.001, 45.0, 0.7, 0.0, 0),
    ("c5", D2, None, 70.0, 0.002, 15.0, 0.3, 0.5, 2),
]
# external_id -> (LLM price known, speech cost (None = unknown), evidence rate)
COSTS = {
    "c1": (True, 0.006, 1.0),
    "c2": (True, 0.012, 0.5),
    "c3": (False, 0.003, None),  # a model without a price; no quote cited
    "c4": (True, None, 0.75),  # speech cost unknown
    "c5": (True, 0.0, 1.0),  # on-site speech model: a known zero
}
# (external_id, criterion, score); None = N/A
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
# (external_id, pattern, kind)
PATTERNS = [
    ("c1", "price_objection", "objection"),
    ("c1", "price_objection", "objection"),
    ("c2", "price_objection", "objection"),
    ("c2", "competitor_mention", "competitor"),
    ("c4", "price_objection", "objection"),
]


def _frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    analyses = pd.DataFrame(
        [
            {
                "external_id": ext,
                "call_day": day,
                "operator": op,
                "total": total,
                "llm_cost_usd": cost,
                "cost_known": COSTS[ext][0],
                "speech_cost_usd": COSTS[ext][1],
                "evidence_rate": COSTS[ext][2],
                "record": {"metrics": _metrics(dur, share, silence, intr)},
            }
            for ext, day, op, total, cost, dur, share, silence, intr in CALLS
        ],
        columns=ANALYSES_COLUMNS,
    )
    criteria = pd.DataFrame(
        [
            {
                "external_id": ext,
                "criterion": crit,
                "score": score,
                "call_day": _META[ext][0],
                "operator": _META[ext][1],
            }
            for ext, crit, score in SCORES
        ],
        columns=CRITERION_COLUMNS,
    )
    return analyses, criteria


_META = {ext: (day, op) for ext, day, op, *_ in CALLS}


def _patterns(rows=PATTERNS) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "external_id": ext,
                "pattern": pattern,
                "kind": kind,
                "call_day": _META[ext][0],
                "operator": _META[ext][1],
            }
            for ext, pattern, kind in rows
        ],
        columns=PATTERN_COLUMNS,
    )


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
    assert team["llm_cost_usd"] == pytest.approx(0.035)
    assert team["speech_cost_usd"] == pytest.approx(0.021)
    assert team["cost_usd"] == pytest.approx(0.056)
    assert team["unpriced_calls"] == 1  # c3: the model had no price
    assert team["mean_evidence_rate"] == 0.75  # c1 and c2; c3 cited nothing
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
    assert ann["cost_usd"] == pytest.approx(0.048)
    assert ann["unpriced_calls"] == 0

    bob = rows[(D1, "bob")]
    assert (bob["calls"], bob["mean_total"], bob["min_total"], bob["max_total"]) == (
        1,
        40.0,
        40.0,
        40.0,
    )
    assert (bob["unpriced_calls"], bob["mean_evidence_rate"]) == (1, None)
    # the speech part is counted even when the LLM part is unknown
    assert (bob["llm_cost_usd"], bob["speech_cost_usd"]) == (0.005, 0.003)

    day2 = rows[(D2, "*")]
    assert (day2["calls"], day2["mean_total"], day2["min_total"], day2["max_total"]) == (
        2,
        80.0,
        70.0,
        90.0,
    )
    assert day2["mean_operator_talk_share"] == 0.5
    # c4's speech cost is unknown: it adds nothing and makes the call unpriced
    assert (day2["speech_cost_usd"], day2["unpriced_calls"]) == (0.0, 1)
    assert day2["cost_usd"] == pytest.approx(0.003)
    assert day2["mean_evidence_rate"] == 0.875
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


def test_not_applicable_criteria_are_left_out_of_the_means():
    analyses, criteria = _frames()
    # c3's closing was N/A: a frame from elsewhere may carry it as a missing score
    criteria["score"] = criteria["score"].astype(object)
    criteria.loc[
        (criteria["external_id"] == "c3") & (criteria["criterion"] == "closing"), "score"
    ] = None
    rows = _by_key(daily_aggregates(analyses, criteria)[1], "day", "operator", "criterion")
    assert (rows[(D1, "*", "closing")]["calls"], rows[(D1, "*", "closing")]["mean_score"]) == (
        2,
        3.0,  # (4 + 2) / 2, not (4 + 2 + 3) / 3 or a neutral score for the N/A
    )
    assert (D1, "bob", "closing") not in rows  # bob's only closing was N/A
    assert rows[(D1, "bob", "greeting")]["calls"] == 1


def test_pattern_rows_per_day_and_operator():
    analyses, _ = _frames()
    rows = _by_key(daily_pattern_aggregates(analyses, _patterns()), "day", "operator", "pattern")
    assert set(rows) == {
        (D1, "*", "price_objection"),
        (D1, "*", "competitor_mention"),
        (D1, "ann", "price_objection"),
        (D1, "ann", "competitor_mention"),
        (D2, "*", "price_objection"),
        (D2, "ann", "price_objection"),
    }
    team = rows[(D1, "*", "price_objection")]
    # twice in c1, once in c2; three calls that day (c3, bob's, had none)
    assert (team["kind"], team["calls"], team["mentions"]) == ("objection", 2, 3)
    assert team["share_of_calls"] == pytest.approx(0.6667)
    ann = rows[(D1, "ann", "price_objection")]
    assert (ann["calls"], ann["mentions"], ann["share_of_calls"]) == (2, 3, 1.0)
    competitor = rows[(D1, "ann", "competitor_mention")]
    assert (competitor["kind"], competitor["calls"], competitor["share_of_calls"]) == (
        "competitor",
        1,
        0.5,
    )
    # day 2: c4 (ann) of two calls
    assert rows[(D2, "*", "price_objection")]["share_of_calls"] == 0.5
    assert rows[(D2, "ann", "price_objection")]["share_of_calls"] == 1.0


def test_pattern_kind_known_wins_over_other():
    analyses, _ = _frames()
    patterns = _patterns(
        [("c1", "price_objection", "other"), ("c2", "price_objection", "objection")]
    )
    [team, _ann] = daily_pattern_aggregates(analyses, patterns)
    assert (team["operator"], team["kind"], team["calls"]) == ("*", "objection", 2)


def test_no_patterns_no_rows():
    analyses, _ = _frames()
    assert daily_pattern_aggregates(analyses, _patterns([])) == []


def test_every_aggregate_column_is_described():
    for table in (t.daily_aggregates, t.daily_criterion_aggregates, t.daily_pattern_aggregates):
        schema = table_schema(table)
        assert [c.name for c in schema.columns] == [c.name for c in table.columns]
        undescribed = [c.name for c in schema.columns if not c.description]
        assert undescribed == [], table.name
    assert set(TABLE_COLUMN_DESCRIPTIONS) <= {
        "daily_criterion_aggregates",
        "daily_pattern_aggregates",
    }
    calls = {c.name: c.description for c in table_schema(t.daily_pattern_aggregates).columns}
    assert calls["calls"] != COLUMN_DESCRIPTIONS["calls"]  # its own meaning there


def _preset(preset_id: str, low: int, high: int) -> Preset:
    return Preset(
        id=preset_id,
        scale={"min": low, "max": high},
        criteria=[{"id": "greeting", "name": "Greeting", "weight": 1, "description": "g"}],
        prompt_template="$transcript",
    )


def test_tenant_scale_is_the_widest_of_its_presets():
    registry = Registry(
        tenants={
            "acme": Tenant(id="acme", name="Acme", presets={"default": "five", "support": "ten"}),
            "solo": Tenant(id="solo", name="Solo", presets={"default": "ten"}),
        },
        presets={
            "five": _preset("five", 1, 5),
            "ten": _preset("ten", 0, 10),
            "unused": _preset("unused", -5, 50),
        },
    )
    assert (tenant_scale(registry, "acme").min, tenant_scale(registry, "acme").max) == (0, 10)
    assert (tenant_scale(registry, "solo").min, tenant_scale(registry, "solo").max) == (0, 10)


def test_rows_hold_plain_python_values():
    call_rows, criterion_rows = daily_aggregates(*_frames())
    for row in call_rows:
        assert type(row["calls"]) is int and type(row["interruptions"]) is int
        assert type(row["unpriced_calls"]) is int
        assert type(row["mean_total"]) is float and type(row["cost_usd"]) is float
    for row in criterion_rows:
        assert type(row["calls"]) is int and type(row["mean_score"]) is float


def test_empty_input_gives_no_rows():
    empty_analyses = pd.DataFrame(columns=ANALYSES_COLUMNS)
    empty_criteria = pd.DataFrame(columns=CRITERION_COLUMNS)
    assert daily_aggregates(empty_analyses, empty_criteria) == ([], [])
