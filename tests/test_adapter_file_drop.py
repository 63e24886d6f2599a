"""The file-drop call source: a real folder on disk (the demo FLACs, sidecars, clutter),
and fsspec's memory:// filesystem to prove other URLs are read through fsspec."""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from callqa.calls.keys import external_id_from_name
from callqa.config.crm import FileDropConfig
from callqa.crm.adapters.file_drop import FileDropAdapter
from callqa.crm.base import CallResult, CrmPage
from callqa.crm.registry import adapter_class
from callqa.errors import AudioError, ConfigError, CrmError, CrmPayloadError, CrmUnavailable
from tests import crm_paging as paging
from tests.paths import DEMO_CALLS

NOW = time.time()
T0 = NOW - 3600  # an hour ago: long settled


def adapter_for(url: str, tenant: str = "acme", **extra) -> FileDropAdapter:
    config = FileDropConfig.model_validate({"adapter": "file_drop", "url": url} | extra)
    return FileDropAdapter(tenant, config)


def put(root: Path, rel: str, mtime: float, demo: str = "call-001.flac") -> Path:
    """Copy a real demo recording to root/rel with the given mtime."""
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(DEMO_CALLS / demo, path)
    os.utime(path, (mtime, mtime))
    return path


def write(root: Path, rel: str, text: str, mtime: float = T0 - 600) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.utime(path, (mtime, mtime))
    return path


def drain(adapter: FileDropAdapter, cursor: str | None, limit: int) -> list[CrmPage]:
    return paging.drain(adapter, cursor, limit, max_pages=1000)[0]


def urls(pages: list[CrmPage]) -> list[str]:
    return [c.recording_url for p in pages for c in p.calls]


# --- a real drop folder -------------------------------------------------------------

# (relative path, mtime): three ties on T0, three on T0 + 10, two alone.
LAYOUT = [
    ("call-001.flac", T0),
    ("2025/06/02/call-002.flac", T0),
    ("2025/06/02/call 003.flac", T0),
    ("2025/06/03/call-004.flac", T0 + 10),
    ("2025/06/03/call-005.flac", T0 + 10),
    ("a/call-006.flac", T0 + 10),
    ("2025/06/04/z.FLAC", T0 + 20),
    ("b/c/call-008.flac", T0 + 5),
]


@pytest.fixture
def drops(tmp_path) -> Path:
    """drops/acme (this tenant), drops/acme-other (another tenant), outside/."""
    acme = tmp_path / "drops" / "acme"
    for i, (rel, mtime) in enumerate(LAYOUT):
        put(acme, rel, mtime, demo=f"call-00{i % 6 + 1}.flac")
    write(
        acme,
        "call-001.json",
        json.dumps(
            {
                "external_id": "crm-1001",
                "operator": "Anna",
                "category": "sales",
                "started_at": "2025-06-02T10:15:00+03:00",
                "duration_s": 312.5,
                "direction": "inbound",
                "links": {"leads": 123, "contacts": "9"},
                "caller_number": "ignored",
            }
        ),
    )
    write(acme, "2025/06/03/call-004.json", json.dumps({"operator": "Boris"}))
    # Clutter that is no recording.
    write(acme, "notes.txt", "not audio")
    write(acme, "2025/06/02/readme.md", "# drop")
    write(acme, "2025/06/03/orphan.json", json.dumps({"operator": "nobody"}))
    put(tmp_path / "drops" / "acme-other", "theirs.flac", T0)
    put(tmp_path / "outside", "secret.flac", T0)
    return acme


def expected_order(layout=LAYOUT) -> list[str]:
    return [rel for mtime, rel in sorted((m, r) for r, m in layout)]


def rel_of(root: Path, recording_url: str) -> str:
    return (
        Path(recording_url.removeprefix("file://").replace("%20", " ")).relative_to(root).as_posix()
    )


