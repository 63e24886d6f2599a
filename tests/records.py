"""Build real analysis records (through `build_record`) for tests that need stored analyses."""

from callqa.analysis import build_record
from callqa.audio import AudioProbe
from callqa.config.registry import default_registry
from callqa.diarization import DiarizedSegment, DiarizedTranscript, conversation_metrics
from callqa.scoring.outcome import Attempt, ScoringOutcome
from callqa.scoring.output import CriterionResult, ScorerOutput


def sample_record(tenant: str, external_id: str, score: int = 4, operator: str = "anna") -> dict:
    preset = default_registry().preset("sales-default")
    segments = [
        DiarizedSegment(start=0.0, end=3.0, speaker="operator", text="Hello, this is Anna."),
        DiarizedSegment(start=3.5, end=6.0, speaker="customer", text="Hi, I need a plan."),
    ]
    diarized = DiarizedTranscript(method="stereo-channel-map", language="en", duration_s=7.0,
                                  segments=segments, metrics=conversation_metrics(segments, 7.0))
    output = ScorerOutput(
        criteria=[CriterionResult(id=c, score=score, rationale="test", evidence=[])
                  for c in preset.criterion_ids],
        summary="test call",
    )
    outcome = ScoringOutcome(scorer="rules", model="rules-v1",
                             prompt_version=preset.prompt_version, output=output,
                             attempts=[Attempt(1, "rules", "rules-v1", preset.prompt_version,
                                               valid=True)])
    probe = AudioProbe(sha256="0" * 64, size_bytes=1, codec="flac", container="flac",
                       channels=2, sample_rate=16000, duration_s=7.0)
    return build_record(tenant=tenant, external_id=external_id, probe=probe, diarized=diarized,
                        outcome=outcome, preset=preset, operator=operator).model_dump(mode="json")
