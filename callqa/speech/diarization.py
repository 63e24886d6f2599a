"""Speaker roles and conversation metrics.

Stereo recordings carry one party per channel (the usual telephony export), so roles
come from the tenant's channel map. Mono recordings go through a speaker segmenter
(offline voice embeddings, or pyannote) that says who spoke when; words are attached to
its turns and the operator is told from what each speaker says (callqa/speech/roles.py).
The old pause heuristic stays available as backend "pause".

`diarize()` is the one entry point (pipeline, `callqa analyze`, evaluation).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel, Field

from callqa.config.models import ChannelMap, Role, RoleHints
from callqa.errors import ConfigError
from callqa.speech.roles import RoleDecision, decide_roles
from callqa.speech.transcript import Segment, Transcript, Word, split_on_pauses
from callqa.speech.words import Utterance, assign_words

if TYPE_CHECKING:
    from callqa.speech.audio import DecodedAudio
    from callqa.speech.turns import SpeakerSegmenter

ROLES: tuple[Role, Role] = ("operator", "customer")
# A pause this long in a mono recording is taken as a change of speaker.
MONO_TURN_PAUSE_S = 0.7
# Segments of one channel closer than this are one utterance cut by the STT.
JOIN_GAP_S = 0.3
# An interruption: starting while the other party still talks for at least this long.
INTERRUPTION_MIN_OVERLAP_S = 0.3


class DiarizedSegment(BaseModel):
    start: float
    end: float
    speaker: Role
    text: str
    channel: int = 0
    # Mono diarization: the segmenter's anonymous speaker, and the words it was cut from.
    speaker_id: int | None = None
    words: list[Word] = Field(default_factory=list)


class VoiceTurn(BaseModel):
    """Who spoke when, as the speaker segmenter heard it, before words were attached: what
    diarization error rate is measured on."""

    start: float
    end: float
    speaker_id: int
    speaker: Role


class RoleMetrics(BaseModel):
    talk_time_s: float
    talk_share: float = Field(description="share of all talk time, 0-1")
    words: int
    words_per_minute: float
    interruptions: int = Field(description="times this role started talking over the other")


class ConversationMetrics(BaseModel):
    duration_s: float
    silence_ratio: float = Field(description="share of the call in which nobody speaks, 0-1")
    overlap_s: float
    overlap_count: int
    interruption_count: int
    longest_monologue_s: float
    longest_monologue_speaker: Role | None
    turns: int
    roles: dict[str, RoleMetrics]


class DiarizedTranscript(BaseModel):
    method: Literal[
        "stereo-channel-map", "mono-pause-heuristic", "mono-vad-resemblyzer", "mono-pyannote"
    ]
    language: str | None
    duration_s: float
    segments: list[DiarizedSegment]
    metrics: ConversationMetrics
    # Mono diarization only (None on stereo, pause and transcripts stored before them).
    speakers: int | None = Field(None, description="distinct speakers the segmenter found")
    roles: RoleDecision | None = None
    details: dict | None = Field(None, description="segmenter figures, JSON-safe")
    voice_turns: list[VoiceTurn] | None = None

    def roles_present(self) -> set[str]:
        return {s.speaker for s in self.segments if s.text.strip()}

    def spoken_text(self) -> str:
        """The words only, one segment per line: what evidence quotes are checked against."""
        return "\n".join(s.text for s in self.segments)

    def as_text(self) -> str:
        return "\n".join(f"[{s.start:.1f}] {s.speaker}: {s.text}" for s in self.segments)


def _union(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[list[float]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(s, e) for s, e in merged]


def _length(intervals: list[tuple[float, float]]) -> float:
    return sum(e - s for s, e in intervals)


def _intersection(a: list[tuple[float, float]], b: list[tuple[float, float]]):
    out = []
    for a_start, a_end in a:
        for b_start, b_end in b:
            lo, hi = max(a_start, b_start), min(a_end, b_end)
            if hi > lo:
                out.append((lo, hi))
    return _union(out)


def _utterances(segments: list[Segment]) -> list[Segment]:
    """Whisper segments re-cut at real pauses: split at long word gaps, join tiny gaps."""
    pieces = [p for segment in segments for p in split_on_pauses(segment) if p.text.strip()]
    joined: list[Segment] = []
    for piece in pieces:
        if joined and piece.start - joined[-1].end <= JOIN_GAP_S:
            last = joined[-1]
            joined[-1] = Segment(
                start=last.start,
                end=piece.end,
                channel=last.channel,
                words=last.words + piece.words,
                text=f"{last.text.strip()} {piece.text.strip()}",
            )
        else:
            joined.append(piece)
    return joined


def _diarized(
    method: str, transcript: Transcript, segments: list[DiarizedSegment], **extra
) -> DiarizedTranscript:
    segments.sort(key=lambda s: (s.start, s.end))
    return DiarizedTranscript(
        method=method,
        language=transcript.language,
        duration_s=transcript.duration_s,
        segments=segments,
        metrics=conversation_metrics(segments, transcript.duration_s),
        **extra,
    )


class ChannelMapDiarizer:
    """Stereo: one party per channel (the usual telephony export), roles from the map."""

    method = "stereo-channel-map"

    def __init__(self, channel_map: ChannelMap) -> None:
        self.channel_map = channel_map

    def diarize(
        self, transcript: Transcript, audio: DecodedAudio | None = None
    ) -> DiarizedTranscript:
        if len(transcript.channels) != 2:
            raise ConfigError(
                f"diarization 'channel' needs a stereo recording (one party per channel); "
                f"this transcript has {len(transcript.channels)} channel(s): use auto, "
                "embedding, pyannote or pause for mono calls"
            )
        segments = [
            DiarizedSegment(
                start=s.start,
                end=s.end,
                speaker=self.channel_map.role_of(ch.channel),
                text=s.text.strip(),
                channel=ch.channel,
            )
            for ch in transcript.channels
            for s in _utterances(ch.segments)
        ]
        return _diarized(self.method, transcript, segments)


class PauseHeuristicDiarizer:
    """Mono: a basic, clearly labelled heuristic (a long pause switches the speaker)."""

    method = "mono-pause-heuristic"

    def diarize(
        self, transcript: Transcript, audio: DecodedAudio | None = None
    ) -> DiarizedTranscript:
        segments = []
        role_index = 0  # the operator usually speaks first on a business line
        previous_end: float | None = None
        for s in transcript.segments:
            if not s.text.strip():
                continue
            if previous_end is not None and s.start - previous_end >= MONO_TURN_PAUSE_S:
                role_index = 1 - role_index
            segments.append(
                DiarizedSegment(
                    start=s.start, end=s.end, speaker=ROLES[role_index], text=s.text.strip()
                )
            )
            previous_end = s.end
        return _diarized(self.method, transcript, segments)


# Segmenter method -> the DiarizedTranscript method it produces.
MONO_METHODS = {"vad-resemblyzer": "mono-vad-resemblyzer", "pyannote": "mono-pyannote"}
Backend = Literal["channel", "embedding", "pyannote", "pause"]
BACKENDS: tuple[str, ...] = ("auto", "channel", "embedding", "pyannote", "pause")


def _join_same_speaker(utterances: list[Utterance]) -> list[Utterance]:
    """Neighbouring utterances of one speaker and channel with a tiny gap are one (the STT
    cut them); a stereo file mixed down keeps each channel's lines apart."""
    joined: list[Utterance] = []
    for u in utterances:
        last = joined[-1] if joined else None
        if (
            last
            and (last.speaker, last.channel) == (u.speaker, u.channel)
            and 0 <= u.start - last.end <= JOIN_GAP_S
        ):
            joined[-1] = Utterance(
                speaker=u.speaker,
                start=last.start,
                end=max(last.end, u.end),
                text=f"{last.text} {u.text}",
                words=last.words + u.words,
                channel=last.channel,
            )
        else:
            joined.append(u)
    return joined


