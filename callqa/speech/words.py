"""Attach transcribed words to anonymous speaker turns and re-cut segments at speaker changes.

Speech-to-text cuts a mono recording by sound, not by speaker: one segment often holds the
end of one party's sentence and the start of the other's reply. Word timestamps let each
word go to the speaker who was talking when it was said.

Rules, in order, for each word:
1. the turn that overlaps the word the most;
2. on a tie (within TIE_S; typically a word inside two overlapping turns) the turn that
   started later. A later turn that overlaps an earlier one is an interjection ("yes",
   "sorry") or the next speaker cutting in, while the earlier turn's end is often padded
   by the backend's voice detector, so the later turn is the more specific evidence;
3. a word in no turn goes to the nearest turn within NEAREST_TURN_S (the segmenter's voice
   detector misses soft word onsets and endings);
4. otherwise to the speaker most of its segment's other words went to; and when no word of
   the segment found a speaker, to the nearest turn at any distance (speaker 0 when the
   segmenter found nobody at all).
A segment without word timestamps is placed whole by its midpoint, by the same rules.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from callqa.speech.transcript import Segment, Word
from callqa.speech.turns import SpeakerTurn

# A word in no turn goes to the nearest turn at most this far away.
NEAREST_TURN_S = 1.0
# Overlaps this close are a tie (word timestamps are at 10-20 ms resolution).
TIE_S = 0.01
# A word with no duration is treated as this long, centred on its timestamp.
MIN_WORD_S = 0.02


@dataclass(frozen=True)
class Utterance:
    """Consecutive words of one speaker from one STT segment."""

    speaker: int
    start: float
    end: float
    text: str
    words: list[Word] = field(default_factory=list)
    channel: int = 0


def _span(start: float, end: float) -> tuple[float, float]:
    if end - start >= MIN_WORD_S:
        return start, end
    mid = (start + end) / 2
    return mid - MIN_WORD_S / 2, mid + MIN_WORD_S / 2


def _overlap(a: tuple[float, float], turn: SpeakerTurn) -> float:
    return min(a[1], turn.end) - max(a[0], turn.start)


def _gap(a: tuple[float, float], turn: SpeakerTurn) -> float:
    """Seconds between the span and the turn (0 when they touch or overlap)."""
    return max(0.0, turn.start - a[1], a[0] - turn.end)


def speaker_at(start: float, end: float, turns: list[SpeakerTurn]) -> int | None:
    """The speaker of the span [start, end] by rules 1-3 above; None if no turn is near."""
    span = _span(start, end)
    best: SpeakerTurn | None = None
    best_overlap = 0.0
    for turn in turns:
        overlap = _overlap(span, turn)
        if overlap <= 0:
            continue
        if (
            best is None
            or overlap > best_overlap + TIE_S
            or (abs(overlap - best_overlap) <= TIE_S and turn.start > best.start)
        ):
            best, best_overlap = turn, max(overlap, best_overlap)
    if best is not None:
        return best.speaker
    near = min(turns, key=lambda t: (_gap(span, t), -t.start), default=None)
    if near is not None and _gap(span, near) <= NEAREST_TURN_S:
        return near.speaker
    return None


def _nearest_speaker(start: float, end: float, turns: list[SpeakerTurn]) -> int:
    span = _span(start, end)
    near = min(turns, key=lambda t: (_gap(span, t), -t.start), default=None)
    return near.speaker if near is not None else 0


def _join(words: list[Word]) -> str:
    # faster-whisper words carry their leading space (" Hello,"); words written without one
    # (hand-made, or another provider) are joined with spaces.
    if any(w.word[:1].isspace() for w in words):
        return "".join(w.word for w in words).strip()
    return " ".join(w.word.strip() for w in words if w.word.strip())


def _speakers_of_words(segment: Segment, turns: list[SpeakerTurn]) -> list[int]:
    found = [speaker_at(w.start, w.end, turns) for w in segment.words]
    votes = Counter(s for s in found if s is not None)
    if votes:
        # Most words; on a tie the speaker heard first in the segment.
        fallback = max(votes, key=lambda s: (votes[s], -found.index(s)))
    else:
        fallback = _nearest_speaker(segment.start, segment.end, turns)
    return [fallback if s is None else s for s in found]


def assign_words(segments: list[Segment], turns: list[SpeakerTurn]) -> list[Utterance]:
    """Each segment's words given to speakers, cut into one utterance per speaker change.

    Empty segments are dropped; the result is in time order. A segment that stays with one
    speaker keeps its STT text as it is.
    """
    utterances: list[Utterance] = []
    for segment in sorted(segments, key=lambda s: (s.start, s.end)):
        if not segment.text.strip():
            continue
        if not segment.words:
            # No word timestamps (e.g. an API without them): placed whole by its midpoint.
            mid = (segment.start + segment.end) / 2
            speaker = speaker_at(mid, mid, turns)
            if speaker is None:
                speaker = _nearest_speaker(mid, mid, turns)
            utterances.append(
                Utterance(
                    speaker, segment.start, segment.end, segment.text.strip(), [], segment.channel
                )
            )
            continue
        speakers = _speakers_of_words(segment, turns)
        groups: list[tuple[int, list[Word]]] = []
        for word, speaker in zip(segment.words, speakers, strict=True):
            if groups and groups[-1][0] == speaker:
                groups[-1][1].append(word)
            else:
                groups.append((speaker, [word]))
        if len(groups) == 1:
            utterances.append(
                Utterance(
                    groups[0][0],
                    segment.start,
                    segment.end,
                    segment.text.strip(),
                    list(segment.words),
                    segment.channel,
                )
            )
            continue
        for speaker, words in groups:
            text = _join(words)
            if text:
                utterances.append(
                    Utterance(speaker, words[0].start, words[-1].end, text, words, segment.channel)
                )
    utterances.sort(key=lambda u: (u.start, u.end))
    return utterances
