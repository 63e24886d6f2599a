"""LLMScorer against a real OpenAI-compatible HTTP server on loopback (via litellm)."""

from __future__ import annotations

import json

import pytest

import callqa.scoring.llm
from callqa.calls.record import build_record
from callqa.config.registry import load_registry
from callqa.scoring.llm import LLMScorer, render_prompt
from callqa.scoring.rubric import weighted_total
from callqa.speech.audio import AudioProbe
from tests.builders import diarized
from tests.fakes import Reply

API_KEY = "test-key-not-secret-123"
MODEL = "openai/gpt-4o-mini"

LINES = [
    (
        0.5,
        5.0,
        "operator",
        "Good morning, this is Dana from Brightline Energy. How can I help you today?",
    ),
    (5.5, 8.5, "customer", "Hi, I would like to lower my electricity bill."),
    (9.0, 12.0, "operator", "What does your household usually pay per month?"),
    (12.5, 16.0, "customer", "About ninety dollars, which feels too expensive."),
    (
        16.5,
        23.0,
        "operator",
        "I understand. Our Saver plan includes free installation and costs sixty dollars per month.",
    ),
    (23.5, 25.0, "customer", "That sounds good."),
    (25.5, 30.0, "operator", "Shall we schedule the switch for Monday? Thank you for your time."),
]
SCORES = {
    "greeting": 5,
    "needs_discovery": 3,
    "presentation": 4,
    "objection_handling": 4,
    "closing": 4,
    "tone": 5,
}
EVIDENCE = {
    "greeting": ("this is Dana from Brightline Energy", 0.5),
    "needs_discovery": ("What does your household usually pay per month?", 9.0),
    "presentation": ("Our Saver plan includes free installation", 16.5),
    "objection_handling": ("I understand.", 16.5),
    "closing": ("Shall we schedule the switch for Monday?", 25.5),
    "tone": ("Thank you for your time.", 25.5),
}


@pytest.fixture(autouse=True)
def _short_backoff(monkeypatch):
    """Retries without Retry-After wait the backoff; a short one keeps the suite fast (a
    Retry-After is still waited for in full)."""
    monkeypatch.setattr(callqa.scoring.llm, "BACKOFF_S", 0.02)


@pytest.fixture(scope="module")
def preset():
    return load_registry().preset("sales-default")


@pytest.fixture(scope="module")
def call():
    return diarized(LINES)


def reply(scores: dict[str, int] | None = None, **overrides) -> dict:
    """A well-formed scorer reply for the sales-default preset."""
    scores = {**SCORES, **(scores or {})}
    data = {
        "criteria": [
            {
                "id": cid,
                "score": score,
                "rationale": f"{cid} looked at closely.",
                "evidence": [{"quote": EVIDENCE[cid][0], "start": EVIDENCE[cid][1]}],
            }
            for cid, score in scores.items()
        ],
        "summary": "A friendly, well-structured sales call.",
        "recommendations": ["Ask one more question about usage."],
        "patterns": [{"type": "objection", "quote": "feels too expensive", "start": 12.5}],
    }
    data.update(overrides)
    return data


def scorer(fake_llm, **kwargs) -> LLMScorer:
    return LLMScorer(model=MODEL, api_base=fake_llm.api_base, api_key=API_KEY, **kwargs)


def user_messages(request: dict) -> list[str]:
    return [m["content"] for m in request["messages"] if m["role"] == "user"]


def assert_key_not_leaked(outcome) -> None:
    for attempt in outcome.attempts:
        assert API_KEY not in (attempt.error or "")
        assert API_KEY not in (attempt.raw_output or "")
        assert API_KEY not in json.dumps(attempt.as_dict())
        # litellm's own retries need tenacity; a missing import once hid every real error.
        assert "tenacity" not in (attempt.error or "").lower()


