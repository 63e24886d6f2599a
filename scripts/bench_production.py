"""Production-path throughput against bare faster-whisper on the same audio (printed).

    .venv/bin/python scripts/bench_production.py [--calls 96] [--sensor-interval 2]

The production path is the one tests/test_production_path.py runs, with the same helpers:
throwaway PostgreSQL databases for the Dagster instance (the repository's dagster.yaml)
and the warehouse, `dagster-daemon run -w workspace.yaml` already running (as in
production: it starts first, and the clock waits for the sensor's first empty tick), then
`callqa stage`. The clock starts when staging is done and stops when the last analysis is
stored, so it includes the wait for the sensor's next tick (at most the interval), run
queueing and launch, every check and every warehouse and event-log write.

Bare faster-whisper: the same model and settings the pipeline uses (bundled tiny.en, int8,
CPU, beam 5, Silero VAD, word timestamps) transcribing each channel of the same recordings
in one warm process with CTranslate2's default threads, decoding each file with
faster-whisper's own `decode_audio(split_stereo=True)`: the floor callqa builds on.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the production-path helpers live in tests/

ADMIN_URL = os.environ.get(
    "CALLQA_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
CALLS = ROOT / "callqa" / "demo" / "calls"


def sample_calls(count: int, folder: Path) -> list[Path]:
    """`count` recordings: the bundled calls, cycled, each copy its own call."""
    bundled = sorted(CALLS.glob("call-*.flac"))
    out = []
    for i in range(count):
        source = bundled[i % len(bundled)]
        target = folder / f"bench-{i:03}-{source.name}"
        shutil.copyfile(source, target)
        out.append(target)
    return out


def audio_seconds(paths: list[Path]) -> float:
    from callqa.speech.audio import decode_file

    return sum(decode_file(p).probe.duration_s for p in paths)


def bare_whisper(paths: list[Path]) -> float:
    """Wall seconds for faster-whisper alone over every channel of `paths` (model warm),
    decoding included, as a user of faster-whisper would run it on stereo files."""
    from faster_whisper import WhisperModel, decode_audio

    from callqa.speech.whisper import resolve_model

    model = WhisperModel(resolve_model("tiny.en"), device="cpu", compute_type="int8")
    started = time.perf_counter()
    for path in paths:
        for samples in decode_audio(str(path), split_stereo=True):
            segments, _ = model.transcribe(
                samples, language="en", beam_size=5, vad_filter=True, word_timestamps=True
            )
            list(segments)  # transcription is lazy: consume it
    return time.perf_counter() - started


class WorkerMemory:
    """Samples the resident memory of run worker processes: the code server starts each run
    in a fresh interpreter (multiprocessing's spawn; `dagster api execute_run` elsewhere)."""

    def __init__(self) -> None:
        self.peak_mib: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> WorkerMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            for proc in Path("/proc").iterdir():
                if not proc.name.isdigit():
                    continue
                try:
                    cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
                    if b"execute_run" not in cmdline and b"spawn_main" not in cmdline:
                        continue
                    for line in (proc / "status").read_text().splitlines():
                        if line.startswith("VmRSS:"):
                            mib = int(line.split()[1]) / 1024
                            pid = int(proc.name)
                            self.peak_mib[pid] = max(self.peak_mib.get(pid, 0.0), mib)
                except (FileNotFoundError, ProcessLookupError, PermissionError):
                    continue


def production_path(paths: list[Path], sensor_interval_s: int, work: Path) -> dict:
    import dagster as dg

    from tests.production_path import (
        TENANT,
        Daemon,
        WarehouseProbe,
        callqa_cli,
        dagster_pg_env,
        open_instance,
        pg_databases,
        run_partitions,
        subprocess_env,
        wait_for,
    )

    with pg_databases(ADMIN_URL, "dagster", "warehouse") as (dagster_db, warehouse_db):
        home = work / "dagster_home"
        home.mkdir()
        (home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
        pg_env = dagster_pg_env(dagster_db)
        os.environ.update(pg_env)  # for the instance this process reads
        env = subprocess_env(
            DAGSTER_HOME=home,
            CALLQA_DEPLOYMENT="production",
            CALLQA_DATABASE_URL=warehouse_db,
            CALLQA_AUDIO_STORE=work / "audio",
            CALLQA_DATA_DIR=work / "data",
            CALLQA_SENSOR_INTERVAL_S=str(sensor_interval_s),
            CALLQA_AGGREGATES_INTERVAL_S="3600",  # aggregates are not what is measured
            **pg_env,
        )
        callqa_cli(env, "db-upgrade")
        probe = WarehouseProbe(warehouse_db)
        # In production the daemon is already running when calls arrive: start it first and
        # wait for the sensor's first (empty) tick, so its start-up is not counted.
        daemon = Daemon(env, work / "daemon.log")
        try:
            with WorkerMemory() as memory, open_instance(home) as instance:

                def sensor_ticked() -> bool:
                    ticks = [
                        t
                        for state in instance.all_instigator_state()
                        if state.name == "staged_calls_sensor"
                        for t in instance.get_ticks(state.instigator_origin_id, state.selector_id)
                    ]
                    return bool(ticks)

                wait_for(sensor_ticked, 120, lambda: daemon.tail(), poll_s=0.5)
                callqa_cli(env, "stage", *paths, "--tenant", TENANT)
                started = time.perf_counter()

                def done() -> bool:
                    staged = probe.staged()
                    return len(staged) == len(paths) and all(
                        r["status"] in ("processed", "failed") for r in staged
                    )

                wait_for(done, 1800, lambda: daemon.tail(), poll_s=0.5)
                wall_s = time.perf_counter() - started

                def runs_finished() -> bool:
                    return all(r.is_finished for r in instance.get_runs())

                wait_for(runs_finished, 120, lambda: daemon.tail(), poll_s=0.5)
                records = instance.get_run_records(dg.RunsFilter(job_name="process_call"))
                runs = [
                    {
                        "calls": len(run_partitions(instance, r.dagster_run)),
                        "queued_s": (r.start_time or 0) - r.create_timestamp.timestamp(),
                        "run_s": (r.end_time or 0) - (r.start_time or 0),
                    }
                    for r in records
                ]
            failed = [r for r in probe.staged() if r["status"] != "processed"]
        finally:
            daemon.stop()
            probe.dispose()
    return {
        "wall_s": wall_s,
        "runs": runs,
        "failed": failed,
        "worker_peak_mib": max(memory.peak_mib.values(), default=0.0),
        "workers": len(memory.peak_mib),
    }


def measure(calls: int, sensor_interval_s: int) -> list[str]:
    """Run both measurements and return the printed lines."""
    from callqa.settings import load_settings

    settings = load_settings()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "calls").mkdir()
        paths = sample_calls(calls, work / "calls")
        audio = audio_seconds(paths)
        bare_s = bare_whisper(paths)
        prod = production_path(paths, sensor_interval_s, work)
    runs = prod["runs"]
    prod_rate, bare_rate = audio / prod["wall_s"], audio / bare_s
    lines = [
        f"audio: {calls} stereo calls, {audio:.0f} s; {os.cpu_count()} CPU cores; "
        f"CALLQA_CALL_SLOTS={settings.call_slots}, CALLQA_CALLS_PER_RUN={settings.calls_per_run}, "
        f"whisper threads per call {settings.effective_whisper_threads}",
        f"bare faster-whisper (both channels, warm):   {bare_s:7.1f} s  "
        f"{bare_rate:5.2f} audio s / wall s",
        f"production path (daemon, sensor {sensor_interval_s} s, PG):  {prod['wall_s']:7.1f} s  "
        f"{prod_rate:5.2f} audio s / wall s",
        f"ratio production / bare: {prod_rate / bare_rate:.2f}",
        f"runs: {len(runs)} ({', '.join(str(r['calls']) for r in runs)} calls), "
        f"mean queued {sum(r['queued_s'] for r in runs) / len(runs):.1f} s, "
        f"mean run {sum(r['run_s'] for r in runs) / len(runs):.1f} s",
        f"per-call overhead over bare (wall difference / calls): "
        f"{(prod['wall_s'] - bare_s) / calls:+.2f} s",
        f"peak memory of one run worker: {prod['worker_peak_mib']:.0f} MiB "
        f"({prod['workers']} workers sampled)",
    ]
    if prod["failed"]:
        lines.append(f"FAILED calls: {prod['failed']}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--calls", type=int, default=96, help="calls to stage (default 96, about an hour of audio)"
    )
    parser.add_argument(
        "--sensor-interval", type=int, default=2, help="CALLQA_SENSOR_INTERVAL_S (default 2)"
    )
    args = parser.parse_args()
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    for line in measure(args.calls, args.sensor_interval):
        print(line, flush=True)


if __name__ == "__main__":
    main()
