"""Peak memory of long recordings (printed, never asserted).

    uv run python scripts/bench_long_audio.py [--hours 1 8] [--skip-transcribe] [--skip-batched]

Builds stereo 16 kHz FLAC recordings of the given lengths by repeating the bundled demo
call (real speech on both channels, so FLAC compresses them as it would a call), then
runs each step in a fresh process and prints that process's peak resident memory
(ru_maxrss) and wall time:
- decode: callqa's streaming decode plus the whole-channel passes the pipeline makes
  (silence check, energy speech regions);
- decode (faster-whisper): faster_whisper.decode_audio on the same file, the old way;
- model: loading the bundled tiny.en alone, the floor of every transcription;
- decode + transcribe: the above plus faster-whisper over every channel, in windows
  (the first length only; about 4 minutes per audio hour on 2 cores);
- batched vs sequential: faster-whisper on a 1.6-minute call (two demo calls in a row),
  with batch_size 0 and 8 on this machine's CPU.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CALLS = ROOT / "callqa" / "demo" / "calls"


def build(path: Path, hours: float, sources: list[Path]) -> Path:
    """A stereo FLAC of `hours` made of the demo calls back to back, encoded a piece at a
    time so building it needs no more memory than one call."""
    import av
    import numpy as np

    from callqa.speech.audio import decode_file

    pieces = []
    for source in sources:
        left, right = decode_file(source).channels
        pieces.append((np.stack([left, right], axis=1) * 32767).astype(np.int16))
    total, done, i = int(hours * 3600 * 16000), 0, 0
    with av.open(str(path), "w", format="flac") as out:
        stream = out.add_stream("flac", rate=16000, layout="stereo")
        while done < total:
            block = pieces[i % len(pieces)][: total - done]
            frame = av.AudioFrame.from_ndarray(block.reshape(1, -1), format="s16", layout="stereo")
            frame.sample_rate, frame.pts = 16000, done
            for packet in stream.encode(frame):
                out.mux(packet)
            done, i = done + len(block), i + 1
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def child(step: str, path: str) -> dict:
    """One step in this (fresh) process; returns its figures."""
    started = time.perf_counter()
    figures: dict = {}
    if step == "decode-old":
        from faster_whisper import decode_audio

        left, right = decode_audio(path, 16000, split_stereo=True)
        figures["audio_s"] = round(len(left) / 16000, 1)
    elif step == "model":
        from callqa.speech.whisper import load_model

        load_model("tiny.en", "cpu", "int8", 0)
    elif step in ("decode", "transcribe"):
        from callqa.calls.service import decode_recording
        from callqa.speech.audio import speech_regions

        decoded = decode_recording(Path(path).read_bytes(), path, max_duration_s=None)
        regions = [speech_regions(c) for c in decoded.channels]
        figures["audio_s"] = decoded.probe.duration_s
        figures["speech_regions"] = sum(len(r) for r in regions)
        figures["file_backed"] = any(hasattr(c, "_mmap") for c in decoded.channels)
        if step == "transcribe":
            from callqa.speech.whisper import WhisperSettings, transcribe

            decoded_s = time.perf_counter() - started
            result = transcribe(decoded, WhisperSettings())
            figures["decode_s"] = round(decoded_s, 1)
            figures["segments"] = len(result.segments)
            figures["last_segment_end_s"] = result.segments[-1].end if result.segments else 0
    elif step.startswith("batch"):
        import numpy as np

        from callqa.speech.audio import decode_file
        from callqa.speech.whisper import WhisperSettings, load_model, transcribe_channel

        sources = [CALLS / "call-001.flac", CALLS / "call-003.flac"]
        channel = np.concatenate([decode_file(p).channels[0] for p in sources])
        load_model("tiny.en", "cpu", "int8", 0)
        settings = WhisperSettings(batch_size=int(step.removeprefix("batch")))
        transcribe_channel(channel[: 16000 * 5], 0, settings)  # warm-up
        started = time.perf_counter()
        result = transcribe_channel(channel, 0, settings)
        figures["audio_s"] = round(len(channel) / 16000, 1)
        figures["words"] = sum(len(s.words) for s in result.segments)
    figures["wall_s"] = round(time.perf_counter() - started, 1)
    # ru_maxrss is in KiB on Linux.
    figures["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return figures


def run(step: str, path: Path | str = "") -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", step, str(path)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hours", type=float, nargs="+", default=[1.0, 8.0])
    parser.add_argument("--skip-transcribe", action="store_true")
    parser.add_argument("--skip-batched", action="store_true")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    sources = [CALLS / "call-001.flac", CALLS / "call-003.flac", CALLS / "call-004.flac"]
    with tempfile.TemporaryDirectory(prefix="callqa-bench-") as tmp:
        print(f"model only: {run('model')}")
        for hours in args.hours:
            path = build(Path(tmp) / f"{hours:g}h.flac", hours, sources)
            size = path.stat().st_size / 1e6
            print(f"{hours:g} h stereo FLAC ({size:.0f} MB)")
            print(f"  decode (streaming):      {run('decode', path)}")
            if hours <= 2:  # the old way needs ~1.2 GB per stereo hour
                print(f"  decode (faster-whisper): {run('decode-old', path)}")
            if hours == args.hours[0] and not args.skip_transcribe:
                print(f"  decode + transcribe:     {run('transcribe', path)}")
            path.unlink()
    if not args.skip_batched:
        for size in (0, 8):
            print(f"1.6-min channel, batch_size={size}: {run(f'batch{size}')}")


if __name__ == "__main__":
    main()