def test_valid_reply_is_accepted_with_usage_cost_and_request_shape(fake_llm, preset, call):
    import litellm

    raw = json.dumps(reply())
    fake_llm.replies.append(raw)

    outcome = scorer(fake_llm).score(call, preset, category="sales")

    assert outcome.valid
    assert outcome.scorer == "llm" and outcome.model == MODEL
    assert outcome.prompt_version == preset.prompt_version
    assert len(outcome.attempts) == 1
    attempt = outcome.attempts[0]
    assert attempt.valid and attempt.error is None
    assert attempt.attempt == 1
    assert attempt.prompt_version == preset.prompt_version
    assert (attempt.prompt_tokens, attempt.completion_tokens) == (1200, 300)
    assert (outcome.prompt_tokens, outcome.completion_tokens) == (1200, 300)
    assert attempt.raw_output == raw
    # Cost comes from litellm's bundled price map for gpt-4o-mini.
    price = litellm.model_cost["gpt-4o-mini"]
    expected_cost = 1200 * price["input_cost_per_token"] + 300 * price["output_cost_per_token"]
    assert attempt.cost_usd > 0
    assert attempt.cost_usd == pytest.approx(expected_cost, rel=1e-6)
    assert {c.id: c.score for c in outcome.output.criteria} == SCORES

    # Exactly one HTTP request, authenticated with the configured key, to the right model.
    assert len(fake_llm.requests) == 1
    request = fake_llm.requests[0]
    assert fake_llm.headers[0].get("Authorization") == f"Bearer {API_KEY}"
    assert request["model"] == "gpt-4o-mini"
    assert request["temperature"] == preset.llm.temperature
    assert request["max_tokens"] == preset.llm.max_tokens

    # Structured output: a strict JSON schema enumerating the criteria and the 1-5 scale.
    fmt = request["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["strict"] is True
    schema = fmt["json_schema"]["schema"]
    item = schema["properties"]["criteria"]["items"]
    assert item["properties"]["id"]["enum"] == preset.criterion_ids
    assert item["properties"]["score"]["minimum"] == 1
    assert item["properties"]["score"]["maximum"] == 5
    assert schema["properties"]["criteria"]["minItems"] == len(preset.criteria)
    assert schema["properties"]["criteria"]["maxItems"] == len(preset.criteria)
    assert "total" not in schema["properties"]
    assert schema["additionalProperties"] is False

    # The prompt carries the transcript lines and every criterion; no placeholder left.
    assert [m["role"] for m in request["messages"]] == ["system", "user"]
    prompt = request["messages"][1]["content"]
    for start, _end, speaker, text in LINES:
        assert f"[{start:.1f}] {speaker}: {text}" in prompt
    for criterion in preset.criteria:
        assert f"- {criterion.id} ({criterion.name}):" in prompt
    assert "integer scale from 1\n(very poor) to 5 (excellent)" in prompt
    assert "analyst for a sales team" in prompt
    assert "$" not in prompt
    assert prompt == render_prompt(preset, call, "sales")


def test_invalid_json_is_retried_with_the_error_fed_back(fake_llm, preset, call):
    fake_llm.replies += ["Sure! Here are the scores: {criteria: oops", json.dumps(reply())]

    outcome = scorer(fake_llm).score(call, preset)

    assert outcome.valid
    assert len(outcome.attempts) == 2
    first, second = outcome.attempts
    assert not first.valid and "JSON" in first.error
    assert first.raw_output.startswith("Sure! Here are the scores")
    assert second.valid and second.attempt == 2
    # Both attempts' tokens count toward the call.
    assert (outcome.prompt_tokens, outcome.completion_tokens) == (2400, 600)
    assert outcome.cost_usd == pytest.approx(first.cost_usd + second.cost_usd, abs=1e-6)

    assert len(fake_llm.requests) == 2
    retry = fake_llm.requests[1]["messages"]
    # The rejected reply is shown back as the assistant turn, then the reasons.
    assert retry[-2] == {
        "role": "assistant",
        "content": "Sure! Here are the scores: {criteria: oops",
    }
    assert retry[-1]["role"] == "user"
    assert "rejected" in retry[-1]["content"]
    assert first.error in retry[-1]["content"]
    assert "not valid JSON" in retry[-1]["content"]
    # The original prompt is kept.
    assert retry[:2] == fake_llm.requests[0]["messages"]


def test_missing_criterion_twice_is_not_valid(fake_llm, preset, call):
    incomplete = reply()
    incomplete["criteria"] = [c for c in incomplete["criteria"] if c["id"] != "closing"]
    fake_llm.replies += [json.dumps(incomplete), json.dumps(incomplete)]

    outcome = scorer(fake_llm).score(call, preset)

    assert not outcome.valid and outcome.output is None
    assert len(outcome.attempts) == 2
    assert all(not a.valid for a in outcome.attempts)
    for attempt in outcome.attempts:
        # The schema fixes the count of criteria, and the missing id is named.
        assert "is too short" in attempt.error
        assert "missing criteria: closing" in attempt.error
    assert outcome.last_error == outcome.attempts[-1].error
    assert len(fake_llm.requests) == 2
    feedback = user_messages(fake_llm.requests[1])[-1]
    assert "rejected" in feedback and "missing criteria: closing" in feedback


def test_missing_criterion_is_named_when_the_count_is_right(fake_llm, preset, call):
    """Six items but `closing` missing (greeting scored twice): the id is named."""
    data = reply()
    data["criteria"] = [
        c if c["id"] != "closing" else {**data["criteria"][0]} for c in data["criteria"]
    ]
    fake_llm.replies += [json.dumps(data), json.dumps(data)]

    outcome = scorer(fake_llm).score(call, preset)

    assert not outcome.valid
    assert len(outcome.attempts) == 2
    for attempt in outcome.attempts:
        assert "missing criteria: closing" in attempt.error
        assert "scored more than once: greeting" in attempt.error


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        pytest.param(
            lambda d: d["criteria"][4].update(score=7),
            ["criteria/4/score", "7 is greater than the maximum of 5"],
            id="score-7",
        ),
        pytest.param(
            lambda d: d["criteria"][0].update(score=0),
            ["criteria/0/score", "0 is less than the minimum of 1"],
            id="score-0",
        ),
        pytest.param(
            lambda d: d["criteria"][1].update(score=3.5),
            ["criteria/1/score", "is not of type 'integer'"],
            id="score-fraction",
        ),
        pytest.param(
            lambda d: d["criteria"][2]["evidence"].append(
                {"quote": "we guarantee the lowest price in the country", "start": 16.5}
            ),
            ["presentation: evidence quote not found in transcript", "lowest price in the country"],
            id="invented-quote",
        ),
        pytest.param(
            lambda d: d.update(total=97.5),
            ["schema: <root>", "Additional properties are not allowed", "'total'"],
            id="extra-total-field",
        ),
        pytest.param(
            lambda d: d["criteria"][3].update(id="empathy"),
            [
                "criteria/3/id",
                "'empathy' is not one of",
                "unknown criteria: empathy",
                "missing criteria: objection_handling",
            ],
            id="unknown-criterion",
        ),
        pytest.param(
            lambda d: d.update(summary=""), ["summary", "should be non-empty"], id="empty-summary"
        ),
    ],
)
def test_invalid_replies_are_rejected(fake_llm, preset, call, mutate, expected):
    data = reply()
    mutate(data)
    fake_llm.replies.append(json.dumps(data))

    outcome = scorer(fake_llm, max_attempts=1, num_retries=0).score(call, preset)

    assert not outcome.valid
    [attempt] = outcome.attempts
    assert not attempt.valid
    assert attempt.raw_output == json.dumps(data)
    # A rejected reply still cost tokens.
    assert (attempt.prompt_tokens, attempt.completion_tokens) == (1200, 300)
    for fragment in expected:
        assert fragment in attempt.error
    assert len(fake_llm.requests) == 1


