"""How good is speech: WER, diarization error, words and roles to the right speaker, speed.

The labelled speech set (callqa/evaluation/speech_set, made by scripts/make_speech_set.py)
holds per call `<id>.flac`, `<id>.rttm` (reference speaker turns) and `<id>.json`
(reference lines with speaker, role, start, end, text; the roles; the channel layout).
`evaluate_speech` runs the real pipeline on each file (decode -> faster-whisper ->
diarization backend) and compares with the labels:

* WER on normalised text (`normalise`), word-level edit distance (`align`).
* DER with pyannote.metrics, overlap scored, at collar 0 and at a ±0.25 s forgiveness
  collar around each reference boundary. pyannote's `collar` is the TOTAL width centred on a
  boundary (t - collar/2 .. t + collar/2), so ±0.25 s is `collar=0.5` (NIST md-eval `-c 0.25`).
* Word-speaker accuracy: hypothesis words aligned to reference words (same alignment as
  WER); of the pairs that align (equal or substituted), the share whose roles agree.
* Role accuracy per call: the operator is identified when most of the operator's
  reference speech time lies in hypothesis segments labelled operator and most of the
  customer's in segments labelled customer.
* Speed: audio seconds per wall second, transcription and each diarization backend apart.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from callqa.config.models import ChannelMap, Role
from callqa.errors import CallqaError

if TYPE_CHECKING:
    from callqa.speech.audio import DecodedAudio
    from callqa.speech.diarization import DiarizedTranscript
    from callqa.speech.transcript import Transcript
    from callqa.speech.whisper import WhisperSettings

SPEECH_SET_DIR = Path(__file__).parent / "speech_set"
BACKENDS = ("auto", "channel", "embedding", "pyannote", "pause")
# Forgiveness around each reference boundary, seconds each side; pyannote wants the width.
COLLAR_EACH_SIDE_S = 0.25
COLLARS = {"der": 0.0, "der_collar": 2 * COLLAR_EACH_SIDE_S}


class SpeechSetError(CallqaError):
    """A speech set folder is missing, empty or has inconsistent labels."""


# ---------------------------------------------------------------------------------------
# The labelled set
# ---------------------------------------------------------------------------------------
class RefLine(BaseModel):
    model_config = ConfigDict(extra="forbid")
    speaker: str
    role: Role
    start: float = Field(ge=0)
    end: float
    text: str = Field(min_length=1)

    @model_validator(mode="after")
    def _ordered(self) -> RefLine:
        if self.end <= self.start:
            raise ValueError(f"line {self.text[:30]!r} ends ({self.end}) before it starts")
        return self


class SpeechLabel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    audio: str
    title: str
    notes: str
    duration_s: float = Field(gt=0)
    sample_rate: int
    channels: Literal["mono", "stereo"]
    channel_map: ChannelMap | None = None  # stereo only: which role is on which channel
    telephone_band: bool = False
    company: str
    roles: dict[str, Role]
    voices: dict[str, dict] = Field(default_factory=dict)
    lines: list[RefLine] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> SpeechLabel:
        if (self.channels == "stereo") != (self.channel_map is not None):
            raise ValueError("a stereo call needs a channel_map and a mono call has none")
        for line in self.lines:
            if self.roles.get(line.speaker) != line.role:
                raise ValueError(f"speaker {line.speaker!r} has role {line.role}, roles disagree")
        return self


@dataclass(frozen=True)
class RttmTurn:
    file: str
    start: float
    end: float
    speaker: str


@dataclass(frozen=True)
class SpeechItem:
    label: SpeechLabel
    audio_path: Path
    turns: list[RttmTurn]  # the reference for DER, from <id>.rttm

    @property
    def id(self) -> str:
        return self.label.id


def read_rttm(text: str, name: str) -> list[RttmTurn]:
    """SPEAKER lines of an RTTM file (other record types are skipped)."""
    turns = []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields or fields[0] != "SPEAKER":
            continue
        try:
            start, duration = float(fields[3]), float(fields[4])
            speaker = fields[7]
        except (IndexError, ValueError) as exc:
            raise SpeechSetError(f"{name}:{number}: not an RTTM SPEAKER line: {line!r}") from exc
        if duration <= 0:
            raise SpeechSetError(f"{name}:{number}: turn of {duration} s")
        turns.append(RttmTurn(fields[1], start, round(start + duration, 3), speaker))
    return turns


def load_speech_set(directory: Path | None = None) -> list[SpeechItem]:
    """Every `<id>.json` of the folder with its audio and RTTM, sorted by id."""
    folder = Path(directory) if directory else SPEECH_SET_DIR
    if not folder.is_dir():
        raise SpeechSetError(f"{folder}: not a folder")
    items = []
    for path in sorted(folder.glob("*.json")):
        try:
            label = SpeechLabel.model_validate_json(path.read_text(encoding="utf-8"))
        except (OSError, ValidationError) as exc:
            first = str(exc).splitlines()[:3]
            raise SpeechSetError(f"{path}: not a speech label: {' '.join(first)}") from exc
        audio = folder / label.audio
        rttm = folder / f"{label.id}.rttm"
        for needed in (audio, rttm):
            if not needed.is_file():
                raise SpeechSetError(f"{path}: {needed.name} is missing")
        turns = read_rttm(rttm.read_text(encoding="utf-8"), str(rttm))
        if not turns:
            raise SpeechSetError(f"{rttm}: no SPEAKER turns")
        items.append(SpeechItem(label, audio, turns))
    if not items:
        raise SpeechSetError(f"{folder}: no speech labels (<id>.json) found")
    return items


# ---------------------------------------------------------------------------------------
# Text normalisation
# ---------------------------------------------------------------------------------------
_ONES = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_ORDINALS = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}
_CONTRACTIONS = {
    "can't": "can not",
    "cannot": "can not",
    "won't": "will not",
    "shan't": "shall not",
    "let's": "let us",
    "it's": "it is",
    "that's": "that is",
    "what's": "what is",
    "there's": "there is",
    "here's": "here is",
    "he's": "he is",
    "she's": "she is",
    "i'm": "i am",
}
_SUFFIXES = (("n't", " not"), ("'re", " are"), ("'ll", " will"), ("'ve", " have"), ("'d", " would"))
# Spellings of one word that speech models write in different ways.
_SPELLINGS = {
    "ok": "okay",
    "mr": "mister",
    "mrs": "missus",
    "mhm": "mm hmm",
    "mmhmm": "mm hmm",
    "uhhuh": "uh huh",
    "e-mail": "email",
}
_NUMBER = re.compile(r"(\$)?(\d+(?:,\d{3})*)(?:\.(\d+))?(st|nd|rd|th|%)?")


def number_words(n: int) -> str:
    """Cardinal English words for 0 <= n < 1,000,000 ('one hundred twenty three')."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        rest = "" if n % 100 == 0 else " " + number_words(n % 100)
        return f"{_ONES[n // 100]} hundred{rest}"
    if n < 1_000_000:
        rest = "" if n % 1000 == 0 else " " + number_words(n % 1000)
        return f"{number_words(n // 1000)} thousand{rest}"
    return " ".join(_ONES[int(d)] for d in str(n))


