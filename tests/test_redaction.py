"""PII masking: what goes to an LLM and what is stored."""

from __future__ import annotations

import pytest

from callqa.config.models import Redaction, Tenant
from callqa.privacy.redaction import Redactor, luhn_valid, redactor_for


def redact(text: str, **settings) -> str:
    return Redactor(Redaction(**settings))(text)


@pytest.mark.parametrize(
    ("number", "valid"),
    [("4111111111111111", True), ("4111111111111112", False), ("79927398713", True)],
)
def test_luhn(number, valid):
    assert luhn_valid(number) is valid


def test_card_numbers_masked_only_when_luhn_valid():
    text = "Card 4111 1111 1111 1111, order 4111 1111 1111 1112, and 5500-0000-0000-0004."
    assert redact(text) == "Card [CARD], order 4111 1111 1111 1112, and [CARD]."


def test_phones_and_emails_masked():
    text = "Call me on +1 (415) 555-0132 or 020 7946 0958, or write to jane.doe+qa@example.co.uk."
    assert redact(text) == "Call me on [PHONE] or [PHONE], or write to [EMAIL]."


def test_short_numbers_times_and_prices_are_kept():
    text = "It costs 49.99 per month, 2 lines, call at 10:30 on 12/05, plan 300."
    assert redact(text) == text


def test_configured_patterns_and_kinds():
    text = "Contract AB-123456 for jane@example.com"
    masked = redact(text, kinds=["phone"], patterns={"contract": r"\bAB-\d{6}\b"})
    assert masked == "Contract [CONTRACT] for jane@example.com"


def test_bad_pattern_is_a_config_error_naming_it():
    with pytest.raises(ValueError, match="'contract' does not compile"):
        Redaction(patterns={"contract": "AB-("})


def test_tenant_setting_turns_it_off():
    tenant = Tenant(id="acme", name="Acme", redaction={"enabled": False})
    assert redactor_for(tenant) is None
    assert redactor_for(Tenant(id="acme", name="Acme")) is not None


def test_transcript_and_attempts_are_masked():
    from callqa.privacy.redaction import redact_attempts, redact_transcript
    from callqa.scoring.outcome import Attempt
    from tests.builders import diarized, timed

    redact = Redactor(Redaction())
    call = diarized(
        timed([("customer", "My card is 4111 1111 1111 1111."), ("operator", "Thanks, noted.")])
    )
    from callqa.speech.transcript import Word

    card = call.segments[0]
    call.segments[0] = card.model_copy(
        update={
            "words": [
                Word(start=card.start + i, end=card.start + i + 0.5, word=w)
                for i, w in enumerate(card.text.split())
            ]
        }
    )
    masked = redact_transcript(call, redact)
    assert [s.text for s in masked.segments] == ["My card is [CARD].", "Thanks, noted."]
    # The card's digits were words with timings: none of them is left.
    assert all(s.words == [] for s in masked.segments)
    assert "4111" not in masked.model_dump_json()
    assert [s.start for s in masked.segments] == [s.start for s in call.segments]
    attempt = Attempt(
        attempt=1,
        scorer="llm",
        model="m",
        prompt_version="v",
        raw_output='{"quote": "mail me at a.b@example.com"}',
        error="bad: +44 20 7946 0958",
    )
    redact_attempts([attempt], redact)
    assert attempt.raw_output == '{"quote": "mail me at [EMAIL]"}'
    assert attempt.error == "bad: [PHONE]"