def test_out_of_range_score_names_the_criterion_in_the_feedback(fake_llm, preset, call):
    """The schema error names the criterion's position; the model can locate it."""
    bad = reply({"closing": 7})
    fake_llm.replies += [json.dumps(bad), json.dumps(reply())]

    outcome = scorer(fake_llm).score(call, preset)

    assert outcome.valid and len(outcome.attempts) == 2
    position = preset.criterion_ids.index("closing")
    assert f"criteria/{position}/score" in outcome.attempts[0].error
    feedback = user_messages(fake_llm.requests[1])[-1]
    assert f"criteria/{position}/score: 7 is greater than the maximum of 5" in feedback


def test_rule_violation_for_out_of_range_score_names_the_criterion(preset, call):
    """Below the schema, the business rule names the criterion id (used by every scorer)."""
    from callqa.scoring.output import ScorerOutput
    from callqa.scoring.validation import rule_violations

    output = ScorerOutput.model_validate(reply({"closing": 7}))
    problems = rule_violations(output, preset, call.as_text())
    assert problems == ["closing: score 7 outside scale 1-5"]


@pytest.mark.parametrize(
    ("status", "body", "error_class"),
    [
        (
            500,
            {"error": {"message": "upstream model crashed", "type": "server_error"}},
            "InternalServerError",
        ),
        (
            401,
            {
                "error": {
                    "message": f"Incorrect API key provided: {API_KEY}. Check your key.",
                    "type": "invalid_request_error",
                    "code": "invalid_api_key",
                }
            },
            "AuthenticationError",
        ),
    ],
    ids=["http-500", "http-401"],
)
def test_provider_http_errors_are_recorded_not_raised(
    fake_llm, preset, call, status, body, error_class
):
    fake_llm.replies += [(status, body), (status, body)]

    outcome = scorer(fake_llm, num_retries=0).score(call, preset)

    assert not outcome.valid and outcome.output is None
    # Re-prompting cannot fix a provider error: one attempt, recorded, no exception.
    [attempt] = outcome.attempts
    assert attempt.attempt == 1 and not attempt.valid
    assert attempt.error.startswith(f"provider error: {error_class} (HTTP {status}): ")
    assert attempt.raw_output is None
    assert (attempt.prompt_tokens, attempt.completion_tokens, attempt.cost_usd) == (0, 0, 0.0)
    assert outcome.cost_usd == 0.0
    assert_key_not_leaked(outcome)
    if status == 401:
        # The provider echoed the key; it is redacted, the rest of the message is kept.
        assert "Incorrect API key provided: ***. Check your key." in attempt.error
    # num_retries=0: no hidden transport retries (litellm's are off), one request.
    assert len(fake_llm.requests) == 1


