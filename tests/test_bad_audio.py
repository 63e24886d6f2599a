"""Bad audio gets one clear outcome and nothing crashes: silence, music only, clipping,
8 kHz telephony audio, and recordings with too little speech to score."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from callqa.calls.service import decode_recording, require_speech
from callqa.errors import AudioError
from callqa.speech.audio import decode_file
from callqa.speech.transcript import ChannelTranscript, Segment, Transcript
from tests.audio_helpers import SR, silence, transcode, write_wav
from tests.paths import DEMO_CALLS


def _chords(seconds: float) -> np.ndarray:
    """Music without a voice: a C, F and G major chord in turn, half a second each."""
    t = np.arange(int(SR * 0.5)) / SR
    chords = [(261.6, 329.6, 392.0), (349.2, 440.0, 523.3), (392.0, 493.9, 587.3)]
    bars = [sum(np.sin(2 * np.pi * f * t) for f in c) * 0.1 * np.hanning(len(t)) for c in chords]
    return np.resize(np.concatenate(bars), int(SR * seconds)).astype(np.float32)


def _transcript(*texts: str, duration: float = 30.0) -> Transcript:
    segments = [
        Segment(start=i * 2.0, end=i * 2.0 + 1.5, text=text) for i, text in enumerate(texts)
    ]
    return Transcript(
        model="tiny.en",
        duration_s=duration,
        channels=[ChannelTranscript(channel=0, segments=segments)],
    )


def test_silent_recording_is_rejected(tmp_path):
    path = write_wav(tmp_path / "dead-line.wav", [silence(3.0), silence(3.0)])
    with pytest.raises(AudioError, match=r"dead-line.wav: recording is silent"):
        decode_recording(path.read_bytes(), "dead-line.wav")


def test_guard_passes_a_real_call_and_reports_its_voice(good_call):
    decoded = decode_file(DEMO_CALLS / good_call["file"])
    transcript = _transcript("Good morning, this is Anna from Fibernet.", "How can I help?")
    assert 1.0 <= require_speech(decoded, transcript, "call-001") < 60
    # The minimum is the preset's: more voice than the call has is too little.
    with pytest.raises(AudioError) as err:
        require_speech(decoded, transcript, "call-001", min_speech_s=60)
    message = str(err.value)
    assert message.startswith("call-001: too little speech to score (")
    assert message.endswith("s; minimum 60.0 s)")


def test_only_stock_phrases_is_too_little_speech(good_call):
    """Voice enough, but all the speech model wrote is what it writes on noise."""
    decoded = decode_file(DEMO_CALLS / good_call["file"])
    with pytest.raises(AudioError) as err:
        require_speech(decoded, _transcript("Thank you.", "you"), "call-001")
    assert str(err.value).startswith(
        "call-001: too little speech to score (only 'Thank you.', 'you': what the speech model"
    )


def test_music_only_has_no_speech_even_if_words_were_written(tmp_path):
    """VAD finds no voice in chords, whatever text a model wrote for them."""
    path = write_wav(tmp_path / "hold-music.wav", [_chords(12.0)])
    decoded = decode_recording(path.read_bytes(), "hold-music.wav")
    with pytest.raises(AudioError) as err:
        require_speech(decoded, _transcript("♪ La la la ♪"), "hold-music.wav")
    assert str(err.value) == (
        "hold-music.wav: no speech found in 12.0 s of audio (voice activity detection finds "
        "no voice: music, tones or noise only)"
    )


def test_clipped_recording_is_processed_with_a_warning(tmp_path, good_call, caplog):
    left, right = decode_file(DEMO_CALLS / good_call["file"]).channels
    path = write_wav(tmp_path / "hot.wav", [left * 8, right * 8])  # clipped by the writer
    with caplog.at_level(logging.WARNING, logger="callqa.calls.service"):
        decoded = decode_recording(path.read_bytes(), "hot.wav")
    # Half the call is the other party's silence: a few tenths of a percent clip.
    assert 0.001 < decoded.probe.clipped_share < 0.05
    assert any(
        r.getMessage().startswith("hot.wav: ") and "samples are clipped" in r.getMessage()
        for r in caplog.records
    )


@pytest.mark.model
def test_music_only_call_fails_with_no_speech_found(tmp_path):
    """End to end as `callqa analyze` runs it: hold music is not a call to score."""
    from callqa.cli import analyze_path

    path = write_wav(tmp_path / "hold-music.wav", [_chords(20.0), _chords(20.0)])
    with pytest.raises(AudioError, match=r"hold-music.wav: no speech found in 20.0 s of audio"):
        analyze_path(path)


@pytest.mark.model
def test_music_without_the_vad_filter_still_has_no_speech(tmp_path):
    from callqa.speech.whisper import WhisperSettings, transcribe

    path = write_wav(tmp_path / "hold-music.wav", [_chords(20.0)])
    decoded = decode_recording(path.read_bytes(), "hold-music.wav")
    transcript = transcribe(decoded, WhisperSettings(vad_filter=False))
    with pytest.raises(AudioError, match=r"hold-music.wav: no speech found in 20.0 s of audio"):
        require_speech(decoded, transcript, "hold-music.wav")


@pytest.mark.model
def test_a_fifth_of_a_second_of_speech_is_too_little_to_score(tmp_path, good_call):
    """0.2 s from the middle of a word: Whisper alone makes 'Thank you.' of it."""
    from callqa.cli import analyze_path

    left, _ = decode_file(DEMO_CALLS / good_call["file"]).channels
    start = int(16.52 * SR)
    path = write_wav(tmp_path / "fragment.wav", [left[start : start + SR // 5]])
    with pytest.raises(AudioError) as err:
        analyze_path(path)
    assert str(err.value) == f"{path}: too little speech to score (0.2 s; minimum 1.0 s)"


@pytest.mark.model
def test_8khz_telephony_call_is_transcribed(tmp_path, good_call):
    """A call at the telephone rate (8 kHz) is resampled and transcribed like the original."""
    from callqa.scoring.evidence import normalize
    from callqa.speech.whisper import WhisperSettings, transcribe

    path = transcode(DEMO_CALLS / good_call["file"], tmp_path / "call.wav", "pcm_s16le", 8000)
    decoded = decode_recording(path.read_bytes(), "call.wav")
    assert decoded.probe.sample_rate == 8000 and decoded.is_stereo
    transcript = transcribe(decoded, WhisperSettings())
    assert require_speech(decoded, transcript, "call.wav") >= 1.0
    reference = normalize(
        " ".join(x["text"] for x in good_call["script"] if x["speaker"] == "operator")
    ).split()
    heard = set(normalize(" ".join(s.text for s in transcript.channels[0].segments)).split())
    assert sum(w in heard for w in reference) / len(reference) > 0.7
