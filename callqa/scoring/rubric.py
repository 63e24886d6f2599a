"""The weighted total, computed by code from criterion scores (never by a model)."""

from __future__ import annotations

from collections.abc import Mapping

from callqa.config.models import Preset


def normalized_weights(preset: Preset) -> dict[str, float]:
    total = sum(c.weight for c in preset.criteria)
    return {c.id: c.weight / total for c in preset.criteria}


def weighted_total(scores: Mapping[str, int | float], preset: Preset) -> float:
    """0-100: each score mapped linearly from the scale onto 0-1, then weighted."""
    span = preset.scale.max - preset.scale.min
    weights = normalized_weights(preset)
    value = sum(weights[cid] * (scores[cid] - preset.scale.min) / span for cid in weights)
    return round(100 * value, 1)
