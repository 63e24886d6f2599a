"""Which anonymous speaker of a mono call is the operator, and how sure that is.

A speaker segmenter only says "speaker 0" and "speaker 1"; what they say tells the roles.
Each cue adds to a speaker's score in log-odds units (a weight of 2 makes the speaker
about e^2 = 7 times as likely to be the operator); the confidence is the softmax of the
scores, i.e. the probability of the chosen speaker under this simple model. Strong cues:
greeting with the company name, an operator introducing themselves by a known name,
service phrases ("how can I help"); weaker ones: asking more questions, speaking first,
speaking more. Customer phrases ("I'm calling about my bill") count against. With no cue
two speakers are 50/50, so the decision is flagged as low confidence.

With more than two speakers the operator is one of them and every other speaker is a
customer (a transfer or a third party on the line is still "not the operator" for QA).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, Field

from callqa.config.models import Role, RoleHints
from callqa.speech.words import Utterance

# The speaker's first utterances are their opening (greeting, company, name).
OPENING_UTTERANCES = 2
# A single speaker's decision is never above this: one voice in a two-party call means the
# segmenter probably merged both parties, so the roles of what was said are unsure.
LONE_SPEAKER_MAX_CONFIDENCE = 0.5

# Log-odds weight of each cue (per unit of its value).
WEIGHTS: dict[str, float] = {
    "company_greeting": 2.5,  # names the company in the opening
    "opening_phrase": 2.0,  # "thank you for calling", "how can I help" in the opening
    "operator_name": 2.5,  # introduces themselves with a known operator name
    "service_phrases": 1.0,  # per phrase, at most 2: "how can I help", "let me check"
    "customer_phrases": -1.0,  # per phrase, at most 2: "I'm calling about", "my bill"
    "questions": 1.5,  # share of the call's questions, minus an even share
    # The weak cues together stay below the default min_confidence 0.6 (sigmoid(0.4)):
    # on their own they must not make a decision look sure.
    "first_speaker": 0.2,  # inbound lines: the operator answers
    "talk_share": 0.4,  # share of the words, minus an even share
}
# Cues that describe one speaker alone (the rest compare speakers).
ABSOLUTE_CUES = (
    "company_greeting",
    "opening_phrase",
    "operator_name",
    "service_phrases",
    "customer_phrases",
)
PHRASE_CAP = 2

OPENING_PHRASES = (
    "thank you for calling",
    "thanks for calling",
    "thank you for contacting",
    "welcome to",
    "you've reached",
    "you have reached",
    # Answering with an offer of help is the operator's opening even without a company.
    "how can i help",
    "how may i help",
    "how can i assist",
    "how may i assist",
    "what can i do for you",
)
SERVICE_PHRASES = (
    "how can i help",
    "how may i help",
    "how can i assist",
    "how may i assist",
    "what can i do for you",
    "is there anything else",
    "anything else i can help",
    "let me check",
    "let me see what i can do",
    "one moment please",
    "bear with me",
    "can i have your",
    "could i have your",
    "may i have your",
    "can you confirm",
    "could you confirm",
    "thank you for your patience",
    "thanks for your patience",
    "thank you for holding",
    "thank you for calling",  # also the operator's goodbye
    "thanks for calling",
)
CUSTOMER_PHRASES = (
    "i'm calling about",
    "i am calling about",
    "i'm calling because",
    "i am calling because",
    "i'm calling to",
    "i am calling to",
    "i'd like to cancel",
    "i want to cancel",
    "my bill",
    "my account",
    "my order",
    "my contract",
    "i have a problem",
    "i have a question",
)
# A caller checking who answered names the company too ("is this Northwind?"): that
# mention is a customer cue, not a greeting.
COMPANY_CHECKS = (
    "is this {}",
    "is that {}",
    "is it {}",
    "am i speaking to {}",
    "am i speaking with {}",
    "am i through to {}",
    "have i reached {}",
)
# "this is {name}", "my name is {name}", "{name} speaking", ...
SELF_INTRODUCTIONS = (
    "this is {}",
    "my name is {}",
    "i'm {}",
    "i am {}",
    "{} speaking",
    "{} here",
    "speaking with {}",
)
# A tenant name's first word also counts as the company ("Northwind" for "Northwind
# Telecom"), unless it is short or an everyday word.
_COMMON_FIRST_WORDS = {"first", "great", "united", "general", "national", "global", "north"}


class RoleDecision(BaseModel):
    """Who the operator is among the anonymous speakers; every other speaker is a customer."""

    operator_speaker: int | None = Field(
        description="speaker id of the operator; null: none of the speakers is"
    )
    confidence: float = Field(ge=0, le=1, description="probability the choice is right, 0-1")
    low_confidence: bool = Field(description="confidence below the tenant's min_confidence")
    source: Literal["cues", "override"]
    evidence: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="cue -> speaker id -> value, and 'score' -> speaker id -> log-odds score",
    )

    def role_of(self, speaker: int) -> Role:
        return "operator" if speaker == self.operator_speaker else "customer"


def _normal(text: str) -> str:
    """Lower case, words separated by single spaces, apostrophes kept ("i'm")."""
    text = text.lower().replace("\u2019", "'")
    return " " + " ".join(re.findall(r"[\w']+", text)) + " "


def _count(text: str, phrases: Sequence[str]) -> int:
    return sum(text.count(_normal(p)) for p in phrases)


def company_names(tenant_name: str | None, hints: RoleHints) -> list[str]:
    """The names an operator greets with: the configured ones, the tenant's display name
    (without parenthesised notes) and its first word when that is distinctive."""
    names = list(hints.company_names)
    if tenant_name:
        base = re.sub(r"\([^)]*\)|<[^>]*>", " ", tenant_name).strip()
        if base:
            names.append(base)
            words = base.split()
            first = words[0].strip(",.")
            if len(words) > 1 and len(first) >= 5 and first.lower() not in _COMMON_FIRST_WORDS:
                names.append(first)
    return [n for n in dict.fromkeys(names) if _normal(n).strip()]


def _self_introductions(hints: RoleHints) -> list[str]:
    names = set()
    for name in hints.operator_names:
        names.add(name)
        names.add(name.split()[0])  # "this is Anna" for "Anna Smith"
    return [pattern.format(n) for n in sorted(names) for pattern in SELF_INTRODUCTIONS]


def _cues(
    utterances: list[Utterance], speakers: list[int], names: list[str], intros: list[str]
) -> dict[str, dict[int, float]]:
    by_speaker = {s: [u for u in utterances if u.speaker == s] for s in speakers}
    text = {s: "".join(_normal(u.text) for u in by_speaker[s]) for s in speakers}
    opening = {
        s: "".join(_normal(u.text) for u in by_speaker[s][:OPENING_UTTERANCES]) for s in speakers
    }
    checks = [pattern.format(n) for n in names for pattern in COMPANY_CHECKS]
    checked = {s: _count(opening[s], checks) for s in speakers}
    questions = {s: sum(u.text.count("?") for u in by_speaker[s]) for s in speakers}
    words = {s: sum(len(u.text.split()) for u in by_speaker[s]) for s in speakers}
    all_questions, all_words, even = sum(questions.values()), sum(words.values()), 1 / len(speakers)
    first = utterances[0].speaker if utterances else None
    return {
        "company_greeting": {s: float(_count(opening[s], names) > checked[s]) for s in speakers},
        "opening_phrase": {s: float(_count(opening[s], OPENING_PHRASES) > 0) for s in speakers},
        "operator_name": {s: float(_count(text[s], intros) > 0) for s in speakers},
        "service_phrases": {
            s: float(min(PHRASE_CAP, _count(text[s], SERVICE_PHRASES))) for s in speakers
        },
        "customer_phrases": {
            s: float(min(PHRASE_CAP, _count(text[s], CUSTOMER_PHRASES) + (checked[s] > 0)))
            for s in speakers
        },
        # Two questions at least, or one stray "?" would decide.
        "questions": {
            s: round(questions[s] / all_questions - even, 3) if all_questions >= 2 else 0.0
            for s in speakers
        },
        "first_speaker": {s: float(s == first) for s in speakers},
        "talk_share": {
            s: round(words[s] / all_words - even, 3) if all_words else 0.0 for s in speakers
        },
    }


def _evidence(cues: dict[str, dict[int, float]], scores: dict[int, float]):
    out = {cue: {str(s): v for s, v in values.items()} for cue, values in cues.items()}
    out["score"] = {str(s): round(v, 3) for s, v in scores.items()}
    return out


def _in_order(utterances: list[Utterance]) -> list[int]:
    """Speaker ids in the order they are first heard."""
    return list(dict.fromkeys(u.speaker for u in utterances))


def decide_roles(
    utterances: list[Utterance],
    hints: RoleHints | None = None,
    tenant_name: str | None = None,
) -> RoleDecision:
    """The operator among the speakers of `utterances` (from `assign_words`).

    `hints.operator_speaker` first / second overrides the cues (source "override"); the cue
    evidence is still returned for audit.
    """
    hints = hints or RoleHints()
    speakers = _in_order(utterances)
    if not speakers:
        return RoleDecision(
            operator_speaker=None, confidence=0.0, low_confidence=True, source="cues"
        )
    names = company_names(tenant_name, hints)
    cues = _cues(utterances, speakers, names, _self_introductions(hints))

    if hints.operator_speaker != "auto":
        position = 0 if hints.operator_speaker == "first" else 1
        # "second" on a one-speaker call: the one speaker is the customer.
        operator = speakers[position] if position < len(speakers) else None
        scores = {
            s: _score(cues, s, ABSOLUTE_CUES if len(speakers) == 1 else None) for s in speakers
        }
        return RoleDecision(
            operator_speaker=operator,
            confidence=1.0,
            low_confidence=False,
            source="override",
            evidence=_evidence(cues, scores),
        )

    if len(speakers) == 1:
        # Comparing cues (questions, first, talk share) mean nothing with one voice.
        only = speakers[0]
        score = _score(cues, only, ABSOLUTE_CUES)
        confidence = min(LONE_SPEAKER_MAX_CONFIDENCE, 1 / (1 + math.exp(-abs(score))))
        return RoleDecision(
            operator_speaker=only if score > 0 else None,
            confidence=round(confidence, 3),
            low_confidence=True,
            source="cues",
            evidence=_evidence(cues, {only: score}),
        )

    scores = {s: _score(cues, s) for s in speakers}
    top = max(scores.values())
    total = sum(math.exp(v - top) for v in scores.values())
    # Ties go to the speaker heard first (dict order), the usual inbound answer.
    operator = max(speakers, key=lambda s: (scores[s], -speakers.index(s)))
    confidence = round(math.exp(scores[operator] - top) / total, 3)
    return RoleDecision(
        operator_speaker=operator,
        confidence=confidence,
        low_confidence=confidence < hints.min_confidence,
        source="cues",
        evidence=_evidence(cues, scores),
    )


def _score(
    cues: dict[str, dict[int, float]], speaker: int, only: Sequence[str] | None = None
) -> float:
    return sum(
        WEIGHTS[cue] * values[speaker]
        for cue, values in cues.items()
        if only is None or cue in only
    )
