"""Staging recordings: call ids that never collapse two files into one, collisions that are
reported instead of dropped, and `callqa stage` run by several processes at once."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from callqa.calls.keys import external_id_from_name, make_key
from callqa.crm.file_drop import CallIdCollision, StagedFile, stage_each, stage_files
from callqa.storage.warehouse import Warehouse

# Pairs of names that the old cleaning collapsed onto one id, and that cleaned id.
CLASHING_NAMES = [
    ("call 1", "call_1", "call-1"),
    ("звонок", "通话", "call"),
    ("a__b", "a b", "a-b"),
    ("Grüße", "Gr??e", "Gr-e"),
]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request, tmp_path) -> str:
    """A fresh, not yet migrated database of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fresh' / 'warehouse.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def wh(url):
    warehouse = Warehouse.from_url(url)
    yield warehouse
    warehouse.dispose()


def recordings(folder: Path, *names: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        path = folder / name
        path.write_bytes(b"RIFF not really audio: staging only reads the name")
        paths.append(path)
    return paths


def run_stage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "callqa.cli", "stage", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", **env},
    )


def stage_lines(stdout: str) -> list[tuple[str, str, str]]:
    """`callqa stage` stdout: one tab-separated (partition key, outcome, path) per file."""
    return [tuple(line.split("\t")) for line in stdout.splitlines()]


# ids --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("first", "second", "prefix"), CLASHING_NAMES)
def test_names_that_clean_alike_get_different_stable_ids(first, second, prefix):
    a, b = external_id_from_name(first), external_id_from_name(second)
    assert a != b
    assert (a, b) == (external_id_from_name(first), external_id_from_name(second))
    for cleaned in (a, b):
        assert make_key("demo", cleaned).external_id == cleaned
        assert re.fullmatch(rf"{re.escape(prefix)}-[0-9a-f]{{8}}", cleaned), cleaned


def test_valid_ids_are_kept_and_long_names_stay_valid():
    for name in ("call-001", "2024.05.01-17.30", "X", "a" * 128):
        assert external_id_from_name(name) == name
    long_a, long_b = (external_id_from_name("x" * 200 + s) for s in ("a", "b"))
    assert long_a != long_b and len(long_a) == len(long_b) == 128
    assert make_key("demo", long_a).external_id == long_a


# stage_files --------------------------------------------------------------------------
def test_files_whose_names_clean_alike_are_all_staged(wh, tmp_path):
    paths = recordings(
        tmp_path / "drop", *(f"{n}.wav" for *pair, _ in CLASHING_NAMES for n in pair)
    )
    files = [StagedFile(path=p) for p in paths]
    first = stage_each(wh, "demo", files)
    assert [r.status for r in first] == ["staged"] * len(paths)
    keys = [r.key for r in first]
    assert len(set(keys)) == len(paths)
    rows = wh.staged_calls("demo")
    assert sorted((r["external_id"], r["source_uri"]) for r in rows) == sorted(
        (k.external_id, p.resolve().as_uri()) for k, p in zip(keys, paths, strict=True)
    )
    # Staging the same files again is idempotent: same ids, nothing new.
    assert stage_files(wh, "demo", files) == keys
    again = stage_each(wh, "demo", files)
    assert [(r.key, r.status) for r in again] == [(k, "already staged") for k in keys]
    assert len(wh.staged_calls("demo")) == len(paths)


def test_a_taken_call_id_is_a_collision_naming_both_files(wh, tmp_path):
    [first] = recordings(tmp_path / "a", "rec.wav")
    [second] = recordings(tmp_path / "b", "rec.wav")
    [other] = recordings(tmp_path / "b", "other.wav")
    stage_files(wh, "demo", [StagedFile(path=first)])
    files = [StagedFile(path=second), StagedFile(path=other)]
    with pytest.raises(CallIdCollision) as excinfo:
        stage_files(wh, "demo", files)
    message = str(excinfo.value)
    assert str(first) in message and str(second) in message and "demo__rec" in message
    assert "\n" not in message
    # The first file keeps the id; the file without a clash is still staged.
    assert wh.staged_call("demo", "rec")["source_uri"] == first.resolve().as_uri()
    assert wh.staged_call("demo", "other")["source_uri"] == other.resolve().as_uri()
    results = stage_each(wh, "demo", files)
    assert [(r.status, r.existing_uri) for r in results] == [
        ("collision", first.resolve().as_uri()),
        ("already staged", other.resolve().as_uri()),
    ]
    # Explicit ids (CRM, manifests) collide the same way within one batch.
    with pytest.raises(CallIdCollision, match="x-1"):
        stage_files(wh, "demo", [StagedFile(path=p, external_id="x-1") for p in (first, second)])
    assert wh.staged_call("demo", "x-1")["source_uri"] == first.resolve().as_uri()


def test_concurrent_stage_call_inserts_each_call_once(wh):
    """Threads staging the same calls at once: no unique violation, exactly one True each."""
    n_threads, ids = 6, [f"c-{i}" for i in range(25)]
    barrier = threading.Barrier(n_threads)

    def stage_all(n: int) -> list[bool]:
        barrier.wait()
        return [
            wh.stage_call(tenant="demo", external_id=i, source="file", source_uri=f"file:///{i}")
            for i in (ids if n % 2 else reversed(ids))
        ]

    with ThreadPoolExecutor(n_threads) as pool:
        results = list(pool.map(stage_all, range(n_threads)))
    for n, got in enumerate(results):
        if not n % 2:
            got.reverse()
    assert [sum(col) for col in zip(*results, strict=True)] == [1] * len(ids)
    assert sorted(r["external_id"] for r in wh.staged_calls("demo")) == sorted(ids)