def _ordinal(words: str) -> str:
    head, _, last = words.rpartition(" ")
    if last in _ORDINALS:
        last = _ORDINALS[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return f"{head} {last}".strip()


def _spell_number(match: re.Match) -> str:
    dollar, digits, decimals, suffix = match.groups()
    digits = digits.replace(",", "")
    # Four digits or more without separators are read digit by digit (account and
    # customer numbers); amounts with thousands separators as numbers.
    if len(digits) >= 4 and "," not in match.group(2):
        words = " ".join(_ONES[int(d)] for d in digits)
    else:
        words = number_words(int(digits))
    if decimals:
        words += " point " + " ".join(_ONES[int(d)] for d in decimals)
    if suffix in ("st", "nd", "rd", "th"):
        words = _ordinal(words)
    if suffix == "%":
        words += " percent"
    if dollar:
        words += " dollars"
    return f" {words} "


def normalise(text: str) -> str:
    """Text as compared for WER: lowercase; curly quotes straightened; contractions
    expanded (it's -> it is, don't -> do not, we'll -> we will); numbers spelled out
    ($40 -> forty dollars, 15th -> fifteenth, 30% -> thirty percent, 45729 -> four five
    seven two nine); a few spelling variants unified (ok -> okay, mr -> mister,
    mhm -> mm hmm); hyphens split words (uh-huh -> uh huh); every other punctuation mark
    removed; whitespace collapsed."""
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    text = _NUMBER.sub(_spell_number, text)
    words = []
    for token in text.split():
        token = token.strip('.,!?;:"()[]{}…')
        token = _SPELLINGS.get(token, token)
        if token in _CONTRACTIONS:
            token = _CONTRACTIONS[token]
        else:
            for suffix, expansion in _SUFFIXES:
                if token.endswith(suffix) and len(token) > len(suffix):
                    token = token[: -len(suffix)] + expansion
                    break
        token = token.replace("-", " ")
        token = re.sub(r"[^a-z0-9' ]+", "", token).replace("'", "")
        words.append(" ".join(_SPELLINGS.get(t, t) for t in token.split()))
    return " ".join(" ".join(words).split())


# ---------------------------------------------------------------------------------------
# Word error rate
# ---------------------------------------------------------------------------------------
Op = Literal["equal", "substitute", "delete", "insert"]


def align(ref: Sequence[str], hyp: Sequence[str]) -> list[tuple[Op, int | None, int | None]]:
    """Minimum edit-distance alignment of two word lists: (op, ref index, hyp index) in
    order. Ties prefer a match or substitution over a deletion over an insertion."""
    n, m = len(ref), len(hyp)
    cost = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n + 1):
        cost[i][0] = i
    for j in range(m + 1):
        cost[0][j] = j
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            diagonal = cost[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1])
            cost[i][j] = min(diagonal, cost[i - 1][j] + 1, cost[i][j - 1] + 1)
    ops: list[tuple[Op, int | None, int | None]] = []
    i, j = n, m
    while i or j:
        if i and j and cost[i][j] == cost[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1]):
            ops.append(("equal" if ref[i - 1] == hyp[j - 1] else "substitute", i - 1, j - 1))
            i, j = i - 1, j - 1
        elif i and cost[i][j] == cost[i - 1][j] + 1:
            ops.append(("delete", i - 1, None))
            i -= 1
        else:
            ops.append(("insert", None, j - 1))
            j -= 1
    return ops[::-1]