def mono_samples(audio: DecodedAudio) -> np.ndarray:
    """One 16 kHz track: the recording itself, or both channels mixed down (a stereo file
    diarized by voice, e.g. to evaluate the mono backends against channel truth)."""
    if len(audio.channels) == 1:
        return audio.channels[0]
    return np.mean(np.stack(audio.channels), axis=0).astype(np.float32)


class SpeakerDiarizer:
    """Mono: a speaker segmenter says who spoke when, words follow its turns, and the
    operator is told from what each speaker says; every other speaker is a customer."""

    def __init__(
        self,
        segmenter: SpeakerSegmenter,
        role_hints: RoleHints | None = None,
        tenant_name: str | None = None,
    ) -> None:
        if segmenter.method not in MONO_METHODS:
            raise ConfigError(
                f"speaker segmenter method {segmenter.method!r}: expected one of "
                f"{', '.join(MONO_METHODS)}"
            )
        self.segmenter = segmenter
        self.method = MONO_METHODS[segmenter.method]
        self.role_hints = role_hints or RoleHints()
        self.tenant_name = tenant_name

    def diarize(self, transcript: Transcript, audio: DecodedAudio) -> DiarizedTranscript:
        started = time.perf_counter()
        segmentation = self.segmenter.segment(mono_samples(audio))
        segment_s = time.perf_counter() - started
        # Cut at real pauses first (as for stereo), then at speaker changes.
        pieces = [p for s in transcript.segments for p in split_on_pauses(s)]
        utterances = _join_same_speaker(assign_words(pieces, segmentation.turns))
        decision = decide_roles(utterances, self.role_hints, self.tenant_name)
        segments = [
            DiarizedSegment(
                start=u.start,
                end=u.end,
                speaker=decision.role_of(u.speaker),
                text=u.text,
                channel=u.channel,
                speaker_id=u.speaker,
                words=u.words,
            )
            for u in utterances
        ]
        return _diarized(
            self.method,
            transcript,
            segments,
            speakers=segmentation.speakers,
            roles=decision,
            voice_turns=[
                VoiceTurn(
                    start=round(t.start, 3),
                    end=round(t.end, 3),
                    speaker_id=t.speaker,
                    speaker=decision.role_of(t.speaker),
                )
                for t in segmentation.turns
            ],
            details={
                **segmentation.details,
                "segmenter": segmentation.method,
                "turns": len(segmentation.turns),
                "segment_s": round(segment_s, 3),
            },
        )


