"""The NumPy voice encoder against the real resemblyzer (torch + librosa).

tests/data/voice_encoder_reference.npz holds clips cut from the demo calls and what
resemblyzer 0.1.4 computed for them (scripts/make_voice_encoder_reference.py).
"""

from __future__ import annotations

import pickle
import struct

import numpy as np
import pytest

from callqa.speech import voice_encoder
from callqa.speech.voice_encoder import (
    VoiceEncoder,
    VoiceEncoderError,
    mel_filterbank,
    mel_spectrogram,
    read_state_dict,
    weights_path,
)
from tests.paths import ROOT

REFERENCE = ROOT / "tests" / "data" / "voice_encoder_reference.npz"


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(REFERENCE) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def clips(reference) -> list[np.ndarray]:
    n = len(reference["embeddings"])
    return [reference[f"clip_{i}"].astype(np.float32) / 32768.0 for i in range(n)]


def test_mel_spectrogram_matches_librosa(reference, clips):
    ours = mel_spectrogram(clips[0])
    theirs = reference["mel_0"]
    assert ours.shape == theirs.shape == (161, 40)  # 1 + 25600 // 160 centred frames
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-6)


def test_mel_filterbank_is_slaney_normalised():
    bank = mel_filterbank()
    assert bank.shape == (40, 201)
    assert (bank >= 0).all() and (bank.sum(axis=1) > 0).all()
    # Slaney norm: equal area per band, so wide high bands have low peaks.
    assert bank[0].max() > bank[-1].max()


def test_embeddings_match_resemblyzer(reference, clips):
    ours = VoiceEncoder.load().embed_batch(clips)
    theirs = reference["embeddings"]
    cosine = np.sum(ours * theirs, axis=1)
    assert cosine.min() > 0.9999, cosine
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_embed_and_batch_size_give_the_same_vectors(clips):
    encoder = VoiceEncoder.load()
    batched = encoder.embed_batch(clips, batch_size=64)
    one_at_a_time = encoder.embed_batch(clips, batch_size=1)
    np.testing.assert_allclose(batched, one_at_a_time, atol=1e-6)
    np.testing.assert_allclose(encoder.embed(clips[4]), batched[4], atol=1e-6)
    assert np.allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)


def test_same_voice_is_closer_than_other_voices(reference, clips):
    voices = list(reference["voices"])
    embeds = VoiceEncoder.load().embed_batch(clips)
    sims = embeds @ embeds.T
    checked = 0
    for i, voice in enumerate(voices):
        same = [sims[i, j] for j in range(len(voices)) if j != i and voices[j] == voice]
        other = [sims[i, j] for j in range(len(voices)) if voices[j] != voice]
        if same:  # the reference has two clips each of two voices, one of a third
            assert min(same) > max(other), (voice, same, other)
            checked += 1
    assert checked == 4


def test_load_is_cached():
    assert VoiceEncoder.load() is VoiceEncoder.load()


def test_empty_clip_is_refused():
    with pytest.raises(ValueError, match="clip 1 is empty"):
        VoiceEncoder.load().embed_batch([np.zeros(800, np.float32), np.zeros(0, np.float32)])


def test_missing_weights_name_the_fix(monkeypatch):
    monkeypatch.setattr(voice_encoder, "WEIGHTS_RESOURCE", "resemblyzer/no-such-file.pt")
    with pytest.raises(VoiceEncoderError, match="no-such-file.pt not found.*uv sync"):
        weights_path()


def _legacy_checkpoint(path, payload: bytes) -> None:
    """A legacy torch file whose object pickle is `payload`."""
    with path.open("wb") as f:
        pickle.dump(voice_encoder._LEGACY_MAGIC, f, protocol=2)
        pickle.dump(voice_encoder._LEGACY_PROTOCOL, f, protocol=2)
        pickle.dump({"little_endian": True}, f, protocol=2)
        f.write(payload)
        pickle.dump([], f, protocol=2)


def test_checkpoint_reader_refuses_other_callables(tmp_path):
    marker = tmp_path / "ran"
    payload = (
        b"\x80\x02cos\nsystem\nq\x00X"
        + struct.pack("<I", len(f"touch {marker}"))
        + f"touch {marker}".encode()
        + b"\x85R."
    )
    path = tmp_path / "evil.pt"
    _legacy_checkpoint(path, payload)
    with pytest.raises(VoiceEncoderError, match=r"refusing to load os\.system"):
        read_state_dict(path)
    assert not marker.exists()


def test_checkpoint_reader_rejects_a_non_checkpoint(tmp_path):
    path = tmp_path / "plain.pt"
    path.write_bytes(pickle.dumps({"model_state": {}}, protocol=2) * 5)
    with pytest.raises(VoiceEncoderError, match="not a legacy torch checkpoint"):
        read_state_dict(path)


def test_real_checkpoint_has_the_expected_tensors():
    state = read_state_dict(weights_path())
    assert state["lstm.weight_ih_l0"].shape == (1024, 40)
    assert state["lstm.weight_hh_l2"].shape == (1024, 256)
    assert state["linear.weight"].shape == (256, 256)
    assert all(a.dtype == np.float32 and np.isfinite(a).all() for a in state.values())
