"""Who is the operator among anonymous speakers: cues, overrides, confidence."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from callqa.config.models import RoleHints, Tenant
from callqa.speech.roles import company_names, decide_roles
from callqa.speech.words import Utterance

TENANT = "Northwind Telecom (demo)"


def call(*lines: tuple[int, str]) -> list[Utterance]:
    """Utterances two seconds apart: (speaker, text)."""
    return [
        Utterance(speaker=s, start=2.0 * i, end=2.0 * i + 1.5, text=text)
        for i, (s, text) in enumerate(lines)
    ]


def test_the_speaker_who_greets_with_the_company_is_the_operator_even_answering_second():
    # An outbound-style start: speaker 0 picks up, speaker 1 greets with the company.
    utterances = call(
        (0, "Hello?"),
        (1, "Hi, good morning, this is Northwind calling about your renewal."),
        (0, "Oh, okay, sure."),
        (1, "Great. Do you still use the family plan?"),
        (0, "Yes we do."),
    )
    decision = decide_roles(utterances, tenant_name=TENANT)
    assert decision.operator_speaker == 1
    assert decision.source == "cues"
    assert decision.confidence > 0.9 and not decision.low_confidence
    assert decision.evidence["company_greeting"] == {"0": 0.0, "1": 1.0}
    assert decision.evidence["first_speaker"] == {"0": 1.0, "1": 0.0}
    assert (decision.role_of(1), decision.role_of(0)) == ("operator", "customer")


def test_a_caller_asking_is_this_the_company_is_not_greeting_with_it():
    utterances = call(
        (0, "Hello, how can I help you?"),
        (1, "Hi, is this Northwind Telecom? I saw your advert for business phones."),
        (0, "Yes, it is. How many phones does your business need?"),
        (1, "Maybe three phones."),
    )
    decision = decide_roles(utterances, tenant_name=TENANT)
    assert decision.evidence["company_greeting"] == {"0": 0.0, "1": 0.0}
    assert decision.evidence["customer_phrases"]["1"] == 1.0
    assert decision.operator_speaker == 0 and not decision.low_confidence


def test_answering_with_an_offer_of_help_outweighs_a_caller_naming_the_company():
    # tiny.en heard the caller's "is this Northwind Telecom?" as "it's Northwind Telecom".
    utterances = call(
        (0, "Hello, how can I help you?"),
        (1, "Hi, it's Northwind Telecom. I saw your advert."),
        (0, "Yes, it is. How many phones do you need?"),
        (1, "Maybe three phones."),
        (0, "Thank you for calling."),
    )
    decision = decide_roles(utterances, tenant_name=TENANT)
    assert decision.evidence["company_greeting"] == {"0": 0.0, "1": 1.0}
    assert decision.evidence["opening_phrase"] == {"0": 1.0, "1": 0.0}
    assert decision.operator_speaker == 0 and not decision.low_confidence


def test_company_names_come_from_the_tenant_name_and_the_hints():
    assert company_names(TENANT, RoleHints()) == ["Northwind Telecom", "Northwind"]
    hints = RoleHints(company_names=["NW Mobile"])
    assert company_names("Acme", hints) == ["NW Mobile", "Acme"]
    # An everyday first word is not taken for the company on its own.
    assert company_names("Great Deals Ltd", RoleHints()) == ["Great Deals Ltd"]


def test_a_known_operator_name_in_a_self_introduction_marks_the_operator():
    utterances = call(
        (0, "Hi, hello."),
        (1, "Hello, Anna speaking."),
        (0, "Thanks Anna, I wanted to ask something."),
        (1, "Sure."),
    )
    hints = RoleHints(operator_names=["Anna Smith"])
    decision = decide_roles(utterances, hints)
    assert decision.operator_speaker == 1
    assert decision.evidence["operator_name"] == {"0": 0.0, "1": 1.0}  # "Thanks Anna" is not one
    # Without the name the same call has no strong cue: a low-confidence guess.
    assert decide_roles(utterances).low_confidence


def test_the_speaker_asking_the_questions_leans_operator():
    utterances = call(
        (0, "Hi."),
        (1, "Hi."),
        (0, "Okay."),
        (1, "What is the address? And the postcode?"),
        (0, "Twelve Main Street, one two three."),
        (1, "When did it start?"),
        (0, "Yesterday."),
    )
    decision = decide_roles(utterances, RoleHints(min_confidence=0.5))
    assert decision.operator_speaker == 1
    assert decision.evidence["questions"] == {"0": -0.5, "1": 0.5}
    assert 0.5 < decision.confidence < 0.9  # a weak cue alone is not certainty


def test_customer_phrases_count_against_a_speaker():
    utterances = call(
        (0, "Hello, I'm calling about my bill, it is wrong."),
        (1, "Okay, let me check that for you."),
    )
    decision = decide_roles(utterances)
    assert decision.operator_speaker == 1
    assert decision.evidence["customer_phrases"]["0"] == 2.0
    assert decision.evidence["service_phrases"]["1"] == 1.0
    assert not decision.low_confidence


@pytest.mark.parametrize(("position", "expected"), [("first", 0), ("second", 1)])
def test_the_tenant_override_wins_over_the_cues(position, expected):
    # Speaker 1 greets with the company, yet the tenant says who the operator is.
    utterances = call(
        (0, "Hello?"),
        (1, "Thank you for calling Northwind, how can I help?"),
        (0, "Hi."),
    )
    decision = decide_roles(utterances, RoleHints(operator_speaker=position), TENANT)
    assert decision.operator_speaker == expected
    assert (decision.source, decision.confidence, decision.low_confidence) == (
        "override",
        1.0,
        False,
    )
    assert decision.evidence["company_greeting"]["1"] == 1.0  # kept for audit


def test_override_counts_speakers_in_the_order_they_are_heard():
    # Segmenter ids need not follow speech order once words are assigned.
    utterances = call((5, "Hello?"), (2, "Hi there."))
    assert decide_roles(utterances, RoleHints(operator_speaker="first")).operator_speaker == 5
    assert decide_roles(utterances, RoleHints(operator_speaker="second")).operator_speaker == 2
    # "second" when only one speaker was heard: that speaker is the customer.
    lone = decide_roles(call((5, "Hello?")), RoleHints(operator_speaker="second"))
    assert lone.operator_speaker is None and lone.role_of(5) == "customer"


def test_conflicting_cues_give_low_confidence():
    # Each speaker has one strong operator cue: speaker 0 greets with the company,
    # speaker 1 introduces themselves as a known operator (a transferred call, say).
    utterances = call(
        (0, "Good morning, Northwind."),
        (1, "Hi, this is Anna."),
    )
    decision = decide_roles(utterances, RoleHints(operator_names=["Anna"]), TENANT)
    assert decision.evidence["company_greeting"] == {"0": 1.0, "1": 0.0}
    assert decision.evidence["operator_name"] == {"0": 0.0, "1": 1.0}
    assert decision.low_confidence
    assert decision.confidence < 0.6


def test_no_cues_at_all_give_a_coin_flip_flagged_low():
    utterances = call((0, "Yes."), (1, "No."), (0, "Maybe."), (1, "Fine."))
    decision = decide_roles(utterances)
    assert decision.operator_speaker == 0  # first heard breaks the tie
    assert decision.confidence == pytest.approx(0.55, abs=0.01)  # only "speaks first": weak
    assert decision.low_confidence
    assert decide_roles([]).operator_speaker is None and decide_roles([]).confidence == 0


def test_more_than_two_speakers_one_operator_the_rest_customers():
    utterances = call(
        (0, "Thank you for calling Northwind, this is Sam."),
        (1, "Hi, I'm calling about my order."),
        (2, "And I'm his wife, hello."),
        (0, "Let me check that."),
    )
    decision = decide_roles(utterances, RoleHints(operator_names=["Sam"]), TENANT)
    assert decision.operator_speaker == 0 and not decision.low_confidence
    assert [decision.role_of(s) for s in (0, 1, 2)] == ["operator", "customer", "customer"]
    assert set(decision.evidence["score"]) == {"0", "1", "2"}


def test_a_lone_speaker_is_operator_only_if_the_cues_say_so_and_always_low_confidence():
    greeter = decide_roles(
        call((0, "Thank you for calling Northwind, how can I help?")), None, TENANT
    )
    assert greeter.operator_speaker == 0
    assert greeter.low_confidence and greeter.confidence <= 0.5
    caller = decide_roles(call((0, "Hi, I'm calling about my bill.")), None, TENANT)
    assert caller.operator_speaker is None and caller.role_of(0) == "customer"
    assert caller.low_confidence


def test_role_hints_on_the_tenant():
    tenant = Tenant(id="acme", name="Acme", roles={"operator_names": [" Anna "]})
    assert tenant.roles.operator_names == ["Anna"]
    assert Tenant(id="acme", name="Acme").roles == RoleHints()
    with pytest.raises(ValidationError, match="blank"):
        RoleHints(company_names=["  "])
    with pytest.raises(ValidationError, match="operator_speaker"):
        RoleHints(operator_speaker="third")
    with pytest.raises(ValidationError, match="min_confidence"):
        RoleHints(min_confidence=1.5)
