"""Scoring with an LLM through litellm: one setting switches provider.

Every attempt is recorded with its model. A reply that fails validation (schema, then
business rules) is retried with the errors named; when a model's attempts are spent
(a provider error left after transport retries, or `max_attempts` invalid replies) the
preset's fallback models are tried in turn. The total is always computed by code.

Replies longer than the preset's `max_reply_chars` are rejected unparsed and stored
truncated; every stored reply and error passes through the caller's `redact`.

Transport failures that may pass (HTTP 408/409/429/5xx, timeouts, lost connections) are
retried here, honouring the provider's Retry-After; other provider errors (401, 400, ...)
are not. A provider error that remains ends that model's turn: it is recorded under its
own name and HTTP status, and the next model is tried. When no model gives a valid reply
the outcome is invalid, with every attempt's error, and Dagster retries the step later.
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from callqa.config.models import Preset
from callqa.scoring.cost import completion_cost
from callqa.scoring.outcome import Attempt, ScoringOutcome
from callqa.scoring.output import response_schema
from callqa.scoring.prompt import render_messages
from callqa.scoring.validation import parse_output
from callqa.speech.diarization import DiarizedTranscript

log = logging.getLogger(__name__)

SCORER_NAME = "llm"
# Waits between transport retries: Retry-After when the provider sends one (up to the
# cap: a longer wait gives up, Dagster retries later), else exponential backoff.
MAX_RETRY_AFTER_S = 60.0
BACKOFF_S = 0.5
MAX_BACKOFF_S = 8.0
RETRYABLE_STATUS = frozenset({408, 409, 429})
# A rejected oversized reply keeps this much (redacted) text, plus a note of its size.
STORED_PREVIEW_CHARS = 2000
MAX_ERROR_CHARS = 2000
# Errors named in one corrective message at most (the rest are counted).
MAX_FEEDBACK_ERRORS = 30

ResponseFormat = Literal["auto", "json_schema", "json_object", "none"]


def _import_litellm():
    # Without this, importing litellm fetches the model price map over the network.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True
    # litellm's debug log carries whole prompts (the transcript) and whole replies; under
    # a root logger at DEBUG they would land in the run's logs. Quiet unless asked for.
    quiet = logging.getLogger("LiteLLM")
    if quiet.level == logging.NOTSET and "LITELLM_LOG" not in os.environ:
        quiet.setLevel(logging.WARNING)
    return litellm


def _redact(text: str, secrets: list[str | None]) -> str:
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def _status(exc: Exception) -> int | None:
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


def _is_retryable(litellm, exc: Exception) -> bool:
    if isinstance(exc, litellm.APIConnectionError):  # timeouts and lost connections
        return True
    status = _status(exc)
    return status is not None and (status in RETRYABLE_STATUS or status >= 500)


def _retry_after_s(exc: Exception) -> float | None:
    """The provider's Retry-After (retry-after-ms, or retry-after in seconds or as a date)."""
    headers = getattr(exc, "litellm_response_headers", None)
    if headers is None:
        headers = getattr(getattr(exc, "response", None), "headers", None)
    try:
        headers = {str(k).lower(): str(v).strip() for k, v in (headers or {}).items()}
    except (AttributeError, TypeError):
        return None
    if "retry-after-ms" in headers:
        with contextlib.suppress(ValueError):
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
    value = headers.get("retry-after")
    if not value:
        return None
    with contextlib.suppress(ValueError):
        return max(0.0, float(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _describe(litellm, exc: Exception, timeout_s: float | None, tries: int) -> str:
    """`provider error: AuthenticationError (HTTP 401): <provider's message>`."""
    name = exc.__class__.__name__
    details = []
    if isinstance(exc, litellm.Timeout):
        details.append(f"no reply within {timeout_s:g} s" if timeout_s else "no reply in time")
    elif _status(exc) is not None:
        details.append(f"HTTP {_status(exc)}")
    retry_after = _retry_after_s(exc)
    if retry_after is not None and retry_after > MAX_RETRY_AFTER_S:
        details.append(f"provider asks to retry after {retry_after:.0f} s")
    if tries > 1:
        details.append(f"{tries} tries")
    message = str(exc).strip()
    # litellm prefixes its messages with the class name, sometimes twice.
    for prefix in (f"litellm.{name}:", f"{name}:"):
        message = message.removeprefix(prefix).strip()
    label = f"{name} ({', '.join(details)})" if details else name
    return f"provider error: {label}: {message or repr(exc)}"


class ProviderError(Exception):
    """The provider did not answer with a completion (after any transport retries)."""


def _too_large(raw: str, limit: int) -> str | None:
    if len(raw) > limit:
        return f"reply too large: {len(raw)} characters, limit {limit}"
    return None


def _feedback(errors: list[str]) -> str:
    named = errors[:MAX_FEEDBACK_ERRORS]
    more = len(errors) - len(named)
    return (
        "Your reply was rejected for these reasons:\n- "
        + "\n- ".join(named)
        + (f"\n(and {more} more)" if more else "")
        + "\nReply again with the corrected JSON object only."
    )


def _supports(litellm, model: str, check) -> bool:
    try:
        return bool(check(litellm, model))
    except Exception:  # an unknown model or provider: not supported, as far as we know
        return False


def _has_schema_output(litellm, model: str) -> bool:
    return litellm.supports_response_schema(model=model)


def _has_json_mode(litellm, model: str) -> bool:
    bare, provider, *_ = litellm.get_llm_provider(model)
    params = litellm.get_supported_openai_params(model=bare, custom_llm_provider=provider)
    return "response_format" in (params or [])


@dataclass
class LLMScorer:
    """Model, temperature, token limit and timeout come from the preset unless overridden.

    `response_format`: `auto` sends a strict JSON schema to models litellm knows support
    it, else JSON mode where the provider has it, else nothing (the reply is then parsed
    tolerantly); `json_schema`, `json_object` and `none` force one. `redact` masks PII in
    every stored reply and error (the caller's function; the transcript it is given is
    expected to be masked already)."""

    model: str | None = None
    api_base: str | None = None
    api_key: str | None = None
    timeout_s: float | None = None
    # Transport retries per attempt (408/409/429/5xx, timeouts, lost connections), done
    # here rather than by litellm, which would also retry errors such as 401.
    num_retries: int = 2
    response_format: ResponseFormat = "auto"
    # Replies per model (the first and its corrective retries) before falling back.
    max_attempts: int = 2
    redact: Callable[[str], str] | None = None

    def models(self, preset: Preset) -> list[str]:
        """The model, then the preset's fallbacks (each once)."""
        chain = [self.model or preset.llm.model, *preset.llm.fallback_models]
        return list(dict.fromkeys(chain))

    def format_for(self, model: str) -> str:
        """The response format `model` is asked for: json_schema, json_object or none."""
        if self.response_format != "auto":
            return self.response_format
        litellm = _import_litellm()
        if _supports(litellm, model, _has_schema_output):
            return "json_schema"
        if _supports(litellm, model, _has_json_mode):
            return "json_object"
        return "none"

    def _stored(self, text: str, limit: int | None = None) -> str:
        """Text as it may be stored: the API key and PII masked, optionally capped."""
        text = _redact(text, [self.api_key])
        if self.redact is not None:
            text = self.redact(text)
        return text if limit is None else text[:limit]

    def _preview(self, raw: str) -> str:
        # Mask a little more than is kept, so PII cut at the edge is masked whole first.
        head = self._stored(raw[: STORED_PREVIEW_CHARS + 256], STORED_PREVIEW_CHARS)
        return f"{head}\n[... truncated: the reply was {len(raw)} characters]"

    def _request_format(self, fmt: str, preset: Preset) -> dict | None:
        if fmt == "json_object":
            return {"type": "json_object"}
        if fmt == "json_schema":
            return {
                "type": "json_schema",
                "json_schema": {
                    "name": "call_scores",
                    "schema": response_schema(preset),
                    "strict": True,
                },
            }
        return None

    def _complete(self, litellm, model: str, messages: list[dict], preset: Preset, fmt: str):
        """One chat completion, with transport retries. Raises `ProviderError`."""
        timeout_s = self.timeout_s or preset.llm.timeout_s
        extra = {}
        response_format = self._request_format(fmt, preset)
        if response_format is not None:
            extra["response_format"] = response_format
        tries = 0
        while True:
            tries += 1
            try:
                return litellm.completion(
                    model=model,
                    messages=messages,
                    temperature=preset.llm.temperature,
                    max_tokens=preset.llm.max_tokens,
                    timeout=timeout_s,
                    # 0 turns off litellm's own retries (its SDK client's and its
                    # tenacity wrapper's); `_retry_delay_s` decides instead.
                    num_retries=0,
                    api_base=self.api_base,
                    api_key=self.api_key,
                    **extra,
                )
            except Exception as exc:
                delay = self._retry_delay_s(litellm, exc, tries)
                if delay is None:
                    raise ProviderError(_describe(litellm, exc, timeout_s, tries)) from exc
                log.warning(
                    "%s: %s; retrying in %.1f s (retry %d of %d)",
                    model,
                    self._stored(_describe(litellm, exc, timeout_s, tries), 300),
                    delay,
                    tries,
                    self.num_retries,
                )
                time.sleep(delay)

    def _retry_delay_s(self, litellm, exc: Exception, tries: int) -> float | None:
        """Seconds to wait before trying again, or None to give up."""
        if tries > self.num_retries or not _is_retryable(litellm, exc):
            return None
        retry_after = _retry_after_s(exc)
        if retry_after is not None:
            return retry_after if retry_after <= MAX_RETRY_AFTER_S else None
        backoff = min(MAX_BACKOFF_S, BACKOFF_S * 2 ** (tries - 1))
        return backoff * random.uniform(1.0, 1.25)  # jitter spreads concurrent retries

    def score(
        self, diarized: DiarizedTranscript, preset: Preset, category: str | None = None
    ) -> ScoringOutcome:
        litellm = _import_litellm()
        models = self.models(preset)
        outcome = ScoringOutcome(
            scorer=SCORER_NAME, model=models[0], prompt_version=preset.prompt_version, output=None
        )
        for model in models:
            if self._score_with(litellm, model, diarized, preset, category, outcome):
                outcome.model = model
                failed = len(outcome.attempts) - 1
                if model != models[0]:
                    outcome.note = (
                        f"scored by fallback model {model} after {failed} failed attempts"
                    )
                return outcome
            if model != models[-1]:
                log.warning(
                    "model %s gave no valid scores (%s); falling back to the next model",
                    model,
                    (outcome.last_error or "")[:300],
                )
        return outcome

    def _score_with(
        self,
        litellm,
        model: str,
        diarized: DiarizedTranscript,
        preset: Preset,
        category: str | None,
        outcome: ScoringOutcome,
    ) -> bool:
        """Up to `max_attempts` replies from `model`, recorded in `outcome`; True once
        one is valid (then `outcome.output` is set)."""
        fmt = self.format_for(model)
        prompt = render_messages(preset, diarized, category, schema_in_prompt=fmt != "json_schema")
        messages = prompt
        for _ in range(self.max_attempts):
            attempt = Attempt(
                attempt=len(outcome.attempts) + 1,
                scorer=SCORER_NAME,
                model=model,
                prompt_version=preset.prompt_version,
            )
            outcome.attempts.append(attempt)
            started = time.perf_counter()
            try:
                response = self._complete(litellm, model, messages, preset, fmt)
            except ProviderError as exc:  # re-prompting cannot fix it: next model
                attempt.latency_ms = round((time.perf_counter() - started) * 1000, 1)
                attempt.error = self._stored(str(exc), MAX_ERROR_CHARS)
                return False
            attempt.latency_ms = round((time.perf_counter() - started) * 1000, 1)
            usage = getattr(response, "usage", None)
            attempt.prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
            attempt.completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
            attempt.cost_usd, attempt.cost_known = completion_cost(
                response, model, preset.llm.prices
            )
            raw = response.choices[0].message.content or ""
            too_large = _too_large(raw, preset.llm.max_reply_chars)
            if too_large:
                # Never parsed, never stored or sent back whole.
                attempt.raw_output = self._preview(raw)
                attempt.error = too_large
                shown, errors = [], [f"{too_large}; keep rationales and the summary short"]
            else:
                attempt.raw_output = self._stored(raw)
                output, errors = parse_output(raw, preset, diarized.segments)
                if output is not None:
                    attempt.valid = True
                    outcome.output = output
                    return True
                attempt.error = self._stored("; ".join(errors), MAX_ERROR_CHARS)
                shown = [{"role": "assistant", "content": raw}]
            # Only the latest rejected reply goes back, so retries do not grow the prompt.
            messages = [*prompt, *shown, {"role": "user", "content": _feedback(errors)}]
        return False
