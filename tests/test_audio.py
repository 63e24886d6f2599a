import numpy as np
import pytest

from callqa.errors import AudioError
from callqa.speech.audio import decode_bytes, decode_file, speech_regions
from tests.audio_helpers import SR, noise, silence, write_wav
from tests.paths import DEMO_CALLS


def test_decodes_bundled_stereo_call(good_call):
    decoded = decode_file(DEMO_CALLS / good_call["file"])
    probe = decoded.probe
    assert decoded.is_stereo and probe.channels == 2
    assert probe.codec == "flac" and probe.sample_rate == 16000
    assert 20 < probe.duration_s < 60
    assert len(probe.sha256) == 64
    assert len(decoded.channels[0]) == len(decoded.channels[1])
    assert len(decoded.channels[0]) == pytest.approx(probe.duration_s * SR, abs=SR / 1000)


def test_speech_regions_follow_energy():
    samples = np.concatenate([silence(1.0), noise(2.0), silence(1.5), noise(1.0)])
    regions = speech_regions(samples)
    assert len(regions) == 2
    (s1, e1), (s2, e2) = regions
    assert s1 == pytest.approx(1.0, abs=0.05) and e1 == pytest.approx(3.0, abs=0.05)
    assert s2 == pytest.approx(4.5, abs=0.05) and e2 == pytest.approx(5.5, abs=0.05)
    assert speech_regions(silence(3.0)) == []


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_bytes(b""), "file is empty"),
        (lambda p: p.write_text("this is not audio at all " * 50), "not a readable audio file"),
        (lambda p: write_wav(p, [silence(0)]), "zero samples"),
        (lambda p: write_wav(p, [noise(1, seed=i) for i in range(4)]), "4 channels"),
    ],
    ids=["empty", "text", "zero-samples", "four-channels"],
)
def test_bad_recordings_name_the_file_and_problem(tmp_path, make, message):
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(AudioError, match=message) as err:
        decode_file(path)
    assert str(path) in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(AudioError, match="file not found"):
        decode_file(tmp_path / "nope.wav")


def test_truncated_stereo_flac_is_rejected(good_call):
    data = (DEMO_CALLS / good_call["file"]).read_bytes()[:200]
    with pytest.raises(AudioError, match="call-x: truncated or corrupt"):
        decode_bytes(data, "call-x")


@pytest.mark.parametrize(
    ("suffix", "codec", "rate"), [(".mp3", "libmp3lame", 16000), (".ogg", "libopus", 48000)]
)
def test_compressed_stereo_formats_decode(tmp_path, good_call, suffix, codec, rate):
    from tests.audio_helpers import transcode

    source = DEMO_CALLS / good_call["file"]
    path = transcode(source, tmp_path / f"call{suffix}", codec, rate)
    decoded = decode_file(path)
    assert decoded.is_stereo
    assert decoded.probe.duration_s == pytest.approx(decode_file(source).probe.duration_s, abs=0.2)
    # The channels stay apart: the operator's channel is loud where the customer's is quiet.
    left, right = decoded.channels
    assert speech_regions(left) != speech_regions(right)


# --- streaming decode, long recordings, clipping, 8 kHz ---------------------------------


def _write_flac(path, channels, sample_rate=SR):
    """FLAC from float arrays in [-1, 1], encoded a minute at a time (hours stay small)."""
    import av

    layout = "stereo" if len(channels) == 2 else "mono"
    length = max(len(c) for c in channels)
    with av.open(str(path), "w", format="flac") as out:
        stream = out.add_stream("flac", rate=sample_rate, layout=layout)
        for at in range(0, length, sample_rate * 60):
            block = np.zeros((min(sample_rate * 60, length - at), len(channels)), np.int16)
            for i, c in enumerate(channels):
                piece = c[at : at + len(block)]
                block[: len(piece), i] = (np.clip(piece, -1, 1) * 32767).astype(np.int16)
            frame = av.AudioFrame.from_ndarray(block.reshape(1, -1), format="s16", layout=layout)
            frame.sample_rate, frame.pts = sample_rate, at
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def _tone(seconds, freq=440.0, level=0.2, sr=SR):
    return (level * np.sin(2 * np.pi * freq * np.arange(int(sr * seconds)) / sr)).astype(np.float32)


def test_streaming_decode_equals_faster_whisper_decode(manifest):
    """The frame-by-frame decoder gives exactly the samples of faster-whisper's own
    whole-file decode_audio (the decoder the transcripts were tuned on)."""
    import io

    from faster_whisper import decode_audio

    for call in manifest:
        data = (DEMO_CALLS / call["file"]).read_bytes()
        decoded = decode_bytes(data, call["file"])
        reference = decode_audio(io.BytesIO(data), SR, split_stereo=True)
        for ours, theirs in zip(decoded.channels, reference, strict=True):
            assert ours.dtype == np.float32
            np.testing.assert_array_equal(ours, theirs, err_msg=call["file"])


def test_long_channels_are_file_backed_with_the_same_samples(monkeypatch, good_call):
    """Past IN_MEMORY_S a channel is a read-only memmap over a temporary file; the samples
    and everything computed from them are the same as in memory."""
    from callqa.speech import audio

    path = DEMO_CALLS / good_call["file"]
    in_memory = decode_file(path)
    monkeypatch.setattr(audio, "IN_MEMORY_S", 10)
    spilled = decode_file(path)
    for memory, mapped in zip(in_memory.channels, spilled.channels, strict=True):
        assert isinstance(mapped, np.memmap) and not isinstance(memory, np.memmap)
        assert not mapped.flags.writeable
        np.testing.assert_array_equal(memory, mapped)
        assert speech_regions(mapped) == speech_regions(memory)
        assert audio.peak(mapped) == audio.peak(memory) > 0.1
        pieces = list(audio.iter_chunks(mapped, SR * 7))
        np.testing.assert_array_equal(np.concatenate(pieces), memory)
        assert {len(p) for p in pieces[:-1]} == {SR * 7}


