"""Masking personal data before a transcript leaves the perimeter, and in stored text.

Card numbers (13-19 digits, Luhn-checked, so an order number is left alone), phone
numbers (7-15 digits, with the usual separators), e-mail addresses, and the tenant's own
patterns are replaced by `[CARD]`, `[PHONE]`, `[EMAIL]`, `[<NAME>]`. What the scorer
quotes as evidence is then the masked text, so quotes still verify against the stored,
masked transcript.

Limits: numbers spoken as words ("four one one one ...") are not recognised; speech-to-
text usually writes long digit runs as digits.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from callqa.config.models import Redaction, Tenant

EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# Digit runs with spaces, dots or dashes between groups; checked further below.
CARD_CANDIDATE = re.compile(r"(?<![\w])\d(?:[ -]?\d){12,18}(?![\w])")
PHONE_CANDIDATE = re.compile(r"(?<![\w+])\+?\(?\d[\d ().-]{5,}\d(?![\w])")


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def _mask_cards(text: str) -> str:
    def replace(match: re.Match) -> str:
        digits = _digits(match.group())
        return "[CARD]" if 13 <= len(digits) <= 19 and luhn_valid(digits) else match.group()

    return CARD_CANDIDATE.sub(replace, text)


def _mask_phones(text: str) -> str:
    def replace(match: re.Match) -> str:
        digits = _digits(match.group())
        return "[PHONE]" if 7 <= len(digits) <= 15 else match.group()

    return PHONE_CANDIDATE.sub(replace, text)


@dataclass(frozen=True)
class Redactor:
    settings: Redaction

    def __call__(self, text: str) -> str:
        kinds = set(self.settings.kinds)
        if "email" in kinds:
            text = EMAIL.sub("[EMAIL]", text)
        # Cards before phones: a card number is also a long digit run.
        if "card" in kinds:
            text = _mask_cards(text)
        if "phone" in kinds:
            text = _mask_phones(text)
        for name, regex in self.settings.patterns.items():
            text = re.sub(regex, f"[{name.upper()}]", text)
        return text


def redactor_for(tenant: Tenant) -> Callable[[str], str] | None:
    """The tenant's redaction, or None when it is turned off."""
    return Redactor(tenant.redaction) if tenant.redaction.enabled else None


def redact_transcript(diarized, redact: Callable[[str], str]):
    """The diarized transcript with every line masked (timing and speakers unchanged).
    Word timings are dropped: a card number spans several words, so words cannot be masked
    one by one, and nothing after diarization reads them."""
    return diarized.model_copy(
        update={
            "segments": [
                s.model_copy(update={"text": redact(s.text), "words": []})
                for s in diarized.segments
            ]
        }
    )


def redact_attempts(attempts, redact: Callable[[str], str]) -> None:
    """Mask what scoring attempts keep of the model's reply and errors, before storing."""
    for attempt in attempts:
        if attempt.raw_output:
            attempt.raw_output = redact(attempt.raw_output)
        if attempt.error:
            attempt.error = redact(attempt.error)