def resolve_backend(backend: str, stereo: bool) -> Backend:
    """The concrete backend: auto is channel for stereo, embedding for mono."""
    if backend not in BACKENDS:
        raise ConfigError(f"diarization {backend!r}: expected one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return "channel" if stereo else "embedding"
    return backend  # type: ignore[return-value]


def segmenter_for(
    backend: str, *, pyannote_model: str | None = None, pyannote_token: str | None = None
) -> SpeakerSegmenter:
    """The speaker segmenter of a mono backend, imported only when used (heavy models)."""
    if backend == "embedding":
        from callqa.speech.speakers import EmbeddingSegmenter

        return EmbeddingSegmenter()
    if backend == "pyannote":
        from callqa.speech.pyannote_backend import PyannoteSegmenter

        return PyannoteSegmenter(model=pyannote_model, token=pyannote_token)
    raise ConfigError(f"diarization {backend!r} has no speaker segmenter")


def diarize(
    transcript: Transcript,
    audio: DecodedAudio | None,
    *,
    backend: str = "auto",
    channel_map: ChannelMap | None = None,
    role_hints: RoleHints | None = None,
    tenant_name: str | None = None,
    segmenter: SpeakerSegmenter | None = None,
) -> DiarizedTranscript:
    """Operator and customer turns plus conversation metrics, by the named backend.

    backend: auto | channel | embedding | pyannote | pause (the preset's choice after any
    CALLQA_DIARIZATION override; see DiarizationBackends). `segmenter` replaces the default
    one of embedding / pyannote (a loaded model kept across calls, or a test double).
    `channel` on a mono recording is a ConfigError: there is no channel to map. Only the
    speaker segmenters read `audio`; the channel map and the pause heuristic need none.
    """
    stereo = len(transcript.channels) == 2
    chosen = resolve_backend(backend, stereo=stereo)
    if chosen == "channel":
        if not stereo:
            raise ConfigError(
                f"diarization 'channel' needs a stereo recording (one party per channel), "
                f"got {len(transcript.channels)} channel(s): use auto, embedding, pyannote or "
                "pause for mono calls"
            )
        return ChannelMapDiarizer(channel_map or ChannelMap()).diarize(transcript, audio)
    if chosen == "pause":
        return PauseHeuristicDiarizer().diarize(transcript, audio)
    if audio is None:
        raise ConfigError(f"diarization {chosen!r} listens to the voices: it needs the audio")
    diarizer = SpeakerDiarizer(segmenter or segmenter_for(chosen), role_hints, tenant_name)
    return diarizer.diarize(transcript, audio)


def conversation_metrics(segments: list[DiarizedSegment], duration_s: float) -> ConversationMetrics:
    by_role = {r: _union([(s.start, s.end) for s in segments if s.speaker == r]) for r in ROLES}
    talk = {r: _length(by_role[r]) for r in ROLES}
    total_talk = sum(talk.values())
    speech = _union(by_role["operator"] + by_role["customer"])
    overlaps = _intersection(by_role["operator"], by_role["customer"])

    interruptions = dict.fromkeys(ROLES, 0)
    for seg in segments:
        other = [s for s in segments if s.speaker != seg.speaker]
        if any(
            o.start < seg.start and o.end - seg.start >= INTERRUPTION_MIN_OVERLAP_S for o in other
        ):
            interruptions[seg.speaker] += 1

    # Turns: consecutive segments of the same speaker form one turn.
    turns: list[tuple[Role, float, float]] = []
    for seg in segments:
        if turns and turns[-1][0] == seg.speaker:
            turns[-1] = (seg.speaker, turns[-1][1], max(turns[-1][2], seg.end))
        else:
            turns.append((seg.speaker, seg.start, seg.end))
    longest = max(turns, key=lambda t: t[2] - t[1], default=None)

    roles = {}
    for r in ROLES:
        words = sum(len(s.text.split()) for s in segments if s.speaker == r)
        roles[r] = RoleMetrics(
            talk_time_s=round(talk[r], 2),
            talk_share=round(talk[r] / total_talk, 3) if total_talk else 0.0,
            words=words,
            words_per_minute=round(words / (talk[r] / 60), 1) if talk[r] > 0 else 0.0,
            interruptions=interruptions[r],
        )
    return ConversationMetrics(
        duration_s=round(duration_s, 2),
        silence_ratio=round(max(0.0, 1 - _length(speech) / duration_s), 3) if duration_s else 1.0,
        overlap_s=round(_length(overlaps), 2),
        overlap_count=sum(1 for s, e in overlaps if e - s >= 0.2),
        interruption_count=sum(interruptions.values()),
        longest_monologue_s=round(longest[2] - longest[1], 2) if longest else 0.0,
        longest_monologue_speaker=longest[0] if longest else None,
        turns=len(turns),
        roles=roles,
    )