def test_header_declaring_too_long_is_refused_before_decoding(tmp_path):
    """A FLAC of 5 h of silence at 8 kHz is 3 MB; cut to its first 64 KB its header still
    declares 5 h, so only a check of the header, before decoding, can name that length
    (decoding first would report a truncated file)."""
    path = _write_flac(tmp_path / "long.flac", [np.zeros(5 * 3600 * 8000, np.float32)], 8000)
    assert path.stat().st_size < 5_000_000
    data = path.read_bytes()[:65536]
    with pytest.raises(AudioError) as err:
        decode_bytes(data, "night-shift.flac")
    assert str(err.value) == (
        "night-shift.flac: the header declares 5:00:00; "
        "the maximum is 4:00:00 (CALLQA_MAX_AUDIO_S=14400)"
    )
    with pytest.raises(AudioError, match="header declares 5:00:00; the maximum is 1:00:00"):
        decode_bytes(data, "night-shift.flac", max_duration_s=3600)
    # Without a limit the header check is off and the cut file is seen as truncated.
    with pytest.raises(AudioError, match="truncated or corrupt"):
        decode_bytes(data, "night-shift.flac", max_duration_s=None)


def test_undeclared_length_is_limited_while_decoding(tmp_path):
    """A FLAC whose header leaves the sample count open (allowed by the format) declares
    no duration; the limit is then enforced as the samples come out of the decoder."""
    path = _write_flac(tmp_path / "open.flac", [noise(5.0)])
    data = bytearray(path.read_bytes())
    assert data[:4] == b"fLaC"
    data[21] &= 0xF0  # STREAMINFO's 36-bit total sample count: 0 = unknown
    data[22:26] = b"\0\0\0\0"
    data = bytes(data)
    assert decode_bytes(data, "open.flac").probe.declared_duration_s is None
    with pytest.raises(AudioError) as err:
        decode_bytes(data, "open.flac", max_duration_s=2.0)
    assert "open.flac: 2.0 s decoded and more remains; the maximum is 2.0 s" in str(err.value)
    assert decode_bytes(data, "open.flac", max_duration_s=5.5).probe.duration_s == 5.0


def test_8khz_telephony_audio_is_resampled_to_16khz(tmp_path):
    path = write_wav(tmp_path / "phone.wav", [_tone(3.0, 440, sr=8000)], sample_rate=8000)
    decoded = decode_file(path)
    assert decoded.probe.sample_rate == 8000 and decoded.probe.duration_s == 3.0
    (samples,) = decoded.channels
    assert len(samples) == 3 * SR
    spectrum = np.abs(np.fft.rfft(samples[SR : 2 * SR]))
    assert np.argmax(spectrum) == pytest.approx(440, abs=1)  # 1 Hz bins over one second
    assert float(np.max(np.abs(samples))) == pytest.approx(0.2, abs=0.01)


def test_clipping_is_measured_and_flagged_not_failed(tmp_path, good_call):
    clean = decode_file(DEMO_CALLS / good_call["file"]).probe
    assert clean.clipped_share == 0.0 and clean.warnings == []
    # A tone driven 50 % past full scale: write_wav clips it, about a third of it flat.
    path = write_wav(tmp_path / "hot.wav", [_tone(2.0, 300, level=1.5)])
    probe = decode_file(path).probe
    assert 0.3 < probe.clipped_share < 0.6
    (warning,) = probe.warnings
    assert warning.startswith(f"{probe.clipped_share:.1%} of the audio samples are clipped")
    # Just under the threshold is not flagged.
    mild = np.concatenate([silence(9.0), _tone(1.0, 300, level=0.5)])
    mild[:10] = 1.0  # ten full-scale samples in 160 000
    assert decode_file(write_wav(tmp_path / "mild.wav", [mild])).probe.warnings == []


def test_pause_windows_cut_in_pauses():
    from callqa.speech.audio import pause_windows

    # 25 s talk spurts with 1 s pauses: windows of at most 60 s must end inside a pause.
    spurt = np.concatenate([noise(25.0), silence(1.0)])
    samples = np.tile(spurt, 8)  # 208 s
    windows = pause_windows(samples, window_s=60, search_s=30)
    assert windows[0][0] == 0 and windows[-1][1] == len(samples)
    assert all(a[1] == b[0] for a, b in zip(windows, windows[1:], strict=False))
    assert all(0 < stop - start <= 60 * SR for start, stop in windows)
    for _, cut in windows[:-1]:
        assert cut % len(spurt) >= 25 * SR, f"cut at {cut / SR:.2f} s is not in a pause"
    assert pause_windows(samples[: 50 * SR], window_s=60) == [(0, 50 * SR)]


def test_voice_seconds_tells_speech_from_music(good_call):
    from callqa.speech.audio import voice_seconds

    left, _ = decode_file(DEMO_CALLS / good_call["file"]).channels
    speech = voice_seconds(left)
    assert 10 < speech < len(left) / SR
    # Counting stops at the end of the first minute that reaches `enough`.
    three_calls = np.concatenate([left] * 3)
    assert 1.0 <= voice_seconds(three_calls, enough=1.0) < voice_seconds(three_calls)
    chord = sum(_tone(10.0, f) for f in (261.6, 329.6, 392.0))
    assert voice_seconds(chord) == 0.0
    assert voice_seconds(silence(5.0)) == 0.0