def test_server_error_is_retried_then_the_reply_is_used(fake_llm, preset, call):
    fake_llm.replies += [Reply.error(500, "upstream model crashed"), json.dumps(reply())]

    outcome = scorer(fake_llm).score(call, preset)

    assert outcome.valid
    [attempt] = outcome.attempts  # the transport retry is inside the one attempt
    assert attempt.valid and attempt.error is None
    assert len(fake_llm.requests) == 2
    assert fake_llm.requests[1] == fake_llm.requests[0]  # the same request, sent again


def test_rate_limit_waits_for_retry_after(fake_llm, preset, call):
    fake_llm.replies += [
        Reply.error(429, "Rate limit reached for requests", headers={"Retry-After": "1"}),
        json.dumps(reply()),
    ]

    outcome = scorer(fake_llm).score(call, preset)

    assert outcome.valid and len(outcome.attempts) == 1
    assert len(fake_llm.requests) == 2
    # It waited as long as the provider asked, not the (here 0.02 s) backoff.
    assert fake_llm.times[1] - fake_llm.times[0] >= 0.95


def test_retry_after_beyond_the_cap_is_not_waited_for(fake_llm, preset, call):
    fake_llm.replies += [
        Reply.error(429, "Daily quota exceeded", headers={"Retry-After": "3600"}),
        json.dumps(reply()),
    ]

    outcome = scorer(fake_llm).score(call, preset)

    assert not outcome.valid and len(fake_llm.requests) == 1
    [attempt] = outcome.attempts
    assert attempt.error.startswith(
        "provider error: RateLimitError (HTTP 429, provider asks to retry after 3600 s): "
    )
    assert "Daily quota exceeded" in attempt.error
    assert attempt.latency_ms < 5000


def test_authentication_error_is_not_retried(fake_llm, preset, call):
    body = {
        "error": {
            "message": f"Incorrect API key provided: {API_KEY}.",
            "type": "invalid_request_error",
            "code": "invalid_api_key",
        }
    }
    fake_llm.replies += [(401, body)] * 3 + [json.dumps(reply())]

    outcome = scorer(fake_llm).score(call, preset)  # default retries and attempts

    assert not outcome.valid
    [attempt] = outcome.attempts
    assert attempt.error.startswith("provider error: AuthenticationError (HTTP 401): ")
    assert "Incorrect API key provided: ***." in attempt.error
    assert outcome.last_error == attempt.error
    assert len(fake_llm.requests) == 1
    assert_key_not_leaked(outcome)


def test_server_errors_give_up_after_the_retries(fake_llm, preset, call):
    fake_llm.replies += [Reply.error(503, "overloaded, try later")] * 2 + [json.dumps(reply())]

    outcome = scorer(fake_llm, num_retries=1).score(call, preset)

    assert not outcome.valid
    [attempt] = outcome.attempts
    assert attempt.error.startswith("provider error: ServiceUnavailableError (HTTP 503, 2 tries): ")
    assert "overloaded, try later" in attempt.error
    assert len(fake_llm.requests) == 2
    assert_key_not_leaked(outcome)


