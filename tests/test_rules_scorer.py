"""The deterministic rules scorer on hand-made good and poor sales calls (sales-default's
rules, read from the preset)."""

from __future__ import annotations

import pytest

from callqa.config.models import Preset
from callqa.config.registry import load_registry
from callqa.errors import ScoringError
from callqa.scoring.evidence import quote_found
from callqa.scoring.rubric import weighted_total
from callqa.scoring.rules import NOTE, RULES_VERSION, RulesScorer, score_with_rules
from callqa.scoring.validation import rule_violations
from tests.builders import diarized, timed

GOOD_CALL = timed(
    [
        (
            "operator",
            "Good morning, thank you for calling Brightline Energy, my name is Dana. "
            "How can I help you today?",
        ),
        ("customer", "Hi, I'm thinking about switching my electricity plan."),
        ("operator", "Of course. What do you pay per month at the moment?"),
        ("customer", "Around ninety dollars."),
        ("operator", "How many people live in your home, and do you work from home?"),
        ("customer", "Two of us, and yes, I work from home."),
        ("operator", "Which appliances use the most power in your home?"),
        ("customer", "The heating, mostly."),
        (
            "operator",
            "Our Home Saver plan includes free smart thermostat installation and costs "
            "sixty dollars per month, so you save about thirty dollars.",
        ),
        ("customer", "That sounds a bit too expensive for me, to be honest."),
        (
            "operator",
            "I understand. Compared with your current bill you actually save thirty "
            "dollars every month.",
        ),
        ("customer", "Okay, that makes sense."),
        ("operator", "Shall we schedule the switch for Monday? I can send you the contract today."),
        ("customer", "Yes, Monday works."),
        (
            "operator",
            "Great, I will confirm the appointment by email. Thank you for your time "
            "and have a great day.",
        ),
        ("customer", "Thanks, bye."),
    ]
)

# The operator talks over the customer twice (starts >= 0.3 s before they finish).
POOR_CALL = [
    (0.5, 1.0, "operator", "Yeah?"),
    (1.5, 5.5, "customer", "Hi, I'm calling about the internet plans you advertised."),
    (6.0, 8.0, "operator", "We have one plan. It's fifty a month."),
    (8.5, 12.5, "customer", "That seems too expensive. My current provider is cheaper."),
    (11.5, 14.0, "operator", "Whatever, that's the price. Take it or leave it."),
    (14.5, 18.0, "customer", "Can you at least tell me what's included in it?"),
    (17.0, 20.0, "operator", "Listen, I told you already, I don't know the details."),
    (20.5, 23.0, "customer", "Fine, I will think about it."),
    (23.5, 24.0, "operator", "Bye."),
]


@pytest.fixture(scope="module")
def preset() -> Preset:
    return load_registry().preset("sales-default")


@pytest.fixture(scope="module")
def good(preset):
    call = diarized(GOOD_CALL)
    return call, score_with_rules(call, preset)


@pytest.fixture(scope="module")
def poor(preset):
    call = diarized(POOR_CALL)
    return call, score_with_rules(call, preset)


def scores(outcome) -> dict[str, int]:
    return {c.id: c.score for c in outcome.output.criteria}


def by_id(outcome, cid):
    return next(c for c in outcome.output.criteria if c.id == cid)


def test_outcome_is_labelled_as_rules_not_llm(good, preset):
    _call, outcome = good
    assert outcome.valid
    assert outcome.scorer == "rules"
    assert outcome.model == RULES_VERSION
    assert outcome.prompt_version == preset.prompt_version
    assert outcome.note == NOTE
    assert "not by an LLM" in NOTE
    assert outcome.output.summary.startswith(NOTE)
    [attempt] = outcome.attempts
    assert attempt.valid and attempt.error is None and attempt.scorer == "rules"
    assert (attempt.prompt_tokens, attempt.completion_tokens, attempt.cost_usd) == (0, 0, 0.0)
    assert attempt.raw_output == outcome.output.model_dump_json()
    assert [c.id for c in outcome.output.criteria] == preset.criterion_ids