@dataclass(frozen=True)
class WordErrors:
    ref_words: int
    substitutions: int
    deletions: int
    insertions: int

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def wer(self) -> float | None:
        return self.errors / self.ref_words if self.ref_words else None

    def __add__(self, other: WordErrors) -> WordErrors:
        return WordErrors(
            self.ref_words + other.ref_words,
            self.substitutions + other.substitutions,
            self.deletions + other.deletions,
            self.insertions + other.insertions,
        )


def word_errors(ref: Sequence[str], hyp: Sequence[str]) -> WordErrors:
    ops = [op for op, _, _ in align(ref, hyp)]
    return WordErrors(len(ref), ops.count("substitute"), ops.count("delete"), ops.count("insert"))


def wer(reference: str, hypothesis: str) -> float | None:
    """Word error rate of two texts after `normalise`; None for an empty reference."""
    return word_errors(normalise(reference).split(), normalise(hypothesis).split()).wer


# ---------------------------------------------------------------------------------------
# Words with roles, on one timeline
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TimedWord:
    time: float
    word: str  # normalised
    role: str


def _spread(text: str, start: float, end: float, role: str) -> list[TimedWord]:
    """Words of a span with times spread by character position (no word timestamps)."""
    tokens = text.split()
    total = sum(len(t) + 1 for t in tokens) or 1
    out, offset = [], 0
    for token in tokens:
        time_at = start + (end - start) * (offset + len(token) / 2) / total
        offset += len(token) + 1
        out += [TimedWord(time_at, w, role) for w in normalise(token).split()]
    return out


def _sorted(words: Iterable[TimedWord]) -> list[TimedWord]:
    # Time order, so overlapping lines interleave as spoken (a backchannel sits inside the
    # turn it interrupts) in the reference and in the hypothesis alike.
    return sorted(words, key=lambda w: w.time)


def reference_words(lines: Iterable[RefLine]) -> list[TimedWord]:
    return _sorted(w for line in lines for w in _spread(line.text, line.start, line.end, line.role))


def transcript_words(transcript: Transcript) -> list[TimedWord]:
    """What speech-to-text heard, before any diarization (role left empty): the words
    with their timestamps, or a segment's text spread over it where it has none."""
    out: list[TimedWord] = []
    for seg in transcript.segments:
        if seg.words:
            for w in seg.words:
                mid = (w.start + w.end) / 2
                out += [TimedWord(mid, t, "") for t in normalise(w.word).split()]
        else:
            out += _spread(seg.text, seg.start, seg.end, "")
    return _sorted(out)