def test_provider_timeout_is_recorded_as_a_timeout(fake_llm, preset, call):
    fake_llm.replies.append(Reply(content=json.dumps(reply()), delay_s=5))

    outcome = scorer(fake_llm, timeout_s=0.5, num_retries=0).score(call, preset)

    assert not outcome.valid
    [attempt] = outcome.attempts
    assert not attempt.valid
    assert attempt.error.startswith("provider error: Timeout (no reply within 0.5 s): ")
    assert "timed out" in attempt.error.lower()
    assert attempt.raw_output is None
    assert 400 <= attempt.latency_ms < 3000
    assert len(fake_llm.requests) == 1
    assert_key_not_leaked(outcome)


def test_timeout_is_retried(fake_llm, preset, call):
    fake_llm.replies += [Reply(content=json.dumps(reply()), delay_s=5), json.dumps(reply())]

    outcome = scorer(fake_llm, timeout_s=0.5, num_retries=1).score(call, preset)

    assert outcome.valid and len(outcome.attempts) == 1
    assert len(fake_llm.requests) == 2


def test_json_object_response_format(fake_llm, preset, call):
    fake_llm.replies.append(json.dumps(reply()))

    outcome = scorer(fake_llm, response_format="json_object").score(call, preset)

    assert outcome.valid
    assert fake_llm.requests[0]["response_format"] == {"type": "json_object"}


def test_json_object_reply_is_still_validated_against_the_schema(fake_llm, preset, call):
    """Without provider-side enforcement the same validation applies."""
    fake_llm.replies += [json.dumps(reply(total=88)), json.dumps(reply())]

    outcome = scorer(fake_llm, response_format="json_object").score(call, preset)

    assert outcome.valid and len(outcome.attempts) == 2
    assert "Additional properties" in outcome.attempts[0].error
    assert all(r["response_format"] == {"type": "json_object"} for r in fake_llm.requests)


def test_record_total_is_computed_by_code(fake_llm, preset, call):
    scores = {
        "greeting": 5,
        "needs_discovery": 2,
        "presentation": 4,
        "objection_handling": 3,
        "closing": 1,
        "tone": 4,
    }
    fake_llm.replies.append(json.dumps(reply(scores)))
    outcome = scorer(fake_llm).score(call, preset, category="sales")
    assert outcome.valid

    probe = AudioProbe(
        sha256="ab" * 32,
        size_bytes=960_044,
        codec="pcm_s16le",
        container="wav",
        channels=2,
        sample_rate=8000,
        duration_s=30.0,
    )
    record = build_record(
        tenant="acme",
        external_id="call-001",
        probe=probe,
        diarized=call,
        outcome=outcome,
        preset=preset,
        category="sales",
        operator="dana",
    )

    expected_total = weighted_total(scores, preset)
    assert record.scores.total == expected_total
    # Hand-computed: weights 1,2,2,2,2,1 (sum 10) over (s-1)/4.
    by_hand = 100 * (1 * 4 + 2 * 1 + 2 * 3 + 2 * 2 + 2 * 0 + 1 * 3) / 4 / 10
    assert record.scores.total == pytest.approx(by_hand, abs=0.05)
    assert {c.id: c.score for c in record.scores.criteria} == scores
    assert [c.id for c in record.scores.criteria] == preset.criterion_ids
    assert sum(c.weight for c in record.scores.criteria) == pytest.approx(1.0, abs=1e-3)
    assert record.scoring.scorer == "llm"
    assert record.scoring.model == MODEL
    assert record.scoring.prompt_version == preset.prompt_version
    assert record.scoring.attempts == 1 and record.scoring.valid
    assert (
        record.scoring.tokens.prompt,
        record.scoring.tokens.completion,
        record.scoring.tokens.total,
    ) == (1200, 300, 1500)
    assert record.scoring.cost_usd == outcome.cost_usd > 0
    assert record.summary == "A friendly, well-structured sales call."
    assert record.patterns[0].quote == "feels too expensive"
    assert record.call.tenant == "acme" and record.call.external_id == "call-001"