def test_good_call_scores_higher_than_poor_call(good, poor, preset):
    good_total = weighted_total(scores(good[1]), preset)
    poor_total = weighted_total(scores(poor[1]), preset)
    assert good_total > poor_total
    assert good_total >= 80
    assert poor_total <= 35
    # Every criterion is at least as good in the good call.
    for cid in preset.criterion_ids:
        assert scores(good[1])[cid] >= scores(poor[1])[cid], cid


def test_scores_match_the_rubric_of_rules_v1(good, poor):
    """sales-default in the DSL scores these calls as the hand-coded rules-v1 did."""
    assert scores(good[1]) == dict.fromkeys(
        ["greeting", "needs_discovery", "presentation", "objection_handling", "closing", "tone"], 5
    )
    assert scores(poor[1]) == {
        "greeting": 1,
        "needs_discovery": 2,
        "presentation": 3,
        "objection_handling": 2,
        "closing": 2,
        "tone": 1,
    }


def test_good_call_criteria(good):
    _call, outcome = good
    s = scores(outcome)
    assert s["greeting"] == 5
    assert s["needs_discovery"] >= 4
    assert s["presentation"] >= 4
    assert s["objection_handling"] == 5
    assert s["closing"] >= 4
    assert s["tone"] >= 4
    greeting = by_id(outcome, "greeting")
    # The rationale names what the rule found, phrase by phrase.
    assert "greeting: found ('good morning', 'thank you for calling')" in greeting.rationale
    assert "introduction: found ('my name is')" in greeting.rationale
    assert "offer of help: found ('how can i help')" in greeting.rationale
    assert "not found" not in greeting.rationale
    assert greeting.evidence[0].start == 0.5
    assert greeting.evidence[0].speaker == "operator"
    assert "my name is Dana" in greeting.evidence[0].quote
    # Questions are what needs discovery cites.
    for ev in by_id(outcome, "needs_discovery").evidence:
        assert "?" in ev.quote
    assert "polite farewell: found" in by_id(outcome, "closing").rationale
    objection = by_id(outcome, "objection_handling")
    assert "the operator answered 1, 1 with a good cue" in objection.rationale
    assert [(ev.speaker, ev.start) for ev in objection.evidence] == [
        ("customer", 43.0),
        ("operator", 47.9),
    ]
    assert outcome.output.recommendations == [] or all(
        r.startswith("Improve ") for r in outcome.output.recommendations
    )


def test_poor_call_criteria(poor, preset):
    call, outcome = poor
    s = scores(outcome)
    assert s["greeting"] <= 2
    assert s["tone"] <= 2
    assert s["needs_discovery"] <= 2
    assert s["objection_handling"] <= 2
    assert s["closing"] <= 2
    assert call.metrics.roles["operator"].interruptions >= 1
    tone = by_id(outcome, "tone")
    assert "dismissive lines: 2 line(s)" in tone.rationale
    assert "interruptions of the customer: 2 interruption(s)" in tone.rationale
    assert any("Whatever" in ev.quote for ev in tone.evidence)
    greeting = by_id(outcome, "greeting")
    assert "greeting: not found" in greeting.rationale
    # Nothing matched: the line the rule examined is cited, so a reader sees what was said.
    assert [(ev.quote, ev.speaker) for ev in greeting.evidence] == [("Yeah?", "operator")]
    # Two objections were detected as patterns by type, quoting the customer.
    objections = [
        (p.type, p.start, p.speaker)
        for p in outcome.output.patterns
        if preset.pattern(p.type).kind == "objection"
    ]
    assert objections == [
        ("price_objection", 8.5, "customer"),
        ("timing_objection", 20.5, "customer"),
    ]
    # The operator's dismissive line is a forbidden phrase.
    assert ("forbidden_phrase", 11.5, "operator") in [
        (p.type, p.start, p.speaker) for p in outcome.output.patterns
    ]
    assert "bad cues: 'whatever'" in by_id(outcome, "objection_handling").rationale
    # The weakest criteria get recommendations, phrased from the rubric.
    assert len(outcome.output.recommendations) == 2
    descriptions = {c.description for c in preset.criteria}
    for rec in outcome.output.recommendations:
        assert rec.startswith("Improve ")
        assert any(rec.endswith(d) for d in descriptions)


