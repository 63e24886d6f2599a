"""Getting calls into the warehouse's staging table, and reading their recordings back.

A staged call names where its recording lives (`source_uri`); the `raw_audio` asset
reads it from there, so every run derives its input from the partition key alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit

from callqa.calls.keys import CallKey, external_id_from_name, make_key
from callqa.crm.fetch import MAX_BYTES, fetch_url, safe_url
from callqa.errors import AudioError, CallqaError
from callqa.storage.warehouse import Warehouse

AUDIO_SUFFIXES = {".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".webm"}


@dataclass(frozen=True)
class StagedFile:
    path: Path
    external_id: str | None = None
    operator: str | None = None
    category: str | None = None
    started_at: datetime | None = None


STAGED = "staged"
ALREADY_STAGED = "already staged"
COLLISION = "collision"


@dataclass(frozen=True)
class StageResult:
    """What staging one file did: `staged` (new), `already staged` (this same recording was
    staged before; its row is kept as it is) or `collision` (the call id is taken by another
    recording, named by `existing_uri`; nothing was staged for this file)."""

    file: StagedFile
    key: CallKey
    source_uri: str
    status: str
    existing_uri: str | None = None


class CallIdCollision(CallqaError):
    """Files whose call ids are already staged for different recordings."""

    def __init__(self, collisions: list[StageResult]):
        self.collisions = collisions
        details = "; ".join(
            f"{source_label(r.source_uri)} was not staged: call id {r.key.partition_key!r} "
            f"is already staged for {source_label(r.existing_uri or '')}"
            for r in collisions
        )
        super().__init__(f"{details} (rename the file or give it another call id)")


def stage_each(warehouse: Warehouse, tenant: str, files: list[StagedFile]) -> list[StageResult]:
    """Stage local recordings (a file drop) and say what happened to each one.

    A call id already staged for the same recording is left as it is; one staged for a
    different recording is a collision: that file is not staged, the other files still are.
    """
    results = []
    for f in files:
        key = make_key(tenant, f.external_id or external_id_from_name(f.path.stem))
        source_uri = f.path.resolve().as_uri()
        new = warehouse.stage_call(
            tenant=tenant,
            external_id=key.external_id,
            source="file",
            source_uri=source_uri,
            category=f.category,
            operator=f.operator,
            started_at=f.started_at,
        )
        status, existing_uri = STAGED, None
        if not new:
            row = warehouse.staged_call(tenant, key.external_id)
            existing_uri = row["source_uri"] if row else None
            status = ALREADY_STAGED if existing_uri == source_uri else COLLISION
        results.append(StageResult(f, key, source_uri, status, existing_uri))
    return results


def stage_files(warehouse: Warehouse, tenant: str, files: list[StagedFile]) -> list[CallKey]:
    """Stage local recordings (a file drop); already-staged calls are left as they are.

    Raises `CallIdCollision`, after staging the other files, when a call id is already
    staged for a different recording.
    """
    results = stage_each(warehouse, tenant, files)
    collisions = [r for r in results if r.status == COLLISION]
    if collisions:
        raise CallIdCollision(collisions)
    return [r.key for r in results]


def source_suffix(source_uri: str) -> str:
    suffix = Path(urlsplit(source_uri).path).suffix.lower()
    return suffix if suffix in AUDIO_SUFFIXES else ".bin"


def source_label(source_uri: str) -> str:
    """How errors name a recording: its path, or its URL without query (CRM tokens)."""
    parts = urlsplit(source_uri)
    if parts.scheme in ("http", "https"):
        return safe_url(source_uri)
    return unquote(parts.path) if parts.scheme == "file" else source_uri


def _safe_label(source_uri: str) -> str:
    """How a refused location is named: a URL without query or credentials, or a path."""
    parts = urlsplit(source_uri)
    return (
        safe_url(source_uri)
        if parts.scheme and parts.scheme != "file"
        else source_label(source_uri)
    )


def read_source(
    source_uri: str,
    max_bytes: int = MAX_BYTES,
    *,
    roots: Sequence[str | Path] | None = None,
) -> bytes:
    """A recording's bytes, from an http(s) URL (through `fetch_url`'s guard) or a local
    path / file:// URL. With `roots`, a local recording is read only when its real path
    (symlinks resolved, `..` collapsed) lies under one of them; `roots=None` reads any
    path, for recordings an admin staged by hand (`callqa stage`)."""
    scheme = urlsplit(source_uri).scheme
    if scheme in ("http", "https"):
        return fetch_url(source_uri, max_bytes=max_bytes)
    if scheme not in ("file", ""):
        raise AudioError(f"{_safe_label(source_uri)}: unsupported recording location")
    path = Path(source_label(source_uri))
    if roots is not None:
        real = path.resolve()
        if not any(real.is_relative_to(Path(root).expanduser().resolve()) for root in roots):
            folders = ", ".join(str(root) for root in roots)
            raise AudioError(f"{path}: outside the allowed folders ({folders})")
        # Read what was checked, not a path whose links could be swapped meanwhile.
        path = real
    if not path.is_file():
        raise AudioError(f"{path}: recording not found")
    if path.stat().st_size > max_bytes:
        raise AudioError(f"{path}: larger than the {max_bytes}-byte limit")
    return path.read_bytes()


def read_remote(
    source_uri: str,
    *,
    max_bytes: int = MAX_BYTES,
    headers: dict[str, str] | None = None,
) -> bytes:
    """A CRM-sourced recording: http(s) only, through `fetch_url`'s guard. A CRM payload
    naming a local path or file:// URL (or any other scheme) is refused."""
    scheme = urlsplit(source_uri).scheme
    if scheme not in ("http", "https"):
        raise AudioError(
            f"{_safe_label(source_uri)}: only http(s) recording URLs are read for CRM calls"
        )
    return fetch_url(source_uri, max_bytes=max_bytes, headers=headers)