def test_pages_of_two_over_mtime_ties_list_each_recording_once(drops):
    adapter = adapter_for(str(drops))

    pages = drain(adapter, None, 2)

    listed = [rel_of(drops, u) for u in urls(pages)]
    assert listed == expected_order()
    assert [len(p.calls) for p in pages] == [2, 2, 2, 2]
    assert [p.more for p in pages] == [True, True, True, False]
    assert not any(p.rejected for p in pages)
    assert all(len(p.cursor or "") < 100 for p in pages)
    calls = {rel_of(drops, c.recording_url): c for p in pages for c in p.calls}
    first = calls["call-001.flac"]
    assert first.external_id == "crm-1001"
    assert (first.operator, first.category, first.direction) == ("Anna", "sales", "inbound")
    assert first.duration_s == 312.5
    assert first.started_at == datetime(2025, 6, 2, 7, 15, tzinfo=UTC)
    assert first.links == {"leads": "123", "contacts": "9"}
    assert first.recording_url == (drops / "call-001.flac").as_uri()
    assert calls["2025/06/03/call-004.flac"].operator == "Boris"
    # Without a sidecar id: stable ids derived from the relative path.
    assert calls["2025/06/02/call-002.flac"].external_id == external_id_from_name(
        "2025/06/02/call-002"
    )
    assert calls["2025/06/02/call 003.flac"].external_id == external_id_from_name(
        "2025/06/02/call 003"
    )
    assert calls["a/call-006.flac"].external_id != calls["2025/06/03/call-005.flac"].external_id
    assert len({c.external_id for c in calls.values()}) == len(LAYOUT)
    # Listing again from the start gives the same ids.
    assert [c.external_id for p in drain(adapter, None, 5) for c in p.calls] == [
        calls[r].external_id for r in expected_order()
    ]


def test_new_files_after_a_finished_poll_are_found_from_the_cursor(drops):
    adapter = adapter_for(str(drops))
    cursor = drain(adapter, None, 3)[-1].cursor
    assert json.loads(cursor) == {"m": T0 + 20, "p": "2025/06/04/z.FLAC"}

    # Arrivals: one tied with the last file listed (its path sorts after it), one newer;
    # one still being written (modified just now); and a rewrite of a listed file.
    put(drops, "2025/06/04/zz.flac", T0 + 20)
    put(drops, "2025/06/05/new.flac", NOW - 60)
    writing = put(drops, "2025/06/05/writing.flac", time.time())
    put(drops, "2025/06/02/call-002.flac", NOW - 30, demo="call-005.flac")

    page = adapter.list_calls(cursor, 10)

    assert [rel_of(drops, u) for u in urls([page])] == [
        "2025/06/04/zz.flac",
        "2025/06/05/new.flac",
        "2025/06/02/call-002.flac",
    ]
    assert page.calls[2].external_id == external_id_from_name("2025/06/02/call-002")
    assert not page.more  # the file being written is not ready yet

    # Once written (its mtime stops moving), the next poll takes it.
    os.utime(writing, (NOW - 10, NOW - 10))
    later = adapter.list_calls(page.cursor, 10)
    assert [rel_of(drops, u) for u in urls([later])] == ["2025/06/05/writing.flac"]
    assert adapter.list_calls(later.cursor, 10).calls == []


def test_a_sidecar_written_after_its_recording_updates_the_call(drops):
    adapter = adapter_for(str(drops))
    cursor = drain(adapter, None, 10)[-1].cursor
    write(drops, "2025/06/03/call-005.json", json.dumps({"operator": "Vera"}), NOW - 20)
    (call,) = adapter.list_calls(cursor, 10).calls
    assert call.recording_url == (drops / "2025/06/03/call-005.flac").as_uri()
    assert call.operator == "Vera"