def test_questions_are_recognised_by_whole_words(preset):
    """'Whatever'/'However' start like 'what'/'how' but are not questions."""
    not_questions = diarized(
        timed(
            [
                ("operator", "Whatever, that's the price."),
                ("operator", "However, the plan is fixed."),
                ("operator", "Whoever told you that was wrong."),
                ("operator", "Whenever you like."),
            ]
        )
    )
    questions = diarized(
        timed(
            [
                ("operator", "What is your monthly budget."),
                ("operator", "Tell me about your current provider."),
                ("operator", "Right. Could you spell your surname for me"),
                ("operator", "Your address is still the same, correct?"),
            ]
        )
    )
    none = by_id(score_with_rules(not_questions, preset), "needs_discovery")
    some = by_id(score_with_rules(questions, preset), "needs_discovery")
    assert none.score == 1 and "questions asked: 0 question(s)" in none.rationale
    # No question to cite: the operator's first line shows what was said instead.
    assert [ev.quote for ev in none.evidence] == ["Whatever, that's the price."]
    assert some.score == 5 and "questions asked: 4 question(s)" in some.rationale


def test_objection_without_operator_answer_scores_1(preset):
    call = diarized(
        [
            (0.5, 4.0, "operator", "Hello, this is Sam from Northwind Mobile. How can I help?"),
            (
                4.5,
                7.0,
                "customer",
                "You called me. I'm not interested, we already have a provider.",
            ),
        ]
    )
    outcome = score_with_rules(call, preset)

    result = by_id(outcome, "objection_handling")
    assert result.score == 1
    assert "1 line(s) with objection/competitor_mention" in result.rationale
    assert "the operator answered 0" in result.rationale
    assert [ev.start for ev in result.evidence] == [4.5]
    [pattern] = outcome.output.patterns
    assert (pattern.type, pattern.start, pattern.speaker) == ("not_interested", 4.5, "customer")
    assert pattern.quote == "You called me. I'm not interested, we already have a provider."


def test_objection_answered_dismissively_scores_2(preset):
    call = diarized(
        [
            (0.5, 3.0, "operator", "Hello, this is Sam from Northwind Mobile."),
            (3.5, 6.0, "customer", "That plan is too expensive."),
            (6.5, 8.0, "operator", "That's the price."),
        ]
    )
    result = by_id(score_with_rules(call, preset), "objection_handling")
    assert result.score == 2
    assert "the operator answered 1, 0 with a good cue" in result.rationale
    assert "bad cues: 'that's the price'" in result.rationale
    assert [(ev.speaker, ev.start) for ev in result.evidence] == [
        ("customer", 3.5),
        ("operator", 6.5),
    ]


def test_no_objection_is_not_applicable_and_left_out_of_the_total(preset):
    call = diarized(
        timed(
            [
                (
                    "operator",
                    "Good afternoon, this is Priya from Northwind Mobile. How can I help you?",
                ),
                ("customer", "I want to add a second line to my account."),
                ("operator", "Certainly. Is the second line for a family member?"),
                ("customer", "Yes, for my daughter."),
                (
                    "operator",
                    "The family plan includes unlimited data for ten dollars per month. "
                    "Shall we set up the line today?",
                ),
                ("customer", "Yes please."),
                ("operator", "Done. Thank you for your time, goodbye."),
            ]
        )
    )
    outcome = score_with_rules(call, preset)

    result = by_id(outcome, "objection_handling")
    assert outcome.valid
    assert result.score is None
    assert "No objection/competitor_mention in this call" in result.rationale
    assert "N/A" in result.rationale
    assert result.evidence == []
    assert outcome.output.patterns == []
    assert "Not applicable: objection_handling." in outcome.output.summary
    assert "No patterns detected." in outcome.output.summary
    # N/A is left out of the total (the other weights renormalised), not a neutral 3.
    s = scores(outcome)
    weights = {c.id: c.weight for c in preset.criteria if s[c.id] is not None}
    expected = sum(w * (s[cid] - 1) / 4 for cid, w in weights.items()) / sum(weights.values())
    assert weighted_total(s, preset) == round(100 * expected, 1)
    assert weighted_total(s, preset) != weighted_total({**s, "objection_handling": 3}, preset)


