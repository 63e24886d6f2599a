"""Grounding evidence: every quote must be words the cited speaker said, near the time cited.

A quote is checked against the diarized transcript's turns (consecutive lines of one
speaker): its words, ignoring case and punctuation, must occur there as a run of whole
words ("ank you for call" is no quote of "thank you for calling"), in a turn of the
speaker the quote names, which must span the cited start time give or take `NEAR_S`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_NON_WORD = re.compile(r"[^\w']+")
# How far the cited start may be from the turn holding the quote: LLMs cite the start of
# the line (or of the turn) the quote comes from, rarely the word itself.
NEAR_S = 10.0


def normalize(text: str) -> str:
    """Lowercase, drop punctuation, collapse spaces: quotes survive re-punctuation."""
    # Typographic apostrophes (I’ve) are the ASCII one, so quotes and cues match either.
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    return " ".join(_NON_WORD.sub(" ", text).split())


@dataclass(frozen=True)
class Turn:
    speaker: str
    start: float
    end: float
    words: tuple[str, ...]


def _field(segment: Any, name: str):
    return segment[name] if isinstance(segment, Mapping) else getattr(segment, name)


def turns(segments: Iterable[Any]) -> list[Turn]:
    """Consecutive lines of one speaker joined (a quote may run across a line break)."""
    result: list[Turn] = []
    for seg in segments:
        speaker, text = _field(seg, "speaker"), _field(seg, "text")
        start, end = float(_field(seg, "start")), float(_field(seg, "end"))
        words = tuple(normalize(text).split())
        if result and result[-1].speaker == speaker:
            last = result[-1]
            result[-1] = Turn(speaker, last.start, max(last.end, end), last.words + words)
        else:
            result.append(Turn(speaker, start, end, words))
    return result


def _contains(haystack: Sequence[str], needle: Sequence[str]) -> bool:
    n = len(needle)
    first = needle[0]
    return any(
        haystack[i] == first and tuple(haystack[i : i + n]) == tuple(needle)
        for i in range(len(haystack) - n + 1)
    )


def quote_problem(quote: str, start: float, speaker: str, transcript: list[Turn]) -> str | None:
    """Why this quote is not grounded, or None when it is."""
    words = normalize(quote).split()
    if not words:
        return f"quote {quote!r} has no words"
    if speaker not in ("operator", "customer"):
        return f"quote does not name its speaker (operator or customer): {quote!r}"
    holders = [t for t in transcript if _contains(t.words, words)]
    if not holders:
        return f"quote not found in the transcript (as whole words): {quote!r}"
    said = [t for t in holders if t.speaker == speaker]
    if not said:
        other = holders[0].speaker
        return f"quote attributed to the {speaker} but said by the {other}: {quote!r}"
    if not any(t.start - NEAR_S <= start <= t.end + NEAR_S for t in said):
        where = ", ".join(f"{t.start:.1f}-{t.end:.1f} s" for t in said[:3])
        return f"quote {quote!r} cited at {start:.1f} s but said at {where}"
    return None


def quote_found(quote: str, transcript_text: str) -> bool:
    """Whole-word presence anywhere (for text without speakers or times)."""
    needle = normalize(quote).split()
    return bool(needle) and _contains(normalize(transcript_text).split(), needle)