def _role_at(time_at: float, diarized: DiarizedTranscript) -> str:
    """The role of the diarized segment at a time (the nearest one between segments)."""
    best, distance = "", float("inf")
    for seg in diarized.segments:
        gap = max(seg.start - time_at, time_at - seg.end, 0.0)
        if gap < distance:
            best, distance = seg.speaker, gap
    return best


def hypothesis_words(
    diarized: DiarizedTranscript, transcript: Transcript | None = None
) -> list[TimedWord]:
    """Each word with the role the diarization gave it: the segments' own words where
    the backend attaches them (`words`); else the transcript's words, each given the
    role of the diarized segment it falls in; else the segments' text spread over them."""
    if any(getattr(seg, "words", None) for seg in diarized.segments):
        out: list[TimedWord] = []
        for seg in diarized.segments:
            words = getattr(seg, "words", None) or []
            if not words:
                out += _spread(seg.text, seg.start, seg.end, seg.speaker)
            for w in words:
                mid = (w.start + w.end) / 2
                out += [TimedWord(mid, t, seg.speaker) for t in normalise(w.word).split()]
        return _sorted(out)
    if transcript is not None:
        return [
            TimedWord(w.time, w.word, _role_at(w.time, diarized))
            for w in transcript_words(transcript)
        ]
    return _sorted(
        w for seg in diarized.segments for w in _spread(seg.text, seg.start, seg.end, seg.speaker)
    )


@dataclass(frozen=True)
class WordScores:
    errors: WordErrors
    aligned: int  # equal or substituted pairs
    right_speaker: int  # of those, pairs whose roles agree

    @property
    def speaker_accuracy(self) -> float | None:
        return self.right_speaker / self.aligned if self.aligned else None


def score_words(ref: Sequence[TimedWord], hyp: Sequence[TimedWord]) -> WordScores:
    ops = align([w.word for w in ref], [w.word for w in hyp])
    pairs = [(ref[i], hyp[j]) for op, i, j in ops if op in ("equal", "substitute")]
    counts = [op for op, _, _ in ops]
    errors = WordErrors(
        len(ref), counts.count("substitute"), counts.count("delete"), counts.count("insert")
    )
    return WordScores(errors, len(pairs), sum(r.role == h.role for r, h in pairs))


# ---------------------------------------------------------------------------------------
# Diarization error and roles
# ---------------------------------------------------------------------------------------
def reference_annotation(item: SpeechItem):
    from pyannote.core import Annotation, Segment

    annotation = Annotation(uri=item.id)
    for i, turn in enumerate(item.turns):
        annotation[Segment(turn.start, turn.end), i] = turn.speaker
    return annotation


def hypothesis_annotation(diarized: DiarizedTranscript, uri: str):
    """Who spoke when: the speaker segmenter's own turns where the backend has them (mono
    backends), else the diarized transcript's segments (whose edges are Whisper's word
    timings). The anonymous speaker id where there is one (so >2 found speakers count as
    such), else the role."""
    from pyannote.core import Annotation, Segment

    annotation = Annotation(uri=uri)
    if diarized.voice_turns is not None:
        turns = [(t.start, t.end, f"speaker{t.speaker_id}") for t in diarized.voice_turns]
    else:
        turns = [
            (s.start, s.end, f"speaker{s.speaker_id}" if s.speaker_id is not None else s.speaker)
            for s in diarized.segments
        ]
    for i, (start, end, label) in enumerate(turns):
        if end > start:
            annotation[Segment(start, end), i] = label
    return annotation


def der_metrics() -> dict:
    """One accumulating pyannote metric per collar, overlap scored."""
    from pyannote.metrics.diarization import DiarizationErrorRate

    return {
        name: DiarizationErrorRate(collar=collar, skip_overlap=False)
        for name, collar in COLLARS.items()
    }


