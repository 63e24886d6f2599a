"""Which category a call belongs to when its source did not say: the preset cues decide.

Each category a tenant maps has a preset, and each preset lists `category_cues`, phrases
typical of its calls. The category whose cues the transcript matches most wins, if it
matched at least `MIN_CUES` distinct cues and no other category matched as many.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from callqa.scoring.rules import phrase_hits

if TYPE_CHECKING:
    from callqa.config.models import Tenant
    from callqa.config.registry import Registry
    from callqa.speech.diarization import DiarizedTranscript

# One cue is too weak a signal ("price" comes up in support calls too).
MIN_CUES = 2
DEFAULT_CATEGORY = "default"


def category_cue_hits(diarized: DiarizedTranscript, cues: list[str]) -> list[str]:
    """The distinct `cues` said anywhere in the call (either speaker, whole words)."""
    found: dict[str, None] = {}
    for seg in diarized.segments:
        found.update(dict.fromkeys(phrase_hits(seg.text, cues)))
    return [c for c in dict.fromkeys(cues) if c in found]


def classify_category(
    diarized: DiarizedTranscript, tenant: Tenant, registry: Registry
) -> tuple[str | None, int]:
    """(category, distinct cues matched) for the tenant category that fits the call best,
    or (None, 0) when none has `MIN_CUES` cues or the best ones tie."""
    hits = {
        category: len(category_cue_hits(diarized, registry.preset(preset_id).category_cues))
        for category, preset_id in tenant.presets.items()
        if category != DEFAULT_CATEGORY
    }
    best = max(hits.values(), default=0)
    winners = [category for category, n in hits.items() if n == best]
    if best < MIN_CUES or len(winners) != 1:
        return None, 0
    return winners[0], best
