"""Make tests/data/voice_encoder_reference.npz with the REAL resemblyzer (torch + librosa).

callqa re-implements resemblyzer's voice encoder in NumPy (callqa/speech/voice_encoder.py);
this script records what the original computes, so tests/test_voice_encoder.py can check the
copy against it without torch. It is NOT run with the project environment (which has no
torch, librosa or webrtcvad) but with a throwaway one:

    python3 -m venv /tmp/rz && /tmp/rz/bin/pip install torch resemblyzer librosa soundfile \
        "setuptools<81"   # webrtcvad, imported by resemblyzer, still needs pkg_resources
    /tmp/rz/bin/python scripts/make_voice_encoder_reference.py

Clips are cut from the stereo demo calls (left = operator, right = customer) at lines the
manifest names; they are stored as int16 so the test feeds both sides identical samples.
"""

from __future__ import annotations

import importlib.metadata
import json
import sys
from pathlib import Path

import librosa
import numpy as np
import soundfile
import torch
from resemblyzer import VoiceEncoder
from resemblyzer.audio import wav_to_mel_spectrogram

ROOT = Path(__file__).resolve().parents[1]
CALLS = ROOT / "callqa" / "demo" / "calls"
OUT = ROOT / "tests" / "data" / "voice_encoder_reference.npz"
SR = 16_000

# (call, role, script line, seconds): the voice is in the manifest's `voices`.
CLIPS = [
    ("call-001", "operator", 0, 1.6),  # en-us+f2
    ("call-003", "operator", 2, 1.6),  # en-us+f2 again, another call and sentence
    ("call-001", "customer", 0, 1.6),  # en-gb-x-rp+m2
    ("call-002", "operator", 0, 1.6),  # en-us+m1
    ("call-004", "operator", 0, 2.6),  # en-us+m1 again; 2.6 s = two partials
]


def cut(manifest: dict, call: str, role: str, line: int, seconds: float) -> tuple[np.ndarray, str]:
    entry = next(m for m in manifest if m["external_id"] == call)
    turn = [t for t in entry["script"] if t["speaker"] == role][line]
    audio, rate = soundfile.read(CALLS / entry["file"], dtype="int16", always_2d=True)
    if rate != SR:
        sys.exit(f"{entry['file']}: {rate} Hz; the reference needs {SR} Hz audio")
    start = int(round(turn["start_s"] * SR))
    clip = audio[start : start + int(seconds * SR), entry["channels"][role]]
    return clip.copy(), entry["voices"][role]


def main() -> None:
    manifest = json.loads((CALLS / "manifest.json").read_text())
    encoder = VoiceEncoder("cpu", verbose=False)
    arrays: dict[str, np.ndarray] = {}
    voices = []
    embeddings = []
    for n, spec in enumerate(CLIPS):
        clip, voice = cut(manifest, *spec)
        wav = clip.astype(np.float32) / 32768.0
        arrays[f"clip_{n}"] = clip
        # The raw network on the raw clip (no volume normalisation, no silence trimming):
        # that is what the NumPy copy must reproduce; preprocessing is the caller's choice.
        embeddings.append(encoder.embed_utterance(wav))
        voices.append(voice)
        if n == 0:
            arrays["mel_0"] = wav_to_mel_spectrogram(wav)
    arrays["embeddings"] = np.stack(embeddings).astype(np.float32)
    arrays["voices"] = np.array(voices)
    arrays["versions"] = np.array(
        [
            f"resemblyzer {importlib.metadata.version('resemblyzer')}",
            f"torch {torch.__version__}",
            f"librosa {librosa.__version__}",
        ]
    )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, **arrays)
    print(f"{OUT}: {OUT.stat().st_size / 1024:.0f} KiB, voices {voices}")


if __name__ == "__main__":
    main()
