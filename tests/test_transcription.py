"""Real faster-whisper (bundled tiny.en) on the bundled stereo calls."""

from callqa.audio import decode_file
from callqa.scoring.evidence import normalize
from callqa.speech import WhisperSettings, transcribe
from tests.conftest import DEMO_CALLS


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
