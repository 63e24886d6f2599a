"""Transcript data: what speech-to-text produces, per channel, with word timestamps."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Word(BaseModel):
    start: float
    end: float
    word: str
    probability: float = 1.0


class Segment(BaseModel):
    start: float = Field(description="seconds from the start of the recording")
    end: float
    text: str
    channel: int = 0
    words: list[Word] = Field(default_factory=list)


class ChannelTranscript(BaseModel):
    channel: int
    language: str | None = None
    language_probability: float | None = None
    speech_s: float = Field(0.0, description="speech seconds found by the energy detector")
    segments: list[Segment]


class Transcript(BaseModel):
    model: str
    duration_s: float
    channels: list[ChannelTranscript]

    @property
    def language(self) -> str | None:
        return next((c.language for c in self.channels if c.language), None)

    @property
    def segments(self) -> list[Segment]:
        return sorted((s for c in self.channels for s in c.segments), key=lambda s: s.start)

    @property
    def word_count(self) -> int:
        return sum(len(s.text.split()) for s in self.segments)


def covered_seconds(regions: list[tuple[float, float]], segments: list[Segment], pad: float = 0.3):
    """Seconds of `regions` that fall inside some (padded) segment."""
    covered = 0.0
    # Merge overlapping padded spans first, so no second of speech is counted twice.
    spans: list[list[float]] = []
    for s_start, s_end in sorted((s.start - pad, s.end + pad) for s in segments):
        if spans and s_start <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], s_end)
        else:
            spans.append([s_start, s_end])
    for start, end in regions:
        for s_start, s_end in spans:
            lo, hi = max(start, s_start), min(end, s_end)
            if hi > lo:
                covered += hi - lo
    return covered


def split_on_pauses(segment: Segment, max_gap_s: float = 0.6) -> list[Segment]:
    """Split a segment into utterances wherever its words pause for longer than `max_gap_s`.

    With VAD on, Whisper may fold several turns of one channel into a single segment
    that spans the other party's replies; word timestamps give the real turn boundaries.
    """
    if len(segment.words) < 2:
        return [segment]
    groups: list[list[Word]] = [[segment.words[0]]]
    for word in segment.words[1:]:
        if word.start - groups[-1][-1].end > max_gap_s:
            groups.append([word])
        else:
            groups[-1].append(word)
    if len(groups) == 1:
        return [segment]
    return [
        Segment(
            start=g[0].start,
            end=g[-1].end,
            channel=segment.channel,
            words=g,
            text=" ".join(w.word.strip() for w in g if w.word.strip()),
        )
        for g in groups
    ]
