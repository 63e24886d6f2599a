"""Real faster-whisper (bundled tiny.en) on the bundled stereo calls."""

import pytest

from callqa.scoring.evidence import normalize
from callqa.speech.audio import decode_file
from callqa.speech.whisper import WhisperSettings, transcribe
from tests.paths import DEMO_CALLS

pytestmark = pytest.mark.model


def _word_recall(reference: str, hypothesis: str) -> float:
    ref, hyp = normalize(reference).split(), set(normalize(hypothesis).split())
    return sum(w in hyp for w in ref) / len(ref)


def test_stereo_call_transcribed_per_channel_with_word_timestamps(good_call):
    audio = decode_file(DEMO_CALLS / good_call["file"])
    result = transcribe(audio, WhisperSettings())
    assert [c.channel for c in result.channels] == [0, 1]
    assert result.language == "en"
    for channel in result.channels:
        assert channel.segments, f"channel {channel.channel} has no segments"
        assert channel.speech_s > 1
        for seg in channel.segments:
            assert 0 <= seg.start <= seg.end <= result.duration_s + 0.5
            assert seg.words and all(seg.start - 0.5 <= w.start <= w.end for w in seg.words)
    # Each channel carries its own speaker's words (operator left, customer right).
    for channel, speaker in ((0, "operator"), (1, "customer")):
        reference = " ".join(x["text"] for x in good_call["script"] if x["speaker"] == speaker)
        text = " ".join(s.text for s in result.channels[channel].segments)
        assert _word_recall(reference, text) > 0.7, (speaker, text)


@pytest.mark.slow
def test_mono_recording_gets_labelled_heuristic_roles(tmp_path, good_call):
    """A mono downmix still yields both roles, and says how they were assigned."""
    from callqa.cli import analyze_path
    from tests.audio_helpers import write_wav

    left, right = decode_file(DEMO_CALLS / good_call["file"]).channels
    mono = write_wav(tmp_path / "mono.wav", [(left + right) / 2])
    record = analyze_path(mono).record
    assert record.call.audio.channels == 1
    assert record.transcript.diarization == "mono-pause-heuristic"
    assert {s.speaker for s in record.transcript.segments} == {"operator", "customer"}
    assert record.transcript.segments[0].speaker == "operator"
