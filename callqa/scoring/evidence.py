"""Checking that quoted evidence really occurs in the transcript."""

from __future__ import annotations

import re

_NON_WORD = re.compile(r"[^\w']+")


def normalize(text: str) -> str:
    """Lowercase, drop punctuation, collapse spaces: quotes survive re-punctuation."""
    return " ".join(_NON_WORD.sub(" ", text.lower()).split())


def quote_found(quote: str, transcript_text: str) -> bool:
    needle = normalize(quote)
    return bool(needle) and needle in normalize(transcript_text)