def score_der(metrics: dict, item: SpeechItem, diarized: DiarizedTranscript) -> dict:
    """DER of one file for each metric (which also accumulates it for the overall row)."""
    from pyannote.core import Segment, Timeline

    reference = reference_annotation(item)
    hypothesis = hypothesis_annotation(diarized, item.id)
    uem = Timeline([Segment(0, max(item.label.duration_s, diarized.duration_s))], uri=item.id)
    return {
        name: metric(reference, hypothesis, uem=uem, detailed=True)["diarization error rate"]
        for name, metric in metrics.items()
    }


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> float:
    return max(0.0, min(a[1], b[1]) - max(a[0], b[0]))


def role_time(
    lines: Iterable[RefLine], diarized: DiarizedTranscript
) -> dict[str, dict[str, float]]:
    """Seconds of each reference role's speech covered by hypothesis segments of each role."""
    table: dict[str, dict[str, float]] = {}
    for line in lines:
        row = table.setdefault(line.role, {})
        for seg in diarized.segments:
            shared = _overlap((line.start, line.end), (seg.start, seg.end))
            if shared:
                row[seg.speaker] = row.get(seg.speaker, 0.0) + shared
    return table


def roles_correct(lines: Sequence[RefLine], diarized: DiarizedTranscript) -> bool:
    """The operator was identified: each reference role's speech lies mostly (by time) in
    hypothesis segments of the same role. Both roles are checked, so labelling everyone
    'operator' does not count as finding the operator."""
    table = role_time(lines, diarized)
    for role in {line.role for line in lines}:
        row = table.get(role, {})
        if not row or max(row, key=row.get) != role:
            return False
    return True


# ---------------------------------------------------------------------------------------
# The harness
# ---------------------------------------------------------------------------------------
def run_diarizer(
    transcript: Transcript,
    audio: DecodedAudio,
    backend: str,
    channel_map: ChannelMap,
    company: str,
) -> DiarizedTranscript:
    """The pipeline's diarization entry point, as an unconfigured tenant named `company`
    gets it (default role hints). The one place to adapt when that entry point changes."""
    from callqa.speech import diarization

    entry = getattr(diarization, "diarize", None)
    if entry is not None:
        from callqa.config import models

        hints = models.RoleHints() if hasattr(models, "RoleHints") else None
        return entry(
            transcript,
            audio,
            backend=backend,
            channel_map=channel_map,
            role_hints=hints,
            tenant_name=company,
        )
    # Before the backend interface: the two diarizers of callqa.speech.diarization.
    stereo = len(transcript.channels) == 2
    if backend == "pause" or (backend == "auto" and not stereo):
        return diarization.PauseHeuristicDiarizer().diarize(transcript)
    if backend in ("channel", "auto"):
        if not stereo:
            raise CallqaError("backend 'channel' needs a stereo recording")
        return diarization.ChannelMapDiarizer(channel_map).diarize(transcript)
    raise CallqaError(f"diarization backend {backend!r} is not available in this version")


def _rate(part: float, whole: float) -> float | None:
    return round(part / whole, 4) if whole else None


def _speed(audio_s: float, wall_s: float) -> float | None:
    return round(audio_s / wall_s, 1) if wall_s > 0 else None  # audio seconds per wall second


def _score_file(
    item: SpeechItem, transcript: Transcript, diarized: DiarizedTranscript, metrics: dict
) -> dict:
    ref = reference_words(item.label.lines)
    # WER judges speech-to-text alone (the transcript, whatever the backend), so backends
    # differ only in the speaker figures.
    errors = score_words(ref, transcript_words(transcript)).errors
    words = score_words(ref, hypothesis_words(diarized, transcript))
    return {
        **{k: round(v, 4) for k, v in score_der(metrics, item, diarized).items()},
        "wer": None if errors.wer is None else round(errors.wer, 4),
        "ref_words": errors.ref_words,
        "substitutions": errors.substitutions,
        "deletions": errors.deletions,
        "insertions": errors.insertions,
        "aligned_words": words.aligned,
        "right_speaker_words": words.right_speaker,
        "word_speaker_accuracy": _rate(words.right_speaker, words.aligned),
        "role_correct": roles_correct(item.label.lines, diarized),
        "method": diarized.method,
    }


def _pooled_wer(errors: list[WordErrors]) -> float | None:
    pooled = sum(errors, WordErrors(0, 0, 0, 0)).wer
    return None if pooled is None else round(pooled, 4)


