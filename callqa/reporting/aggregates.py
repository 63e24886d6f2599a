"""Per-tenant daily aggregates, computed from the warehouse's analyses."""

from __future__ import annotations

from typing import TYPE_CHECKING

from callqa.storage.warehouse import ALL_OPERATORS

if TYPE_CHECKING:  # pandas costs over a second to import; only runs need it
    import pandas as pd


def _by_operator(frame: pd.DataFrame) -> list[tuple[object, str, pd.DataFrame]]:
    """Each (day, operator) group plus a (day, '*') group for the whole team."""
    groups = []
    for day, day_frame in frame.groupby("call_day"):
        groups.append((day, ALL_OPERATORS, day_frame))
        for operator, op_frame in day_frame.groupby(day_frame["operator"].fillna("unknown")):
            groups.append((day, operator, op_frame))
    return groups


def daily_aggregates(
    analyses: pd.DataFrame, criteria: pd.DataFrame
) -> tuple[list[dict], list[dict]]:
    import pandas as pd

    if analyses.empty:
        return [], []
    metrics = pd.json_normalize(list(analyses["record"].map(lambda r: r["metrics"])))
    frame = analyses.drop(columns=["record"]).reset_index(drop=True)
    frame["audio_s"] = metrics["duration_s"]
    frame["operator_share"] = metrics["roles.operator.talk_share"]
    frame["silence_ratio"] = metrics["silence_ratio"]
    frame["interruptions"] = metrics["interruption_count"]

    call_rows = [
        {
            "day": day,
            "operator": operator,
            "calls": int(len(group)),
            "mean_total": round(float(group["total"].mean()), 2),
            "min_total": float(group["total"].min()),
            "max_total": float(group["total"].max()),
            "audio_s": round(float(group["audio_s"].sum()), 2),
            "cost_usd": round(float(group["cost_usd"].sum()), 6),
            "mean_operator_talk_share": round(float(group["operator_share"].mean()), 3),
            "mean_silence_ratio": round(float(group["silence_ratio"].mean()), 3),
            "interruptions": int(group["interruptions"].sum()),
        }
        for day, operator, group in _by_operator(frame)
    ]
    criterion_rows = []
    for day, operator, group in _by_operator(criteria):
        for criterion, scores in group.groupby("criterion"):
            criterion_rows.append(
                {
                    "day": day,
                    "operator": operator,
                    "criterion": criterion,
                    "calls": int(len(scores)),
                    "mean_score": round(float(scores["score"].mean()), 3),
                }
            )
    return call_rows, criterion_rows
