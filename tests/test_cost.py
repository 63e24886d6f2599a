"""Cost of completions and transcriptions: price map, configured prices, or unknown."""

from __future__ import annotations

import logging

import pytest

import callqa.scoring.cost
from callqa.config.models import Price
from callqa.scoring.cost import completion_cost, configured_price, speech_cost


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch):
    monkeypatch.setattr(callqa.scoring.cost, "_warned", set())


def response(model: str, prompt_tokens: int = 1200, completion_tokens: int = 300):
    """A chat completion as litellm returns it (its own response type)."""
    from litellm import ModelResponse

    return ModelResponse(
        model=model,
        choices=[
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "{}"}}
        ],
        usage={
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    )


def test_model_in_the_price_map_is_priced_from_it():
    import litellm

    price = litellm.model_cost["gpt-4o-mini"]
    expected = 1200 * price["input_cost_per_token"] + 300 * price["output_cost_per_token"]

    usd, known = completion_cost(response("gpt-4o-mini"), "openai/gpt-4o-mini", {})

    assert known and usd == pytest.approx(expected, rel=1e-9) and usd > 0


def test_the_model_asked_for_is_priced_not_the_name_in_the_reply():
    """A proxy answering under an alias still costs what the requested model costs."""
    usd, known = completion_cost(response("my-alias"), "openai/gpt-4o-mini", {})
    assert known and usd == completion_cost(response("gpt-4o-mini"), "openai/gpt-4o-mini")[0]


def test_configured_price_covers_a_model_missing_from_the_map():
    prices = {"openrouter/acme/coder-7b": Price(input_per_mtok=0.2, output_per_mtok=0.8)}

    usd, known = completion_cost(response("acme/coder-7b"), "openrouter/acme/coder-7b", prices)

    assert known
    assert usd == pytest.approx((1200 * 0.2 + 300 * 0.8) / 1e6)  # 0.00048


def test_configured_price_may_name_the_model_without_its_provider():
    prices = {"acme/coder-7b": Price(input_per_mtok=1, output_per_mtok=2)}
    assert configured_price("openrouter/acme/coder-7b", prices) == prices["acme/coder-7b"]
    usd, known = completion_cost(response("x", 1_000_000, 0), "openrouter/acme/coder-7b", prices)
    assert (usd, known) == (1.0, True)


def test_a_zero_configured_price_is_a_known_zero():
    prices = {"openai/local-llama": Price(input_per_mtok=0, output_per_mtok=0)}
    assert completion_cost(response("local-llama"), "openai/local-llama", prices) == (0.0, True)


def test_unpriced_model_is_unknown_with_one_warning_per_model(caplog):
    with caplog.at_level(logging.WARNING, logger="callqa.scoring.cost"):
        results = [completion_cost(response("acme-7b"), "openai/acme-7b", {}) for _ in range(3)]
        other = completion_cost(response("acme-13b"), "openai/acme-13b", None)

    assert results == [(0.0, False)] * 3 and other == (0.0, False)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert "'openai/acme-7b'" in messages[0] and "'openai/acme-13b'" in messages[1]


def test_a_response_without_usage_never_raises():
    prices = {"openai/acme-7b": Price(input_per_mtok=1, output_per_mtok=1)}
    assert completion_cost(object(), "openai/acme-7b", prices) == (0.0, True)
    assert completion_cost(object(), "openai/acme-7b", {}) == (0.0, False)


def test_local_whisper_costs_nothing_and_that_is_known():
    assert speech_cost("whisper", "tiny.en", 600.0) == (0.0, True)


def test_openai_speech_is_priced_per_second_from_the_map():
    import litellm

    per_second = litellm.model_cost["whisper-1"]["input_cost_per_second"]
    usd, known = speech_cost("openai", "whisper-1", 90.0)
    assert known and usd == pytest.approx(90 * per_second) and usd > 0
    assert speech_cost("openai", "openai/whisper-1", 90.0) == (usd, True)


def test_per_minute_prices_are_used_too(monkeypatch):
    import litellm

    entry = {"mode": "audio_transcription", "input_cost_per_minute": 0.006}
    monkeypatch.setitem(litellm.model_cost, "acme-stt", entry)
    usd, known = speech_cost("openai", "acme-stt", 90.0)
    assert known and usd == pytest.approx(0.009)


@pytest.mark.parametrize(
    ("provider", "model"),
    [
        ("openai", "Systran/faster-whisper-small"),  # a self-hosted endpoint's model
        ("openai", "gpt-4o-transcribe"),  # priced per audio token: not from the duration
        ("deepgram", "nova-2"),
    ],
)
def test_unpriced_speech_is_unknown(provider, model, caplog):
    with caplog.at_level(logging.WARNING, logger="callqa.scoring.cost"):
        assert speech_cost(provider, model, 60.0) == (0.0, False)
        assert speech_cost(provider, model, 60.0) == (0.0, False)
    assert len(caplog.records) == 1 and model in caplog.records[0].getMessage()
