"""Per-tenant daily aggregates, computed from the warehouse's analyses.

The inputs are frames shaped like `Warehouse.analyses_frame`, `criterion_frame` and
`pattern_frame`; every group is a (day, operator) plus a (day, '*') group for the team.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from callqa.storage.warehouse import ALL_OPERATORS, OTHER_KIND

if TYPE_CHECKING:  # pandas costs over a second to import; only runs need it
    import pandas as pd

UNKNOWN_OPERATOR = "unknown"


def _by_operator(frame: pd.DataFrame) -> list[tuple[object, str, pd.DataFrame]]:
    """Each (day, operator) group plus a (day, '*') group for the whole team."""
    groups = []
    for day, day_frame in frame.groupby("call_day"):
        groups.append((day, ALL_OPERATORS, day_frame))
        for operator, op_frame in day_frame.groupby(day_frame["operator"].fillna(UNKNOWN_OPERATOR)):
            groups.append((day, operator, op_frame))
    return groups


def _mean_or_none(values: pd.Series, digits: int) -> float | None:
    mean = values.dropna().mean()
    return None if mean is None or math.isnan(mean) else round(float(mean), digits)


def daily_aggregates(
    analyses: pd.DataFrame, criteria: pd.DataFrame
) -> tuple[list[dict], list[dict]]:
    """Rows of `daily_aggregates` and `daily_criterion_aggregates`.

    Cost: `llm_cost_usd` is the scoring cost, `speech_cost_usd` the known speech-to-text
    cost, `cost_usd` their sum; `unpriced_calls` counts calls whose cost is not fully known
    (an LLM without a price, or no recorded speech-to-text cost), so a sum that leaves
    something out says so. Criterion means leave N/A criteria out (they have no score)."""
    import pandas as pd

    if analyses.empty:
        return [], []
    metrics = pd.json_normalize(list(analyses["record"].map(lambda r: r["metrics"])))
    frame = analyses.drop(columns=["record"]).reset_index(drop=True)
    frame["audio_s"] = metrics["duration_s"]
    frame["operator_share"] = metrics["roles.operator.talk_share"]
    frame["silence_ratio"] = metrics["silence_ratio"]
    frame["interruptions"] = metrics["interruption_count"]
    speech = frame["speech_cost_usd"].astype(float)
    frame["speech_cost"] = speech.fillna(0.0)
    frame["unpriced"] = ~frame["cost_known"].astype(bool) | speech.isna()

    call_rows = []
    for day, operator, group in _by_operator(frame):
        llm = round(float(group["llm_cost_usd"].sum()), 6)
        speech_cost = round(float(group["speech_cost"].sum()), 6)
        call_rows.append(
            {
                "day": day,
                "operator": operator,
                "calls": int(len(group)),
                "mean_total": round(float(group["total"].mean()), 2),
                "min_total": float(group["total"].min()),
                "max_total": float(group["total"].max()),
                "audio_s": round(float(group["audio_s"].sum()), 2),
                "llm_cost_usd": llm,
                "speech_cost_usd": speech_cost,
                "cost_usd": round(llm + speech_cost, 6),
                "unpriced_calls": int(group["unpriced"].sum()),
                "mean_evidence_rate": _mean_or_none(group["evidence_rate"].astype(float), 4),
                "mean_operator_talk_share": round(float(group["operator_share"].mean()), 3),
                "mean_silence_ratio": round(float(group["silence_ratio"].mean()), 3),
                "interruptions": int(group["interruptions"].sum()),
            }
        )
    criterion_rows = []
    scored = criteria[criteria["score"].notna()]
    for day, operator, group in _by_operator(scored):
        for criterion, scores in group.groupby("criterion"):
            criterion_rows.append(
                {
                    "day": day,
                    "operator": operator,
                    "criterion": criterion,
                    "calls": int(len(scores)),
                    "mean_score": round(float(scores["score"].astype(float).mean()), 3),
                }
            )
    return call_rows, criterion_rows


def _kind(kinds: pd.Series) -> str:
    """One kind per pattern id: a known kind wins over 'other' (what rows copied from
    older records, or saved without the preset's kinds, carry)."""
    return min(set(kinds) - {OTHER_KIND}, default=OTHER_KIND)


def daily_pattern_aggregates(analyses: pd.DataFrame, patterns: pd.DataFrame) -> list[dict]:
    """Rows of `daily_pattern_aggregates`: per day and operator (and team), each pattern
    found: calls in which it was found, mentions, and its share of the group's analysed
    calls. Only patterns that were found have rows."""
    if analyses.empty or patterns.empty:
        return []
    calls_in = {
        (day, operator): int(group["external_id"].nunique())
        for day, operator, group in _by_operator(analyses)
    }
    rows = []
    for day, operator, group in _by_operator(patterns):
        for pattern, mentions in group.groupby("pattern"):
            found_in = int(mentions["external_id"].nunique())
            rows.append(
                {
                    "day": day,
                    "operator": operator,
                    "pattern": pattern,
                    "kind": _kind(mentions["kind"]),
                    "calls": found_in,
                    "mentions": int(len(mentions)),
                    "share_of_calls": round(found_in / calls_in[(day, operator)], 4),
                }
            )
    return rows
