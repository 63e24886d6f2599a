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
