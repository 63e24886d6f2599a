"""What a completion or a transcription cost, in USD, and whether that figure is known.

Prices come from litellm's bundled price map (offline: LITELLM_LOCAL_MODEL_COST_MAP), or
for models missing from it (OpenRouter names, local models) from the preset's
`llm.prices`. A model priced nowhere costs (0.0, False): recorded as unknown, warned about
once per model and process, never an exception and never a silent zero.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from typing import Any

from callqa.config.models import Price

log = logging.getLogger(__name__)

_warned: set[str] = set()
_warned_lock = threading.Lock()


def _litellm():
    # Without this, importing litellm fetches the model price map over the network.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    return litellm


def _warn_once(key: str, message: str, *args: Any) -> None:
    with _warned_lock:
        if key in _warned:
            return
        _warned.add(key)
    log.warning(message, *args)


def _tokens(response: Any) -> tuple[int, int]:
    usage = getattr(response, "usage", None)
    if usage is None and isinstance(response, Mapping):
        usage = response.get("usage")
    if isinstance(usage, Mapping):
        return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    return (
        int(getattr(usage, "prompt_tokens", 0) or 0),
        int(getattr(usage, "completion_tokens", 0) or 0),
    )


def configured_price(model: str, prices: Mapping[str, Price]) -> Price | None:
    """The configured price of `model`, by its full litellm name or without the provider
    prefix (`openrouter/meta-llama/x` is also found as `meta-llama/x`)."""
    if model in prices:
        return prices[model]
    _, _, bare = model.partition("/")
    return prices.get(bare) if bare else None


def completion_cost(
    response: Any, model: str, prices: Mapping[str, Price] | None = None
) -> tuple[float, bool]:
    """(usd, known) of one chat completion `response` from `model`."""
    litellm = _litellm()
    try:
        # The model asked for, not the one the reply names: a proxy may answer with an
        # alias the price map does not know.
        return float(litellm.completion_cost(completion_response=response, model=model)), True
    except Exception:  # litellm raises plain Exception for a model it has no price for
        pass
    price = configured_price(model, prices or {})
    if price is not None:
        prompt_tokens, completion_tokens = _tokens(response)
        usd = (
            prompt_tokens * price.input_per_mtok + completion_tokens * price.output_per_mtok
        ) / 1_000_000
        return round(usd, 8), True
    _warn_once(
        f"llm:{model}",
        "no price for model %r (not in litellm's price map nor in the preset's llm.prices); "
        "its cost is recorded as unknown",
        model,
    )
    return 0.0, False


def speech_cost(provider: str, model: str, duration_s: float) -> tuple[float, bool]:
    """(usd, known) of transcribing `duration_s` seconds of audio.

    `whisper` runs on this machine (no per-call charge); `openai` is priced per second or
    minute of audio from litellm's price map (e.g. whisper-1). Token-priced transcription
    models cannot be priced from the duration alone and are unknown."""
    if provider == "whisper":
        return 0.0, True
    if provider == "openai":
        model_cost = _litellm().model_cost
        _, _, bare = model.partition("/")
        entry = model_cost.get(model) or (model_cost.get(bare) if bare else None) or {}
        seconds = max(0.0, float(duration_s))
        if entry.get("input_cost_per_second") is not None:
            return round(seconds * float(entry["input_cost_per_second"]), 8), True
        if entry.get("input_cost_per_minute") is not None:
            return round(seconds / 60 * float(entry["input_cost_per_minute"]), 8), True
    _warn_once(
        f"speech:{provider}:{model}",
        "no per-second price for speech model %r (provider %r); its cost is recorded as unknown",
        model,
        provider,
    )
    return 0.0, False
