"""Scoring with an LLM through litellm: one setting switches provider.

Every attempt is recorded. A reply that fails validation is retried once with the
validation errors fed back; the total is always computed by code afterwards.

Transport failures that may pass (HTTP 408/409/429/5xx, timeouts, lost connections) are
retried here, honouring the provider's Retry-After; other provider errors (401, 400, ...)
are not. A provider error that remains ends the scoring: it is recorded under its own
name and HTTP status, and Dagster retries the step later.
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import os
import random
import string
import time
from dataclasses import dataclass
from typing import Literal

from callqa.config.models import Preset
from callqa.scoring.outcome import Attempt, ScoringOutcome
from callqa.scoring.output import response_schema
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
SYSTEM_PROMPT = (
    "You evaluate recorded phone calls for quality assurance. You answer with one JSON "
    "object only, following the response schema exactly."
)


def _import_litellm():
    # Without this, importing litellm fetches the model price map over the network.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True
    return litellm


def render_prompt(preset: Preset, diarized: DiarizedTranscript, category: str | None) -> str:
    criteria = "\n".join(f"- {c.id} ({c.name}): {c.description}" for c in preset.criteria)
    return string.Template(preset.prompt_template).safe_substitute(
        criteria=criteria,
        scale_min=preset.scale.min,
        scale_max=preset.scale.max,
        transcript=diarized.as_text(),
        call_category=category or "sales",
    )


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


@dataclass
class LLMScorer:
    """Model, temperature, token limit and timeout come from the preset unless overridden."""

    model: str | None = None
    api_base: str | None = None
    api_key: str | None = None
    timeout_s: float | None = None
    # Transport retries per attempt (408/409/429/5xx, timeouts, lost connections), done
    # here rather than by litellm, which would also retry errors such as 401.
    num_retries: int = 2
    response_format: Literal["json_schema", "json_object"] = "json_schema"
    max_attempts: int = 2

    def _response_format(self, preset: Preset) -> dict:
        if self.response_format == "json_object":
            return {"type": "json_object"}
        return {
            "type": "json_schema",
            "json_schema": {
                "name": "call_scores",
                "schema": response_schema(preset),
                "strict": True,
            },
        }

    def _complete(self, litellm, model: str, messages: list[dict], preset: Preset):
        """One chat completion, with transport retries. Raises `ProviderError`."""
        timeout_s = self.timeout_s or preset.llm.timeout_s
        tries = 0
        while True:
            tries += 1
            try:
                return litellm.completion(
                    model=model,
                    messages=messages,
                    response_format=self._response_format(preset),
                    temperature=preset.llm.temperature,
                    max_tokens=preset.llm.max_tokens,
                    timeout=timeout_s,
                    # 0 turns off litellm's own retries (its SDK client's and its
                    # tenacity wrapper's); `_retry_delay_s` decides instead.
                    num_retries=0,
                    api_base=self.api_base,
                    api_key=self.api_key,
                )
            except Exception as exc:
                delay = self._retry_delay_s(litellm, exc, tries)
                if delay is None:
                    raise ProviderError(_describe(litellm, exc, timeout_s, tries)) from exc
                log.warning(
                    "%s; retrying in %.1f s (retry %d of %d)",
                    _redact(_describe(litellm, exc, timeout_s, tries), [self.api_key])[:300],
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
        transcript_text = diarized.spoken_text()
        messages = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": render_prompt(preset, diarized, category)},
        ]
        model = self.model or preset.llm.model
        outcome = ScoringOutcome(
            scorer=SCORER_NAME, model=model, prompt_version=preset.prompt_version, output=None
        )
        for number in range(1, self.max_attempts + 1):
            attempt = Attempt(
                attempt=number,
                scorer=SCORER_NAME,
                model=model,
                prompt_version=preset.prompt_version,
            )
            outcome.attempts.append(attempt)
            started = time.perf_counter()
            try:
                response = self._complete(litellm, model, messages, preset)
            except ProviderError as exc:  # recorded; re-prompting cannot fix it, Dagster retries
                attempt.latency_ms = round((time.perf_counter() - started) * 1000, 1)
                attempt.error = _redact(str(exc), [self.api_key])[:2000]
                return outcome
            attempt.latency_ms = round((time.perf_counter() - started) * 1000, 1)
            usage = getattr(response, "usage", None)
            attempt.prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
            attempt.completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
            try:
                attempt.cost_usd = float(litellm.completion_cost(completion_response=response))
            except Exception:  # a model missing from the bundled price map costs "unknown"
                attempt.cost_usd = 0.0
            raw = response.choices[0].message.content or ""
            attempt.raw_output = raw
            output, errors = parse_output(raw, preset, transcript_text)
            if output is not None:
                attempt.valid = True
                outcome.output = output
                return outcome
            attempt.error = "; ".join(errors)[:2000]
            messages += [
                {"role": "assistant", "content": raw},
                {
                    "role": "user",
                    "content": (
                        "Your reply was rejected for these reasons:\n- "
                        + "\n- ".join(errors)
                        + "\nReply again with the corrected JSON object only."
                    ),
                },
            ]
        return outcome
