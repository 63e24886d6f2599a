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
    return warnings


def silence_reason(diarized: DiarizedTranscript) -> str:
    if diarized.method.startswith("stereo"):
        return "one-sided recording: its channel has no speech"
    return "only one voice was found in the mono recording"