def test_a_malformed_sidecar_rejects_only_its_recording(drops):
    write(drops, "2025/06/02/call-002.json", "{not json")
    write(drops, "a/call-006.json", json.dumps({"duration_s": -3, "direction": "sideways"}))
    write(drops, "b/c/call-008.json", json.dumps(["a", "list"]))
    write(drops, "2025/06/03/call-005.json", json.dumps({"external_id": "has space"}))
    adapter = adapter_for(str(drops))

    pages = drain(adapter, None, 2)

    listed = [rel_of(drops, u) for u in urls(pages)]
    assert listed == [
        r
        for r in expected_order()
        if r
        not in {
            "2025/06/02/call-002.flac",
            "a/call-006.flac",
            "b/c/call-008.flac",
            "2025/06/03/call-005.flac",
        }
    ]
    rejected = {r.external_id: r.problem for p in pages for r in p.rejected}
    assert set(rejected) == {
        external_id_from_name("2025/06/02/call-002"),
        external_id_from_name("a/call-006"),
        external_id_from_name("b/c/call-008"),
        "has space",
    }
    assert (
        "call-002.json is not valid JSON" in rejected[external_id_from_name("2025/06/02/call-002")]
    )
    problem_006 = rejected[external_id_from_name("a/call-006")]
    assert "duration_s" in problem_006 and "direction" in problem_006
    assert "must be a JSON object" in rejected[external_id_from_name("b/c/call-008")]
    assert "external call id" in rejected["has space"]
    # Reported once: a poll from the last cursor finds nothing again.
    again = adapter.list_calls(pages[-1].cursor, 10)
    assert (again.calls, again.rejected) == ([], [])


# --- reading recordings -------------------------------------------------------------


def test_fetch_recording_returns_the_real_bytes_and_enforces_max_bytes(drops):
    adapter = adapter_for(str(drops))
    calls = {rel_of(drops, c.recording_url): c for p in drain(adapter, None, 10) for c in p.calls}
    for rel, call in calls.items():
        expected = (drops / rel).read_bytes()
        assert adapter.fetch_recording(call.recording_url, max_bytes=len(expected)) == expected
    first = (drops / "call-001.flac").read_bytes()
    assert first == (DEMO_CALLS / "call-001.flac").read_bytes()
    with pytest.raises(AudioError, match="larger than the 100-byte limit"):
        adapter.fetch_recording(calls["call-001.flac"].recording_url, max_bytes=100)
    # A plain path under the folder is read too.
    assert adapter.fetch_recording(str(drops / "call-001.flac"), len(first)) == first


@pytest.mark.parametrize(
    "uri",
    [
        "file://{drops}/2025/../../../outside/secret.flac",
        "{drops}/../../outside/secret.flac",
        "file://{drops}/leak.flac",
        "file://{tmp}/drops/acme-other/theirs.flac",
        "file://{tmp}/outside/secret.flac",
    ],
    ids=["dotdot-uri", "dotdot-path", "symlink-out", "other-tenant", "absolute"],
)
def test_fetch_recording_refuses_paths_outside_the_folder(drops, tmp_path, uri):
    (drops / "leak.flac").symlink_to(tmp_path / "outside" / "secret.flac")
    adapter = adapter_for(str(drops))
    with pytest.raises(AudioError, match="outside the file drop folder of tenant acme"):
        adapter.fetch_recording(uri.format(drops=drops, tmp=tmp_path), max_bytes=10**8)


def test_fetch_recording_reads_only_recordings_of_the_folder(drops):
    adapter = adapter_for(str(drops))
    with pytest.raises(AudioError, match="not a recording"):
        adapter.fetch_recording((drops / "notes.txt").as_uri(), max_bytes=10**8)
    with pytest.raises(AudioError, match="not a file of"):
        adapter.fetch_recording("https://example.com/call-001.flac", max_bytes=10**8)
    with pytest.raises(AudioError, match="not found"):
        adapter.fetch_recording((drops / "gone.flac").as_uri(), max_bytes=10**8)
    # A link that stays inside the folder is fine.
    (drops / "inner-link.flac").symlink_to(drops / "call-001.flac")
    data = adapter.fetch_recording((drops / "inner-link.flac").as_uri(), max_bytes=10**8)
    assert data == (DEMO_CALLS / "call-001.flac").read_bytes()


def test_a_symlink_out_of_the_folder_is_rejected_when_listed(drops, tmp_path):
    os.symlink(tmp_path / "outside" / "secret.flac", drops / "leak.flac")
    # A link is listed by its own time (when it was put there), not its target's.
    os.utime(drops / "leak.flac", (T0 + 1, T0 + 1), follow_symlinks=False)
    pages = drain(adapter_for(str(drops)), None, 20)
    assert "leak.flac" not in [rel_of(drops, u) for u in urls(pages)]
    (rejected,) = [r for p in pages for r in p.rejected]
    assert rejected.external_id == "leak"
    assert "outside the folder" in rejected.problem