def _overall(files: list[dict], metrics: dict) -> dict:
    scored = [f for f in files if f.get("error") is None]
    errors = sum(
        (
            WordErrors(f["ref_words"], f["substitutions"], f["deletions"], f["insertions"])
            for f in scored
        ),
        WordErrors(0, 0, 0, 0),
    )
    aligned = sum(f["aligned_words"] for f in scored)
    audio_s = sum(f["duration_s"] for f in scored)
    diarize_s = sum(f["diarize_s"] for f in scored)  # 0.1 ms steps: fast backends still count
    out = {
        "files": len(scored),
        "failed": len(files) - len(scored),
        "duration_s": round(audio_s, 1),
        "wer": None if errors.wer is None else round(errors.wer, 4),
        "ref_words": errors.ref_words,
        "word_speaker_accuracy": _rate(sum(f["right_speaker_words"] for f in scored), aligned),
        "role_accuracy": _rate(sum(f["role_correct"] for f in scored), len(scored)),
        "diarize_s": round(diarize_s, 3),
        "diarize_speed": _speed(audio_s, diarize_s),
    }
    for name, metric in metrics.items():
        # Time-weighted over all files: the metric's accumulated components.
        components = {k: round(v, 3) for k, v in metric.accumulated_.items()}
        out[name] = round(abs(metric), 4) if components.get("total") else None
        out[f"{name}_components"] = components
    return out


def bare_transcript_words(audio, whisper: WhisperSettings) -> list[TimedWord]:
    """The same model on the whole recording mixed to one channel, with faster-whisper's
    own defaults (no VAD, no windows, no word timestamps): the baseline the pipeline's
    transcription must not be worse than."""
    from callqa.speech.diarization import mono_samples
    from callqa.speech.whisper import load_model

    model = load_model(whisper.model, whisper.device, whisper.compute_type, whisper.cpu_threads)
    segments, _ = model.transcribe(
        mono_samples(audio), language=whisper.language, beam_size=whisper.beam_size
    )
    return _sorted(w for seg in segments for w in _spread(seg.text, seg.start, seg.end, role=""))


def evaluate_speech(
    items: Sequence[SpeechItem],
    backends: Sequence[str],
    whisper: WhisperSettings,
    progress: Callable[[str], None] | None = None,
    baseline: bool = False,
) -> dict:
    """Transcribe each file once, diarize it with every backend, score all of it; with
    `baseline`, also the bare model's WER on the same audio."""
    from callqa.speech.audio import decode_file
    from callqa.speech.whisper import WhisperTranscriber, load_model

    started = time.perf_counter()
    # Loaded before the clock runs per file, so the first file's speed is not the load.
    load_model(whisper.model, whisper.device, whisper.compute_type, whisper.cpu_threads)
    model_load_s = time.perf_counter() - started
    transcriber = WhisperTranscriber(whisper)
    metrics = {backend: der_metrics() for backend in backends}
    files: dict[str, list[dict]] = {backend: [] for backend in backends}
    transcription = {"audio_s": 0.0, "wall_s": 0.0}
    bare_errors: list[WordErrors] = []
    for item in items:
        audio = decode_file(item.audio_path)
        duration = audio.probe.duration_s
        clock = time.perf_counter()
        transcript = transcriber.transcribe(audio)
        transcribe_s = time.perf_counter() - clock
        transcription["audio_s"] += duration
        transcription["wall_s"] += transcribe_s
        if baseline:
            bare = score_words(
                reference_words(item.label.lines), bare_transcript_words(audio, whisper)
            ).errors
            bare_errors.append(bare)
        channel_map = item.label.channel_map or ChannelMap()
        for backend in backends:
            row = {
                "file": item.id,
                "channels": item.label.channels,
                "duration_s": round(duration, 2),
                "transcribe_s": round(transcribe_s, 3),
                "transcribe_speed": _speed(duration, transcribe_s),
                "error": None,
            }
            clock = time.perf_counter()
            try:
                diarized = run_diarizer(transcript, audio, backend, channel_map, item.label.company)
            except Exception as exc:  # one backend failing must not end the evaluation
                row["error"] = f"{exc.__class__.__name__}: {str(exc)[:200]}"
                files[backend].append(row)
                if progress:
                    progress(f"{item.id} [{backend}]: {row['error']}")
                continue
            diarize_s = time.perf_counter() - clock
            row["diarize_s"] = round(diarize_s, 4)
            row["diarize_speed"] = _speed(duration, diarize_s)
            row.update(_score_file(item, transcript, diarized, metrics[backend]))
            files[backend].append(row)
            if progress:
                progress(
                    f"{item.id} [{backend}]: WER {row['wer']}, DER {row['der']}, "
                    f"words to speaker {row['word_speaker_accuracy']}"
                )
    return {
        "speech_set": str(items[0].audio_path.parent) if items else None,
        "model": whisper.model,
        "device": whisper.device,
        "compute_type": whisper.compute_type,
        "model_load_s": round(model_load_s, 2),
        "collar_each_side_s": COLLAR_EACH_SIDE_S,
        "transcription": {
            "audio_s": round(transcription["audio_s"], 1),
            "wall_s": round(transcription["wall_s"], 2),
            "speed": _speed(transcription["audio_s"], transcription["wall_s"]),
            "bare_model_wer": _pooled_wer(bare_errors) if baseline else None,
        },
        "backends": {
            backend: {
                "files": files[backend],
                "overall": _overall(files[backend], metrics[backend]),
            }
            for backend in backends
        },
    }


