"""The result of scoring one call: the accepted output (if any) and every attempt."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from callqa.scoring.output import ScorerOutput


@dataclass
class Attempt:
    attempt: int
    scorer: str
    model: str | None
    prompt_version: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0
    cost_usd: float = 0.0
    # False when the model has no known price: its cost_usd is then 0 and says nothing.
    cost_known: bool = True
    raw_output: str | None = None
    valid: bool = False
    error: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class ScoringOutcome:
    scorer: str
    model: str | None
    prompt_version: str
    output: ScorerOutput | None
    attempts: list[Attempt] = field(default_factory=list)
    note: str = ""
    variant: str = "control"

    @property
    def valid(self) -> bool:
        return self.output is not None

    @property
    def prompt_tokens(self) -> int:
        return sum(a.prompt_tokens for a in self.attempts)

    @property
    def completion_tokens(self) -> int:
        return sum(a.completion_tokens for a in self.attempts)

    @property
    def cost_usd(self) -> float:
        return round(sum(a.cost_usd for a in self.attempts), 6)

    @property
    def cost_known(self) -> bool:
        return all(a.cost_known for a in self.attempts)

    @property
    def latency_ms(self) -> float:
        return round(sum(a.latency_ms for a in self.attempts), 1)

    @property
    def last_error(self) -> str | None:
        return self.attempts[-1].error if self.attempts else None
