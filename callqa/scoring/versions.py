"""What a score depends on besides the transcript, as versions.

Each analysis records its preset, prompt version (a content hash of the preset: rubric,
anchors, prompt, model, variants), scorer and model. The `scored_analysis` asset's code
version is a hash of all of them together, so changing any preset shows scored calls as
stale in the Dagster UI (code version changed); `stale_calls` names exactly the calls
whose own preset changed, which is what `callqa backfill --stale` re-scores.
"""

from __future__ import annotations

import hashlib

from callqa.config.registry import Registry, default_registry


def scoring_code_version(registry: Registry | None = None) -> str:
    from callqa.calls.record import SCHEMA_VERSION
    from callqa.scoring.rules import RULES_VERSION

    registry = registry or default_registry()
    parts = [RULES_VERSION, SCHEMA_VERSION] + [
        f"{pid}={preset.prompt_version}" for pid, preset in sorted(registry.presets.items())
    ]
    return "scoring-" + hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]


def current_prompt_versions(registry: Registry | None = None) -> dict[str, set[str]]:
    """Preset id -> the prompt versions a call scored now could record (control and each
    A/B variant score with their own)."""
    registry = registry or default_registry()
    return {
        pid: {preset.prompt_version}
        | {preset.with_variant(v.id).prompt_version for v in preset.variants}
        for pid, preset in registry.presets.items()
    }
