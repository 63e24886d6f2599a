"""The local audio store: content-addressed, atomic, and tenant-scoped on read."""

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
