"""Scoring with an LLM through litellm: one setting switches provider.

Every attempt is recorded. A reply that fails validation is retried once with the
validation errors fed back; the total is always computed by code afterwards.
"""

from __future__ import annotations

import os
import string
import time
from dataclasses import dataclass
from typing import Literal

from callqa.config.models import Preset
from callqa.diarization import DiarizedTranscript
from callqa.scoring.outcome import Attempt, ScoringOutcome
from callqa.scoring.output import response_schema
from callqa.scoring.validation import parse_output

SCORER_NAME = "llm"
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


@dataclass
class LLMScorer:
    """Model, temperature, token limit and timeout come from the preset unless overridden."""

    model: str | None = None
    api_base: str | None = None
    api_key: str | None = None
    timeout_s: float | None = None
    # Transport retries inside litellm (rate limits, 5xx); validation retries are ours.
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

    def score(
        self, diarized: DiarizedTranscript, preset: Preset, category: str | None = None
    ) -> ScoringOutcome:
        litellm = _import_litellm()
        transcript_text = diarized.as_text()
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
                response = litellm.completion(
                    model=model,
                    messages=messages,
                    response_format=self._response_format(preset),
                    temperature=preset.llm.temperature,
                    max_tokens=preset.llm.max_tokens,
                    timeout=self.timeout_s or preset.llm.timeout_s,
                    num_retries=self.num_retries,
                    api_base=self.api_base,
                    api_key=self.api_key,
                )
            except Exception as exc:  # provider errors are recorded, then retried by Dagster
                attempt.latency_ms = round((time.perf_counter() - started) * 1000, 1)
                attempt.error = _redact(
                    f"provider error {exc.__class__.__name__}: {exc}", [self.api_key]
                )[:2000]
                continue
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
