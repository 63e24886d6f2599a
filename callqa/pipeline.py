"""One call end to end, in-process: the same functions the Dagster assets call.

Used by `callqa analyze` for a local file; the assets run these steps one by one and
persist each result in the warehouse in between.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from callqa.analysis import AnalysisRecord, build_record
from callqa.audio import decode_file, is_silent
from callqa.config.registry import default_registry
from callqa.diarization import assign_roles
from callqa.errors import AudioError, ScoringError
from callqa.keys import external_id_from_name
from callqa.scoring.outcome import ScoringOutcome
from callqa.speech import settings_from_env, transcribe


@dataclass
class FileAnalysis:
    record: AnalysisRecord
    outcome: ScoringOutcome
    transcribe_s: float


def analyze_file(
    path: Path,
    *,
    tenant: str = "demo",
    category: str | None = None,
    scorer,
    whisper_model: str | None = None,
) -> FileAnalysis:
    import time

    registry = default_registry()
    tenant_cfg = registry.tenant(tenant)
    preset = registry.preset_for(tenant, category)
    decoded = decode_file(path)
    if all(is_silent(c) for c in decoded.channels):
        raise AudioError(f"{path}: recording is silent (no signal on any channel)")
    started = time.perf_counter()
    result = transcribe(decoded, settings_from_env(preset.speech, whisper_model))
    transcribe_s = time.perf_counter() - started
    if not result.segments:
        raise AudioError(f"{path}: no speech found in {decoded.probe.duration_s:.1f} s of audio")
    diarized = assign_roles(result, tenant_cfg.channel_map)
    outcome = scorer.score(diarized, preset, category)
    if not outcome.valid:
        raise ScoringError(
            f"{path}: no valid analysis after {len(outcome.attempts)} attempt(s): "
            f"{outcome.last_error}"
        )
    record = build_record(
        tenant=tenant,
        external_id=external_id_from_name(path.stem),
        probe=decoded.probe,
        diarized=diarized,
        outcome=outcome,
        preset=preset,
        category=category,
    )
    return FileAnalysis(record=record, outcome=outcome, transcribe_s=transcribe_s)