# callqa stage -------------------------------------------------------------------------
@pytest.mark.slow
def test_cli_stages_files_whose_names_clean_alike_and_says_so(tmp_path):
    paths = recordings(tmp_path / "drop", "call 1.wav", "call_1.wav", "звонок.wav", "通话.wav")
    env = {"CALLQA_DATA_DIR": str(tmp_path / "data")}
    result = run_stage(str(tmp_path / "drop"), env=env)
    assert result.returncode == 0, result.stderr
    lines = stage_lines(result.stdout)
    assert sorted(path for _, _, path in lines) == sorted(str(p.resolve()) for p in paths)
    assert {outcome for _, outcome, _ in lines} == {"staged"}
    keys = [key for key, _, _ in lines]
    assert len(set(keys)) == 4
    assert "staged 4 new call(s), 0 already staged" in result.stderr
    wh = Warehouse.from_url(f"sqlite:///{tmp_path / 'data' / 'warehouse.db'}")
    assert sorted(f"demo__{r['external_id']}" for r in wh.staged_calls("demo")) == sorted(keys)
    wh.dispose()

    again = run_stage(str(tmp_path / "drop"), env=env)
    assert again.returncode == 0, again.stderr
    assert stage_lines(again.stdout) == [(k, "already staged", p) for k, _, p in lines]
    assert "staged 0 new call(s), 4 already staged" in again.stderr


@pytest.mark.slow
def test_cli_collision_is_a_one_line_error_naming_both_files(tmp_path):
    [first] = recordings(tmp_path / "monday", "call-7.wav")
    [second, fresh] = recordings(tmp_path / "tuesday", "call-7.wav", "call-8.wav")
    env = {"CALLQA_DATA_DIR": str(tmp_path / "data")}
    assert run_stage(str(first), env=env).returncode == 0

    result = run_stage(str(tmp_path / "tuesday"), env=env)
    assert result.returncode == 2
    [error] = result.stderr.splitlines()
    assert error.startswith("callqa: error: ")
    assert str(first) in error and str(second) in error and "demo__call-7" in error
    assert stage_lines(result.stdout) == [
        ("demo__call-7", "collision", str(second)),
        ("demo__call-8", "staged", str(fresh)),
    ]
    wh = Warehouse.from_url(f"sqlite:///{tmp_path / 'data' / 'warehouse.db'}")
    assert wh.staged_call("demo", "call-7")["source_uri"] == first.as_uri()
    assert len(wh.staged_calls("demo")) == 2
    wh.dispose()


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
@pytest.mark.slow
def test_concurrent_cli_stage_on_a_fresh_database(backend, request, tmp_path):
    """Four `callqa stage` processes at once on a database none of them has migrated yet,
    staging overlapping sets of files: all succeed and each call is staged exactly once."""
    n_procs, rounds = 4, 4
    paths = recordings(tmp_path / "drop", *(f"call-{i}.wav" for i in range(6)), "call 6.wav")
    for attempt in range(rounds):  # a few fresh databases: the race is timing-dependent
        if backend == "sqlite":
            url = f"sqlite:///{tmp_path / f'db{attempt}' / 'warehouse.db'}"
        else:
            url = request.getfixturevalue("pg_url")
            _empty_pg_database(url)
        gate = tmp_path / f"go{attempt}"
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", GATED_STAGE, str(gate), str(i), *map(str, paths[i : i + 4])],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env={
                    **os.environ,
                    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                    "CALLQA_DATABASE_URL": url,
                    "CALLQA_DATA_DIR": str(tmp_path / "data"),
                },
            )
            for i in range(n_procs)
        ]
        _open_gate(gate, n_procs, procs)  # all start staging at the same moment
        outputs = [p.communicate(timeout=300) for p in procs]
        for proc, (_, err) in zip(procs, outputs, strict=True):
            assert proc.returncode == 0, err
        outcomes: dict[str, list[str]] = {}
        for out, _ in outputs:
            for key, outcome, _path in stage_lines(out):
                outcomes.setdefault(key, []).append(outcome)
        # Each file was staged by exactly one process; the others found it staged.
        assert len(outcomes) == len(paths)
        for key, seen in outcomes.items():
            assert sorted(seen) == ["already staged"] * (len(seen) - 1) + ["staged"], key
        wh = Warehouse.from_url(url)
        rows = wh.staged_calls("demo")
        wh.dispose()
        assert sorted(f"demo__{r['external_id']}" for r in rows) == sorted(outcomes)


# Runs `callqa stage` (its real `main`) once the gate file exists; says it is ready (imports
# done) by creating <gate>.<n>.ready, so the test can open the gate when all are waiting.
GATED_STAGE = """
import sys, time
from pathlib import Path
import callqa.cli, callqa.crm.file_drop, callqa.storage.migrate, alembic.command
gate, n = Path(sys.argv[1]), sys.argv[2]
gate.with_name(f"{gate.name}.{n}.ready").touch()
while not gate.exists():
    time.sleep(0.002)
sys.exit(callqa.cli.main(["stage", "--tenant", "demo", *sys.argv[3:]]))
"""


def _open_gate(gate: Path, n_procs: int, procs: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + 120
    while len(list(gate.parent.glob(f"{gate.name}.*.ready"))) < n_procs:
        assert time.monotonic() < deadline, "stage processes did not start"
        if any(p.poll() is not None for p in procs):
            break  # one died before the gate: its output says why
        time.sleep(0.01)
    gate.touch()


def _empty_pg_database(url: str) -> None:
    """Back to a database without any table (the previous round's are dropped)."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE"))
        conn.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()
