"""Small builders for hand-made test inputs (no audio, no speech model needed)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from callqa.speech.diarization import DiarizedSegment, DiarizedTranscript, conversation_metrics

Line = tuple[float, float, str, str]  # (start, end, speaker, text)

# A short, good sales call as (speaker, text) turns: every rules criterion finds a cue.
SHORT_SALES_CALL = [
    ("operator", "Good morning, thank you for calling Northwind, this is Anna, how can I help?"),
    ("customer", "Hi, I would like to know about your business plan, it seems expensive."),
    ("operator", "What do you use today and how many people are on your team?"),
    ("customer", "About twenty people, but the price worries me."),
    ("operator", "I understand the price concern; the plan saves you time and includes support."),
    ("customer", "Alright, that sounds fair."),
    ("operator", "Shall I send you the offer by email and call you on Friday? Thank you, goodbye!"),
]


def diarized(
    lines: Iterable[Line],
    *,
    duration_s: float | None = None,
    language: str | None = "en",
    method: str = "stereo-channel-map",
) -> DiarizedTranscript:
    """A DiarizedTranscript from (start, end, speaker, text) lines, with real metrics."""
    segments = sorted(
        (
            DiarizedSegment(
                start=start,
                end=end,
                speaker=speaker,
                text=text,
                channel=0 if speaker == "operator" else 1,
            )
            for start, end, speaker, text in lines
        ),
        key=lambda s: (s.start, s.end),
    )
    duration = duration_s if duration_s is not None else max((s.end for s in segments), default=0.0)
    return DiarizedTranscript(
        method=method,
        language=language,
        duration_s=duration,
        segments=segments,
        metrics=conversation_metrics(segments, duration),
    )


def timed(
    turns: Sequence[tuple[str, str]],
    *,
    gap_s: float = 0.5,
    words_per_s: float = 2.5,
    start_s: float = 0.5,
) -> list[Line]:
    """Give (speaker, text) turns plausible, non-overlapping times in call order."""
    lines, t = [], start_s
    for speaker, text in turns:
        length = max(1.0, round(len(text.split()) / words_per_s, 1))
        lines.append((round(t, 2), round(t + length, 2), speaker, text))
        t += length + gap_s
    return lines
