"""Getting calls into the warehouse's staging table, and reading their recordings back.

A staged call names where its recording lives (`source_uri`); the `raw_audio` asset
reads it from there, so every run derives its input from the partition key alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit

from callqa.errors import AudioError
from callqa.fetch import MAX_BYTES, fetch_url, safe_url
from callqa.keys import CallKey, external_id_from_name, make_key
from callqa.storage.warehouse import Warehouse

AUDIO_SUFFIXES = {".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".webm"}


@dataclass(frozen=True)
class StagedFile:
    path: Path
    external_id: str | None = None
    operator: str | None = None
    category: str | None = None
    started_at: datetime | None = None


def stage_files(warehouse: Warehouse, tenant: str, files: list[StagedFile]) -> list[CallKey]:
    """Stage local recordings (a file drop); already-staged calls are left as they are."""
    keys = []
    for f in files:
        key = make_key(tenant, f.external_id or external_id_from_name(f.path.stem))
        warehouse.stage_call(
            tenant=tenant,
            external_id=key.external_id,
            source="file",
            source_uri=f.path.resolve().as_uri(),
            category=f.category,
            operator=f.operator,
            started_at=f.started_at,
        )
        keys.append(key)
    return keys


def source_suffix(source_uri: str) -> str:
    suffix = Path(urlsplit(source_uri).path).suffix.lower()
    return suffix if suffix in AUDIO_SUFFIXES else ".bin"


def source_label(source_uri: str) -> str:
    """How errors name a recording: its path, or its URL without query (CRM tokens)."""
    parts = urlsplit(source_uri)
    if parts.scheme in ("http", "https"):
        return safe_url(source_uri)
    return unquote(parts.path) if parts.scheme == "file" else source_uri


def read_source(source_uri: str, max_bytes: int = MAX_BYTES) -> bytes:
    scheme = urlsplit(source_uri).scheme
    if scheme in ("http", "https"):
        return fetch_url(source_uri, max_bytes=max_bytes)
    if scheme not in ("file", ""):
        raise AudioError(f"{source_uri}: unsupported recording location")
    path = Path(source_label(source_uri))
    if not path.is_file():
        raise AudioError(f"{path}: recording not found")
    if path.stat().st_size > max_bytes:
        raise AudioError(f"{path}: larger than the {max_bytes}-byte limit")
    return path.read_bytes()
