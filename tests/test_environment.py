"""Third-party libraries callqa loads leave nothing behind in the user's home."""

import os
import subprocess
import sys

from tests.paths import ROOT

VAD = (
    "import numpy as np; from faster_whisper.vad import get_speech_timestamps; "
    "get_speech_timestamps(np.zeros(16000, dtype='float32'))"
)


def _run_vad(home, prelude: str) -> None:
    env = {
        k: v for k, v in os.environ.items() if k not in ("ORT_DISABLE_TELEMETRY", "XDG_CACHE_HOME")
    }
    env["HOME"] = str(home)
    subprocess.run([sys.executable, "-c", prelude + VAD], env=env, cwd=ROOT, check=True)


def test_onnxruntime_writes_no_telemetry_queue(tmp_path):
    """onnxruntime (Silero VAD inside faster-whisper) keeps a telemetry database under
    ~/.cache/Microsoft unless told not to; every callqa process tells it not to."""
    # Whether a bare run writes the queue depends on the onnxruntime build and environment
    # (it did on one run of this machine and not on the next), so no control run: the test
    # checks that callqa switches telemetry off before onnxruntime loads and writes nothing.
    home = tmp_path / "home"
    _run_vad(
        home,
        "import os, callqa; assert os.environ['ORT_DISABLE_TELEMETRY'] == '1'; ",
    )
    assert not (home / ".cache").exists()
