"""The speech accuracy harness: metrics on hand-checked examples, the bundled set's labels,
and `callqa eval speech` on real audio."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from callqa.cli import main
from callqa.config.models import ChannelMap
from callqa.evaluation.speech import (
    SPEECH_SET_DIR,
    RefLine,
    SpeechItem,
    SpeechLabel,
    SpeechSetError,
    TimedWord,
    align,
    der_metrics,
    format_speech_report,
    hypothesis_words,
    load_speech_set,
    normalise,
    number_words,
    read_rttm,
    reference_words,
    roles_correct,
    score_der,
    score_words,
    transcript_words,
    wer,
    word_errors,
)
from callqa.speech.audio import decode_file
from callqa.speech.diarization import DiarizedSegment, DiarizedTranscript, conversation_metrics
from callqa.speech.transcript import ChannelTranscript, Segment, Transcript, Word
from tests.paths import ROOT


# --- text normalisation ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello,   World!", "hello world"),
        ("It's $40, isn't it?", "it is forty dollars is not it"),
        ("We'll call; don't worry, I'm here.", "we will call do not worry i am here"),
        ("On the 15th or the 21st", "on the fifteenth or the twenty first"),
        ("Account 45729, please", "account four five seven two nine please"),
        (
            "5,000 users, 30% off, 1.5 hours",
            "five thousand users thirty percent off one point five hours",
        ),
        ("Uh-huh. OK, Mr. Walsh", "uh huh okay mister walsh"),
        ("Mhm. Mm-hmm.", "mm hmm mm hmm"),
        ("It\u2019s an e-mail", "it is an email"),
        ("...", ""),
    ],
)
def test_normalise(text, expected):
    assert normalise(text) == expected


@pytest.mark.parametrize(
    ("n", "words"),
    [
        (0, "zero"),
        (13, "thirteen"),
        (40, "forty"),
        (72, "seventy two"),
        (100, "one hundred"),
        (305, "three hundred five"),
        (2024, "two thousand twenty four"),
        (12000, "twelve thousand"),
    ],
)
def test_number_words(n, words):
    assert number_words(n) == words


# --- word error rate ---------------------------------------------------------------------
def test_alignment_and_counts_on_hand_checked_examples():
    ref = ["the", "cat", "sat", "on", "the", "mat"]
    # one deletion ("the" before "mat")
    assert word_errors(ref, ["the", "cat", "sat", "on", "mat"]).deletions == 1
    assert word_errors(ref, ["the", "cat", "sat", "on", "mat"]).wer == pytest.approx(1 / 6)
    # a b c -> a x c d: one substitution and one insertion
    ops = align(["a", "b", "c"], ["a", "x", "c", "d"])
    assert ops == [("equal", 0, 0), ("substitute", 1, 1), ("equal", 2, 2), ("insert", None, 3)]
    counts = word_errors(["a", "b", "c"], ["a", "x", "c", "d"])
    assert (counts.substitutions, counts.deletions, counts.insertions) == (1, 0, 1)
    assert counts.wer == pytest.approx(2 / 3)
    # nothing recognised: every reference word deleted; insertions can push WER over 1
    assert word_errors(ref, []).wer == 1.0
    assert word_errors(["yes"], ["yes", "yes", "yes"]).wer == 2.0
    assert word_errors([], ["hello"]).wer is None


def test_wer_normalises_both_sides():
    assert wer("Good morning, it's Anna.", "good morning it is anna") == 0
    assert wer("That's forty dollars.", "That is $40") == 0
    assert wer("I need eight phones", "I need a phone") == pytest.approx(2 / 4)


# --- hand-made diarized transcripts -------------------------------------------------------
def _diarized(segments: list[tuple[float, float, str, str]], duration: float = 20.0):
    segs = [
        DiarizedSegment(start=s, end=e, speaker=role, text=text) for s, e, role, text in segments
    ]
    return DiarizedTranscript(
        method="mono-pause-heuristic",
        language="en",
        duration_s=duration,
        segments=segs,
        metrics=conversation_metrics(segs, duration),
    )


def _item(lines: list[RefLine], duration: float = 20.0) -> SpeechItem:
    label = SpeechLabel(
        id="t1",
        audio="t1.flac",
        title="hand-made",
        notes="",
        duration_s=duration,
        sample_rate=16000,
        channels="mono",
        company="Northwind Telecom",
        roles={line.speaker: line.role for line in lines},
        lines=lines,
    )
    turns = read_rttm(
        "".join(
            f"SPEAKER t1 1 {x.start} {x.end - x.start} <NA> <NA> {x.speaker} <NA> <NA>\n"
            for x in lines
        ),
        "t1.rttm",
    )
    return SpeechItem(label, SPEECH_SET_DIR / "t1.flac", turns)


def _line(speaker: str, start: float, end: float, text: str = "words here") -> RefLine:
    return RefLine(
        speaker=speaker,
        role="operator" if speaker == "anna" else "customer",
        start=start,
        end=end,
        text=text,
    )


def test_der_at_collar_zero_and_quarter_second_each_side():
    item = _item([_line("anna", 0, 10), _line("bob", 10, 20)])
    # The hypothesis moves the speaker change one second late.
    hyp = _diarized([(0, 11, "operator", "a"), (11, 20, "customer", "b")])
    der = score_der(der_metrics(), item, hyp)
    assert der["der"] == pytest.approx(1 / 20)
    # ±0.25 s around the three reference boundaries (0, 10, 20) is not scored: 19 s remain,
    # of which 0.75 s (10.25-11) is confusion.
    assert der["der_collar"] == pytest.approx(0.75 / 19)


def test_der_scores_overlapping_speech():
    # Bob talks over Anna from 8 to 10; the hypothesis has one speaker at a time.
    item = _item([_line("anna", 0, 10), _line("bob", 8, 12)])
    hyp = _diarized([(0, 10, "operator", "a"), (10, 12, "customer", "b")])
    der = score_der(der_metrics(), item, hyp)
    # 14 s of reference speech (10 + 4); the 2 s of Bob inside Anna's turn are missed.
    assert der["der"] == pytest.approx(2 / 14)


def test_der_metric_accumulates_time_weighted_over_files():
    metrics = der_metrics()
    score_der(metrics, _item([_line("anna", 0, 10)]), _diarized([(0, 10, "operator", "a")]))
    short = _item([_line("anna", 0, 2)], duration=2)
    score_der(metrics, short, _diarized([(0, 2, "customer", "a")], duration=2))  # relabelled only
    miss = _item([_line("anna", 0, 2), _line("bob", 2, 4)], duration=4)
    score_der(metrics, miss, _diarized([(0, 4, "operator", "a")], duration=4))
    # 16 s of speech overall; only the 2 s of Bob labelled as Anna's speaker are wrong.
    assert abs(metrics["der"]) == pytest.approx(2 / 16)
    assert metrics["der"].accumulated_["confusion"] == pytest.approx(2)


def test_word_speaker_accuracy_counts_aligned_pairs_only():
    ref = [
        TimedWord(0.1, "hello", "operator"),
        TimedWord(0.2, "there", "operator"),
        TimedWord(1.0, "hi", "customer"),
        TimedWord(1.1, "anna", "customer"),
    ]
    hyp = [
        TimedWord(0.0, "um", "operator"),  # inserted: not counted
        TimedWord(0.1, "hello", "operator"),  # equal, right role
        TimedWord(0.2, "bear", "customer"),  # substituted, wrong role
        TimedWord(1.0, "hi", "customer"),  # equal, right role
    ]  # "anna" deleted: not counted
    scores = score_words(ref, hyp)
    assert (scores.aligned, scores.right_speaker) == (3, 2)
    assert scores.speaker_accuracy == pytest.approx(2 / 3)
    assert scores.errors.wer == pytest.approx(3 / 4)  # um, bear, anna


def test_reference_words_interleave_a_backchannel_by_time():
    lines = [
        _line("anna", 0, 4, "one two three four"),
        _line("bob", 1.6, 1.9, "uh-huh"),
    ]
    words = [(w.word, w.role) for w in reference_words(lines)]
    assert words == [
        ("one", "operator"),
        ("two", "operator"),
        ("uh", "customer"),
        ("huh", "customer"),
        ("three", "operator"),
        ("four", "operator"),
    ]


def test_hypothesis_words_from_transcript_take_the_role_of_their_segment():
    transcript = Transcript(
        model="hand",
        duration_s=5,
        channels=[
            ChannelTranscript(
                channel=0,
                segments=[
                    Segment(
                        start=0,
                        end=3,
                        text="Hello there. Hi!",
                        words=[
                            Word(start=0.0, end=0.4, word=" Hello"),
                            Word(start=0.5, end=0.9, word=" there."),
                            Word(start=2.0, end=2.3, word=" Hi!"),
                        ],
                    )
                ],
            )
        ],
    )
    hyp = _diarized([(0, 1, "operator", "Hello there."), (1.8, 3, "customer", "Hi!")], 5)
    words = hypothesis_words(hyp, transcript)
    assert [(w.word, w.role) for w in words] == [
        ("hello", "operator"),
        ("there", "operator"),
        ("hi", "customer"),
    ]
    assert [w.word for w in transcript_words(transcript)] == ["hello", "there", "hi"]


def test_role_accuracy_needs_both_roles_mostly_right():
    lines = [_line("anna", 0, 10), _line("bob", 10, 20)]
    right = _diarized(
        [(0, 9, "operator", "a"), (9, 12, "customer", "b"), (12, 20, "customer", "c")]
    )
    assert roles_correct(lines, right)
    swapped = _diarized([(0, 10, "customer", "a"), (10, 20, "operator", "b")])
    assert not roles_correct(lines, swapped)
    everyone_operator = _diarized([(0, 20, "operator", "a b")])
    assert not roles_correct(lines, everyone_operator)
    nothing_for_bob = _diarized([(0, 10, "operator", "a")])
    assert not roles_correct(lines, nothing_for_bob)


# --- the bundled set ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bundled():
    return load_speech_set()


def test_every_audio_file_has_labels(bundled):
    flacs = {p.stem for p in SPEECH_SET_DIR.glob("*.flac")}
    assert flacs == {item.id for item in bundled}
    assert {p.stem for p in SPEECH_SET_DIR.glob("*.rttm")} == flacs
    assert 8 <= len(bundled) <= 12
    size = sum(p.stat().st_size for p in SPEECH_SET_DIR.iterdir())
    assert size < 4.5 * 1024 * 1024


def test_rttm_turns_match_the_reference_lines(bundled):
    for item in bundled:
        lines = item.label.lines
        assert len(item.turns) == len(lines), item.id
        for turn, line in zip(item.turns, lines, strict=True):
            assert turn.file == item.id
            assert turn.speaker == line.speaker, item.id
            assert turn.start == pytest.approx(line.start, abs=0.002), item.id
            assert turn.end == pytest.approx(line.end, abs=0.002), item.id
        assert set(item.label.roles.values()) == {"operator", "customer"}, item.id


def test_labels_match_the_audio(bundled):
    for item in bundled:
        audio = decode_file(item.audio_path)
        label = item.label
        assert audio.probe.sample_rate == label.sample_rate, item.id
        assert audio.is_stereo == (label.channels == "stereo"), item.id
        assert audio.probe.duration_s == pytest.approx(label.duration_s, abs=0.05), item.id
        assert max(line.end for line in label.lines) <= label.duration_s, item.id
        for line in label.lines:
            # Each line is audible where the label puts it (on its role's channel if stereo).
            channel = 0
            if label.channel_map is not None:
                channel = 0 if label.channel_map.left == line.role else 1
            span = audio.channels[channel][int(line.start * 16000) : int(line.end * 16000)]
            assert float(np.sqrt(np.mean(span**2))) > 0.003, (item.id, line.text)


def test_the_set_covers_the_hard_cases(bundled):
    def overlaps(lines):
        return any(b.start < a.end for a, b in zip(lines, lines[1:], strict=False))

    def long_silence(lines):
        return any(b.start - a.end >= 5 for a, b in zip(lines, lines[1:], strict=False))

    labels = [item.label for item in bundled]
    assert sum(overlaps(x.lines) for x in labels) >= 3
    assert any(long_silence(x.lines) for x in labels)
    assert any(x.telephone_band and x.sample_rate == 8000 for x in labels)
    assert any(x.lines[0].role == "customer" for x in labels if x.channels == "mono")
    assert any(x.channel_map == ChannelMap(left="customer", right="operator") for x in labels)
    assert 2 <= sum(x.channels == "stereo" for x in labels) < len(labels) / 2
    backchannels = {"uh-huh.", "yes.", "right.", "okay.", "mm-hmm."}
    assert any(line.text.lower() in backchannels for x in labels for line in x.lines)
    assert any(
        not any("northwind" in line.text.lower() for line in x.lines if line.role == "operator")
        for x in labels
    )
    similar = [x for x in labels if len({v["espeak"] for v in x.voices.values()}) == 1]
    assert similar and all(
        abs(a["pitch"] - b["pitch"]) <= 10 for x in similar for a, b in [x.voices.values()]
    )


# --- errors and the CLI ------------------------------------------------------------------------
def test_missing_rttm_is_named(tmp_path):
    shutil.copy(SPEECH_SET_DIR / "sp01-baseline.json", tmp_path)
    shutil.copy(SPEECH_SET_DIR / "sp01-baseline.flac", tmp_path)
    with pytest.raises(SpeechSetError, match="sp01-baseline.rttm is missing"):
        load_speech_set(tmp_path)


def test_bad_rttm_line_is_named():
    with pytest.raises(SpeechSetError, match="x.rttm:2: not an RTTM SPEAKER line"):
        read_rttm("SPEAKER a 1 0.0 1.0 <NA> <NA> s <NA> <NA>\nSPEAKER a 1 zero\n", "x.rttm")


def test_eval_speech_on_a_bad_dir_is_a_one_line_error(tmp_path, capsys):
    assert main(["eval", "speech", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("callqa: error:") and "nowhere: not a folder" in err
    assert "\n" not in err
    assert main(["eval", "speech", str(tmp_path)]) == 2  # a folder without labels
    assert "no speech labels" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.model
def test_eval_speech_cli_on_two_bundled_files():
    files = ["sp01-baseline", "sp09-stereo-overlap"]
    result = subprocess.run(
        [sys.executable, "-m", "callqa.cli", "eval", "speech", "--backend", "pause", "--json"]
        + ["--files", *files],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    pause = report["backends"]["pause"]
    assert [f["file"] for f in pause["files"]] == files
    for row in pause["files"]:
        assert row["error"] is None
        assert 0 <= row["wer"] < 0.5  # espeak voices and tiny.en: most words come through
        assert 0 <= row["der"] <= 2 and row["der_collar"] <= row["der"]
        assert 0 <= row["word_speaker_accuracy"] <= 1
        assert row["transcribe_speed"] > 0 and row["diarize_speed"] > 0
    overall = pause["overall"]
    assert overall["files"] == 2 and overall["ref_words"] > 100
    assert overall["der_components"]["total"] > 50  # seconds of reference speech
    assert report["transcription"]["speed"] > 0
    text = format_speech_report(report)
    assert "Backend pause:" in text and "sp09-stereo-overlap" in text
    assert "overall" in text and "role accuracy" in text and "x" in text.splitlines()[-2]


@pytest.mark.slow
@pytest.mark.model
def test_a_real_phone_call_is_split_by_voice(tmp_path):
    """The one real two-speaker recording reachable here: pyannote.audio's bundled sample
    (a telephone conversation with reference turns and transcript). The offline default
    must beat the old pause heuristic by far, with WER no worse than the bare model."""
    pytest.importorskip("pyannote.audio", reason="pyannote.audio not installed (./dev pyannote)")
    from callqa.evaluation.speech import evaluate_speech, load_speech_set
    from callqa.speech.whisper import WhisperSettings

    out = tmp_path / "real"
    script = ROOT / "scripts" / "real_speech_sample.py"
    subprocess.run([sys.executable, str(script), str(out)], check=True, capture_output=True)
    items = load_speech_set(out)
    report = evaluate_speech(items, ["embedding", "pause"], WhisperSettings(), baseline=True)
    embedding = report["backends"]["embedding"]["overall"]
    pause = report["backends"]["pause"]["overall"]
    assert embedding["der_collar"] <= 0.10  # measured 0.032 (±0.25 s), 0.192 at collar 0
    assert embedding["word_speaker_accuracy"] >= 0.85  # measured 0.911
    assert embedding["der"] < pause["der"] - 0.2  # pause: 0.571
    assert embedding["wer"] <= report["transcription"]["bare_model_wer"]


def test_der_is_measured_on_the_segmenters_turns_where_the_backend_has_them():
    """Whisper's word timings would otherwise count as diarization error: the voice turns
    say who spoke when; the transcript's segments only stand in when there are none."""
    from callqa.evaluation.speech import hypothesis_annotation
    from callqa.speech.diarization import VoiceTurn

    segments = [
        DiarizedSegment(start=0.4, end=1.6, speaker="operator", text="Hello there.", speaker_id=1)
    ]
    diarized = DiarizedTranscript(
        method="mono-vad-resemblyzer",
        language="en",
        duration_s=3,
        segments=segments,
        metrics=conversation_metrics(segments, 3),
        voice_turns=[
            VoiceTurn(start=0.2, end=1.8, speaker_id=1, speaker="operator"),
            VoiceTurn(start=2.0, end=2.9, speaker_id=0, speaker="customer"),
        ],
    )
    turns = [
        (s.start, s.end, label)
        for s, _, label in hypothesis_annotation(diarized, "x").itertracks(yield_label=True)
    ]
    assert turns == [(0.2, 1.8, "speaker1"), (2.0, 2.9, "speaker0")]
    without = diarized.model_copy(update={"voice_turns": None})
    turns = [
        (s.start, s.end, label)
        for s, _, label in hypothesis_annotation(without, "x").itertracks(yield_label=True)
    ]
    assert turns == [(0.4, 1.6, "speaker1")]
