"""The weighted total, computed by code from criterion scores (never by a model).

N/A criteria (score None) are left out: the weights of the criteria that apply are
normalised to sum 1, so N/A neither helps nor hurts the total.
"""

from __future__ import annotations

from collections.abc import Mapping

from callqa.config.models import Preset


def normalized_weights(
    preset: Preset, scores: Mapping[str, int | float | None] | None = None
) -> dict[str, float]:
    """Weight of each criterion in the total; 0 for N/A ones (when `scores` is given)."""
    applies = {
        c.id: c.weight if scores is None or scores.get(c.id) is not None else 0.0
        for c in preset.criteria
    }
    total = sum(applies.values())
    return {cid: (w / total if total else 0.0) for cid, w in applies.items()}


def weighted_total(scores: Mapping[str, int | float | None], preset: Preset) -> float:
    """0-100: each applicable score mapped linearly from the scale onto 0-1, then weighted.

    Raises ValueError when no criterion applies (a total of nothing is not a score)."""
    span = preset.scale.max - preset.scale.min
    weights = normalized_weights(preset, scores)
    if not any(weights.values()):
        raise ValueError("no criterion applies to this call: every score is N/A")
    value = sum(w * (scores[cid] - preset.scale.min) / span for cid, w in weights.items() if w)
    return round(100 * value, 1)
