"""The local audio store: content-addressed, atomic, and tenant-scoped on read."""

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from callqa.errors import AudioError
from callqa.resources import AudioStoreResource


def test_put_is_idempotent_and_get_reads_back(tmp_path):
    store = AudioStoreResource(root=str(tmp_path / "audio"))
    uri = store.put("acme", "c1", "ab" * 32, ".FLAC", b"bytes")
    assert uri == store.put("acme", "c1", "ab" * 32, ".flac", b"bytes")
    assert uri.endswith(".flac") and "/acme/c1/" in uri
    assert store.get("acme", uri) == b"bytes"
    assert not list((tmp_path / "audio").rglob("*.part"))


def test_get_refuses_other_tenants_and_outside_paths(tmp_path):
    store = AudioStoreResource(root=str(tmp_path / "audio"))
    uri = store.put("acme", "c1", "cd" * 32, ".wav", b"secret audio")
    with pytest.raises(AudioError, match="not in tenant 'globex'"):
        store.get("globex", uri)
    outside = tmp_path / "elsewhere.wav"
    outside.write_bytes(b"x")
    with pytest.raises(AudioError, match="not in tenant"):
        store.get("acme", outside.as_uri())
    with pytest.raises(AudioError, match="not in tenant"):
        store.get("acme", (tmp_path / "audio" / "acme" / ".." / "x.wav").as_uri())
    with pytest.raises(AudioError, match="missing"):
        store.get("acme", (tmp_path / "audio" / "acme" / "c9" / "gone.wav").as_uri())


def test_concurrent_writers_of_one_recording_never_expose_a_partial_file(tmp_path):
    """Writers of the same recording race while a reader polls: every read is complete, every
    writer succeeds with the same URI, and no temp file is left behind."""
    store = AudioStoreResource(root=str(tmp_path / "audio"))
    data = os.urandom(1 << 20) * 4  # 4 MiB: long enough writes for the writers to overlap
    n_writers, rounds = 4, 8
    for n in range(rounds):
        sha = f"{n:064x}"
        path = tmp_path / "audio" / "acme" / "c1" / f"{sha}.wav"
        barrier = threading.Barrier(n_writers + 1)
        done = threading.Event()
        reads: list[int] = []

        def write(_, sha=sha, barrier=barrier):
            barrier.wait()
            return store.put("acme", "c1", sha, ".wav", data)

        def read(path=path, barrier=barrier, done=done, reads=reads):
            barrier.wait()
            while not done.is_set():
                try:
                    got = path.read_bytes()
                except FileNotFoundError:
                    continue
                reads.append(len(got))
                if got != data:
                    return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            with ThreadPoolExecutor(n_writers) as pool:
                uris = list(pool.map(write, range(n_writers)))
        finally:
            done.set()
            reader.join()
        assert uris == [path.as_uri()] * n_writers
        assert all(size == len(data) for size in reads), f"short reads: {set(reads)}"
        assert path.read_bytes() == data
    assert sorted(p.name for p in (tmp_path / "audio").rglob("*") if p.is_file()) == sorted(
        f"{n:064x}.wav" for n in range(rounds)
    )