def test_objection_rule_counts_the_share_handled(preset):
    """Two objections, one answered with substance and one brushed off: 'most handled'."""
    call = diarized(
        timed(
            [
                ("operator", "Hello, this is Sam from Northwind Mobile. How can I help?"),
                ("customer", "Your plan is too expensive."),
                ("operator", "I understand. Compared with your bill you save ten dollars."),
                ("customer", "I'm not sure I need it."),
                ("operator", "Okay."),
                ("customer", "Fine."),
            ]
        )
    )
    result = by_id(score_with_rules(call, preset), "objection_handling")
    assert result.score == 4
    assert "2 line(s) with objection/competitor_mention" in result.rationale
    assert "the operator answered 2, 1 with a good cue" in result.rationale
    assert [ev.speaker for ev in result.evidence] == [
        "customer",
        "operator",
        "customer",
        "operator",
    ]


@pytest.mark.parametrize("which", ["good", "poor"])
def test_every_evidence_quote_is_verbatim_in_the_transcript(which, request, preset):
    call, outcome = request.getfixturevalue(which)
    text = call.as_text()
    lines = {(s.start, s.text) for s in call.segments}
    quotes = [ev for c in outcome.output.criteria for ev in c.evidence]
    quotes += list(outcome.output.patterns)
    assert quotes, "the scorer cited nothing"
    speakers = {(s.start, s.text): s.speaker for s in call.segments}
    for ev in quotes:
        assert quote_found(ev.quote, text), ev.quote
        # Rules cite whole utterances, with the start time and speaker of that very line.
        assert (ev.start, ev.quote) in lines, ev
        assert speakers[(ev.start, ev.quote)] == ev.speaker, ev
    # Every scored criterion cites at least one line, and the output passes the rules.
    assert all(c.evidence for c in outcome.output.criteria if c.score is not None)
    assert rule_violations(outcome.output, preset, call.segments) == []


@pytest.mark.parametrize("which", ["good", "poor"])
def test_scores_stay_on_the_scale(which, request, preset):
    _call, outcome = request.getfixturevalue(which)
    for c in outcome.output.criteria:
        assert c.score is None or preset.scale.min <= c.score <= preset.scale.max
        assert c.rationale


def test_custom_scale_is_respected(preset):
    """Scores are clamped to the preset's scale (here 1-3; the rules are unchanged)."""
    data = preset.model_dump()
    for c in data["criteria"]:
        c["anchors"] = {k: v for k, v in c["anchors"].items() if k <= 3}
    narrow = Preset.model_validate({**data, "scale": {"min": 1, "max": 3}})
    outcome = score_with_rules(diarized(GOOD_CALL), narrow)
    assert outcome.valid
    assert all(1 <= c.score <= 3 for c in outcome.output.criteria)
    assert by_id(outcome, "greeting").score == 3
    assert "kept to the scale: 3" in by_id(outcome, "needs_discovery").rationale


def test_subset_preset_scores_only_its_criteria_in_its_order(preset):
    subset = Preset.model_validate(
        {
            **preset.model_dump(),
            "criteria": [
                c.model_dump() for c in reversed(preset.criteria) if c.id in ("tone", "greeting")
            ],
        }
    )
    outcome = score_with_rules(diarized(GOOD_CALL), subset)
    assert [c.id for c in outcome.output.criteria] == ["tone", "greeting"]


def test_unknown_criterion_raises_naming_it(preset):
    custom = Preset.model_validate(
        {
            **preset.model_dump(),
            "id": "compliance-check",
            "criteria": [
                *(c.model_dump() for c in preset.criteria),
                {
                    "id": "gdpr_disclosure",
                    "name": "GDPR disclosure",
                    "weight": 1,
                    "description": "The operator reads the privacy notice.",
                },
            ],
        }
    )
    with pytest.raises(ScoringError) as info:
        score_with_rules(diarized(GOOD_CALL), custom)
    message = str(info.value)
    assert "criteria without a rule: gdpr_disclosure" in message
    assert "compliance-check" in message
    assert "LLM scorer" in message


def test_deterministic(preset):
    first = RulesScorer().score(diarized(POOR_CALL), preset, category="sales")
    second = RulesScorer().score(diarized(POOR_CALL), preset, category="retention")
    assert first.output.model_dump() == second.output.model_dump()
    assert first.attempts[0].raw_output == second.attempts[0].raw_output
    assert (first.scorer, first.model, first.prompt_version) == (
        second.scorer,
        second.model,
        second.prompt_version,
    )
