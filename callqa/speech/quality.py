"""What a scored call's reader must know about its speech: a party that never spoke, a role
decided with low confidence. The roles check fails on these and the record carries them,
so a score is never read without its caveats."""

from __future__ import annotations

from callqa.speech.diarization import ROLES, DiarizedTranscript


def silent_roles(diarized: DiarizedTranscript) -> list[str]:
    """Roles with no transcript line at all: a one-sided recording (a dead channel, a
    customer who never answered) or a mono call where only one voice was found."""
    present = diarized.roles_present()
    return [r for r in ROLES if r not in present]


def speech_warnings(diarized: DiarizedTranscript) -> list[str]:
    """Plain-language caveats, most serious first; empty when the speech is sound."""
    warnings = [
        f"the {role} never speaks ({silence_reason(diarized)}): criteria that depend on "
        "the conversation cannot be judged"
        for role in silent_roles(diarized)
    ]
    low = low_confidence_roles(diarized)
    if low:
        warnings.append(low)
    return warnings


def low_confidence_roles(diarized: DiarizedTranscript) -> str | None:
    """A mono call whose operator was picked from weak cues: the scores may be the
    customer's. Never swapped silently; said instead."""
    decision = diarized.roles
    if decision is None or not decision.low_confidence or len(silent_roles(diarized)):
        return None
    return (
        f"who is the operator was decided with low confidence ({decision.confidence:.2f}); "
        "the operator and customer may be swapped"
    )


def silence_reason(diarized: DiarizedTranscript) -> str:
    if diarized.method.startswith("stereo"):
        return "one-sided recording: its channel has no speech"
    return "only one voice was found in the mono recording"


def role_metadata(diarized: DiarizedTranscript) -> dict:
    """How roles were decided on a mono call, for the asset's metadata in the UI."""
    decision = diarized.roles
    if decision is None:
        return {}
    return {
        "speakers": diarized.speakers or 0,
        "operator_speaker": -1 if decision.operator_speaker is None else decision.operator_speaker,
        "role_confidence": round(decision.confidence, 3),
        "role_low_confidence": decision.low_confidence,
        "role_source": decision.source,
    }