# ---------------------------------------------------------------------------------------
# Text report
# ---------------------------------------------------------------------------------------
def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _x(value: float | None) -> str:
    if value is None:
        return "-"
    # A backend that takes microseconds has no meaningful speed beyond "very fast".
    return ">1000x" if value >= 1000 else f"{value:.1f}x"


_HEADER = (
    f"  {'file':<32} {'ch':<6} {'dur s':>6} {'WER':>6} {'DER':>6} {'DER±.25':>7} "
    f"{'words→spk':>9} {'role':>5} {'STT':>7} {'diar':>8}"
)


def _row(f: dict) -> str:
    if f.get("error"):
        error = f["error"] if len(f["error"]) <= 90 else f["error"][:87] + "..."
        return f"  {f['file']:<32} {f['channels']:<6} {f['duration_s']:>6.1f} failed: {error}"
    role = "ok" if f["role_correct"] else "WRONG"
    return (
        f"  {f['file']:<32} {f['channels']:<6} {f['duration_s']:>6.1f} {_pct(f['wer']):>6} "
        f"{_pct(f['der']):>6} {_pct(f['der_collar']):>7} "
        f"{_pct(f['word_speaker_accuracy']):>9} {role:>5} {_x(f['transcribe_speed']):>7} "
        f"{_x(f['diarize_speed']):>8}"
    )


def format_speech_report(report: dict) -> str:
    t = report["transcription"]
    out = [
        f"Speech set: {report['speech_set']}",
        f"Speech model {report['model']} on {report['device']}/{report['compute_type']} "
        f"(loaded in {report['model_load_s']:.1f} s); transcription {_x(t['speed'])} real time "
        f"({t['audio_s']:.0f} s of audio in {t['wall_s']:.1f} s)",
        "WER on normalised text; DER with overlap scored, collar 0 and ±0.25 s around each "
        "reference boundary; words→spk = aligned words given to the right role; role = "
        "operator and customer each mostly labelled right; speed = audio s per wall s.",
    ]
    if t.get("bare_model_wer") is not None:
        out.append(
            f"Bare model on the same audio (mixed to mono, no VAD, no windows): WER "
            f"{_pct(t['bare_model_wer'])}"
        )
    for backend, result in report["backends"].items():
        o = result["overall"]
        out += ["", f"Backend {backend}:", _HEADER]
        out += [_row(f) for f in result["files"]]
        roles = (
            f"{_pct(o['role_accuracy'])} ({round((o['role_accuracy'] or 0) * o['files'])}/"
            f"{o['files']})"
        )
        out.append(
            f"  {'overall':<32} {'':<6} {o['duration_s']:>6.1f} {_pct(o['wer']):>6} "
            f"{_pct(o['der']):>6} {_pct(o['der_collar']):>7} "
            f"{_pct(o['word_speaker_accuracy']):>9} {'':>5} {_x(t['speed']):>7} "
            f"{_x(o['diarize_speed']):>8}"
        )
        out.append(
            f"  role accuracy {roles}; diarization {o['diarize_s']:.2f} s in all"
            + (f"; {o['failed']} file(s) failed" if o["failed"] else "")
        )
    return "\n".join(out)


def report_json(report: dict) -> str:
    return json.dumps(report, indent=2)