# --- any fsspec URL -----------------------------------------------------------------


@pytest.fixture
def memory_drop() -> Iterator[tuple[str, object]]:
    import fsspec

    fs = fsspec.filesystem("memory")
    root = f"/drop-{uuid.uuid4().hex[:8]}"
    other = f"{root}-other"
    yield root, fs
    for path in (root, other):
        if fs.exists(path):
            fs.rm(path, recursive=True)


def test_memory_url_is_listed_and_read_through_fsspec(memory_drop):
    root, fs = memory_drop
    files = {
        "x/call-1.flac": ("call-001.flac", T0),
        "x/call-2.flac": ("call-002.flac", T0),  # tied with call-1
        "call-3.ogg": ("call-003.flac", T0 + 1),
    }
    for rel, (demo, mtime) in files.items():
        fs.pipe(f"{root}/{rel}", (DEMO_CALLS / demo).read_bytes())
        # memory:// keeps a file's time as `created` (renewed on every write).
        fs.store[f"{root}/{rel}"].created = datetime.fromtimestamp(mtime, UTC)
    fs.pipe(f"{root}/x/call-2.json", json.dumps({"operator": "Dana"}).encode())
    fs.store[f"{root}/x/call-2.json"].created = datetime.fromtimestamp(T0 - 5, UTC)
    fs.pipe(f"{root}/readme.txt", b"clutter")
    fs.pipe(f"{root}-other/theirs.flac", b"not yours")
    adapter = adapter_for(f"memory://{root}")

    pages = drain(adapter, None, 1)

    assert urls(pages) == [
        f"memory://{root}/x/call-1.flac",
        f"memory://{root}/x/call-2.flac",
        f"memory://{root}/call-3.ogg",
    ]
    assert pages[1].calls[0].operator == "Dana"
    for call, (demo, _) in zip([c for p in pages for c in p.calls], files.values(), strict=True):
        expected = (DEMO_CALLS / demo).read_bytes()
        assert adapter.fetch_recording(call.recording_url, max_bytes=len(expected)) == expected
    with pytest.raises(AudioError, match="larger than"):
        adapter.fetch_recording(pages[0].calls[0].recording_url, max_bytes=1000)
    for uri in (
        f"memory://{root}-other/theirs.flac",
        f"memory://{root}/x/../../{root.strip('/')}-other/theirs.flac",
    ):
        with pytest.raises(AudioError, match="outside the file drop folder"):
            adapter.fetch_recording(uri, max_bytes=10**8)
    with pytest.raises(AudioError, match="not a file of"):
        adapter.fetch_recording(f"file://{root}/x/call-1.flac", max_bytes=10**8)

    # A new file after the finished poll.
    fs.pipe(f"{root}/call-4.wav", (DEMO_CALLS / "call-004.flac").read_bytes())
    fs.store[f"{root}/call-4.wav"].created = datetime.fromtimestamp(NOW - 60, UTC)
    (new,) = adapter.list_calls(pages[-1].cursor, 5).calls
    assert new.recording_url == f"memory://{root}/call-4.wav"


# --- the rest of the interface ------------------------------------------------------


def test_missing_folder_unknown_protocol_and_foreign_cursor(tmp_path):
    with pytest.raises(CrmUnavailable, match="does not exist"):
        adapter_for(str(tmp_path / "nope")).list_calls(None, 10)
    with pytest.raises(ConfigError, match="cannot open this folder"):
        adapter_for("nosuchprotocol://bucket/calls")
    with pytest.raises(CrmError, match="not a file drop cursor"):
        adapter_for(str(tmp_path)).list_calls('{"t":"int","w":1,"id":"a"}', 10)


def test_no_card_to_write_and_no_webhooks(tmp_path):
    adapter = adapter_for(str(tmp_path))
    result = CallResult(
        partition_key="acme__1", total=80, summary="ok", report_url="https://r/1", preset="p"
    )
    assert adapter.write_result({"leads": "1"}, result, {}) == {}
    with pytest.raises(CrmPayloadError, match="polled"):
        adapter.parse_webhook(b"{}", "application/json")
    assert adapter_class("file_drop") is FileDropAdapter
