"""Build real analysis records (through `build_record`) for tests that need stored analyses."""

from __future__ import annotations

from callqa.calls.record import build_record
from callqa.config.models import Preset
from callqa.config.registry import default_registry
from callqa.scoring.outcome import Attempt, ScoringOutcome
from callqa.scoring.output import CriterionResult, Evidence, Pattern, ScorerOutput
from callqa.speech.audio import AudioProbe
from callqa.speech.diarization import DiarizedSegment, DiarizedTranscript, conversation_metrics

SEGMENTS = [
    DiarizedSegment(start=0, end=4, speaker="operator", text="Hello, Northwind, Ann here."),
    DiarizedSegment(start=4.5, end=8, speaker="customer", text="I want a cheaper plan."),
]
LINES = {s.speaker: s for s in SEGMENTS}


def preset_with(criteria: tuple[str, ...], na: tuple[str, ...] = ()) -> Preset:
    """A minimal preset scoring exactly `criteria`, equally weighted, 1-5; those in `na`
    may be N/A."""
    return Preset(
        id="p1",
        criteria=[
            {"id": c, "name": c.title(), "weight": 1, "description": c, "allow_na": c in na}
            for c in criteria
        ],
        prompt_template="$transcript",
    )


def sample_record(
    tenant: str,
    external_id: str,
    scores: dict[str, int | None] | None = None,
    *,
    operator: str | None = "ann",
    summary: str = "ok",
    patterns: list[tuple[str, str]] | None = None,
    variant: str = "control",
    model: str | None = None,
    cost_usd: float = 0.001,
    cost_known: bool = True,
) -> dict:
    """A real AnalysisRecord, dumped as the pipeline stores it. Without `scores`, every
    sales-default criterion scores 4; with them, a preset of just those criteria is used
    (a score of None is N/A). Each scored criterion cites the operator's "Ann here";
    `patterns` are (pattern id, speaker) pairs, quoting that speaker's line."""
    if scores is None:
        preset = default_registry().preset("sales-default")
        scores = dict.fromkeys(preset.criterion_ids, 4)
    else:
        preset = preset_with(tuple(scores), na=tuple(c for c, s in scores.items() if s is None))
    diarized = DiarizedTranscript(
        method="stereo-channel-map",
        language="en",
        duration_s=10,
        segments=SEGMENTS,
        metrics=conversation_metrics(SEGMENTS, 10),
    )
    output = ScorerOutput(
        criteria=[
            CriterionResult(
                id=cid,
                score=s,
                rationale="because",
                evidence=[]
                if s is None
                else [Evidence(quote="Ann here", start=0, speaker="operator")],
            )
            for cid, s in scores.items()
        ],
        patterns=[
            Pattern(
                type=kind, quote=LINES[speaker].text, start=LINES[speaker].start, speaker=speaker
            )
            for kind, speaker in patterns or []
        ],
        summary=summary,
    )
    scorer = "rules" if model is None else "llm"
    attempt = Attempt(
        attempt=1,
        scorer=scorer,
        model=model,
        prompt_version=preset.prompt_version,
        valid=True,
        cost_usd=cost_usd,
        cost_known=cost_known,
    )
    outcome = ScoringOutcome(
        scorer=scorer,
        model=model,
        prompt_version=preset.prompt_version,
        output=output,
        attempts=[attempt],
    )
    probe = AudioProbe(
        sha256="0" * 64,
        size_bytes=1000,
        codec="pcm_s16le",
        container="wav",
        channels=2,
        sample_rate=8000,
        duration_s=10.0,
    )
    record = build_record(
        tenant=tenant,
        external_id=external_id,
        probe=probe,
        diarized=diarized,
        outcome=outcome,
        preset=preset,
        operator=operator,
        variant=variant,
    )
    return record.model_dump(mode="json")
