"""A folder of recordings as a call source (`crm: {adapter: file_drop, url}`).

The folder is a local path or any fsspec URL (`s3://bucket/calls`, `sftp://host/drop`,
`memory://...`), opened with `fsspec.core.url_to_fs` and listed recursively; a file is a
recording when its suffix is one of `callqa.crm.file_drop.AUDIO_SUFFIXES`.

Sidecars
--------
A recording may have a JSON sidecar next to it, `<stem>.json` (`2025/06/call-7.flac` ->
`2025/06/call-7.json`)::

    {"external_id": "7", "operator": "Anna", "category": "sales",
     "started_at": "2025-06-02T10:15:00+03:00", "duration_s": 312.5,
     "direction": "inbound", "links": {"leads": "123"}}

Every key is optional; keys not listed here are ignored. A sidecar that is not a JSON
object of these fields rejects its recording (with the problem); the others go on.
Without `external_id`, the id is derived from the path relative to the folder without its
suffix (`callqa.calls.keys.external_id_from_name`): `call-7.flac` at the top is `call-7`,
as `callqa stage` names it, and `2025/06/call-7.flac` is `2025-06-call-7-<hash>`, stable
across polls and distinct from `2025-06/call-7.flac`.

Cursor
------
`{"m": <watermark>, "p": <relative path>}` of the last recording returned (rejected ones
included). A recording's watermark is its modification time, or its sidecar's when that
is later (a sidecar written after its recording updates the call). Recordings are
returned in `(watermark, path)` order and a page starts strictly after the cursor, so
files sharing one mtime are split across pages without loss or repetition, and a file
rewritten later is listed again (same id; staging dedupes). A recording (or its sidecar)
modified within the last `SETTLE_S` seconds may still be being written: it is left for a
later poll. It cannot be skipped meanwhile: every file returned is older than it, so the
cursor stays behind it. (For a remote store the mtime is the server's clock and "now" is
this machine's: keep them within a few seconds, e.g. both on NTP.)

Known limits, for the people who fill the folder:

- A file must arrive with a fresh mtime. `mv` from elsewhere on the same disk, `cp -p`,
  `rsync -t` or an S3 copy that keeps the source's time can put it behind the cursor,
  where it is never found; copy it plainly (or `touch` it after moving).
- The listing of the whole folder is materialised by fsspec on every poll (only
  `(mtime, path)` pairs are kept of it here). Keep the folder bounded: move processed
  recordings out, or partition by date subfolders (`2025/06/02/...`) and archive old
  partitions, so a poll does not list years of files.

Reading
-------
`fetch_recording` reads through fsspec only what lies under the configured folder: the
path is normalised (`..` collapsed) and, for a local folder, symlinks are resolved, so a
link pointing out of the folder, a `..` path or another tenant's folder is refused with
an `AudioError`. The size is checked before reading, and at most max_bytes + 1 bytes are
read. `recording_url` is a `file://` URI for a local folder, the full fsspec URL otherwise.

There is no card to write results to (`write_result` returns {}) and a folder is polled,
never pushed to (`parse_webhook` refuses).

Reference: fsspec's AbstractFileSystem API (`url_to_fs`, `find(detail=True)`, `info`,
`size`, `open`, `unstrip_protocol`), https://filesystem-spec.readthedocs.io/en/latest/api.html
"""

from __future__ import annotations

import heapq
import json
import math
import os
import posixpath
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar, Literal
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from callqa.calls.keys import external_id_from_name, make_key
from callqa.config.crm import FileDropConfig
from callqa.crm.base import CallResult, CrmCall, CrmPage, RejectedRecord
from callqa.crm.fetch import safe_url
from callqa.crm.file_drop import AUDIO_SUFFIXES
from callqa.errors import (
    AudioError,
    CallqaError,
    ConfigError,
    CrmError,
    CrmPayloadError,
    CrmUnavailable,
)

SETTLE_S = 5.0  # a file modified more recently may still be being written
SIDECAR_SUFFIX = ".json"
SIDECAR_MAX_BYTES = 64 * 1024
# Where fsspec backends put a file's modification time in `info`, in order of preference
# (local and sftp: mtime; s3: LastModified; azure: last_modified; gcs: updated; memory:
# created, which is renewed whenever the file is written).
_MTIME_KEYS = ("mtime", "LastModified", "last_modified", "modified", "updated", "created")


class Sidecar(BaseModel):
    """`<stem>.json` next to a recording."""

    model_config = ConfigDict(extra="ignore")

    external_id: str | None = None
    operator: str | None = None
    category: str | None = None
    started_at: datetime | None = None
    duration_s: float | None = Field(None, ge=0)
    direction: Literal["inbound", "outbound"] | None = None
    links: dict[str, str | int] = Field(default_factory=dict)


class FileDropAdapter:
    name: ClassVar[str] = "file_drop"
    settle_s: float = SETTLE_S

    def __init__(self, tenant_id: str, config: FileDropConfig):
        import fsspec.core
        from fsspec.implementations.local import LocalFileSystem

        self.tenant_id = tenant_id
        self.config = config
        label = _label(config.url)
        self.source = f"file drop of tenant {tenant_id} ({label})"
        try:
            self.fs, root = fsspec.core.url_to_fs(config.url)
        except (ImportError, ValueError) as exc:
            # ImportError: the backend's package (s3fs, gcsfs, ...) is not installed.
            raise ConfigError(
                f"tenant {tenant_id} crm.url {label}: cannot open this folder ({exc})"
            ) from None
        self.local = isinstance(self.fs, LocalFileSystem)
        # Local: the real path, so symlinks and `..` are compared resolved.
        self.root = os.path.realpath(os.path.expanduser(root)) if self.local else root.rstrip("/")

    # --- the adapter interface ------------------------------------------------------

    def list_calls(self, cursor: str | None, limit: int) -> CrmPage:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        after = _decode_cursor(cursor, self.source) if cursor else None
        cutoff = time.time() - self.settle_s
        candidates = (
            entry
            for entry in self._recordings()
            if entry[0] <= cutoff and (after is None or entry > after)
        )
        # Only the next limit + 1 are kept and sorted: the one extra says `more`.
        chosen = heapq.nsmallest(limit + 1, candidates)
        calls: list[CrmCall] = []
        rejected: list[RejectedRecord] = []
        for watermark, rel in chosen[:limit]:
            after = (watermark, rel)
            outcome = self._record(rel)
            (calls if isinstance(outcome, CrmCall) else rejected).append(outcome)
        return CrmPage(
            calls=calls,
            rejected=rejected,
            cursor=_encode_cursor(after) if after else None,
            more=len(chosen) > limit,
        )

    def fetch_recording(self, source_uri: str, max_bytes: int) -> bytes:
        path = self._checked_path(source_uri)
        try:
            size = self.fs.size(path)
        except FileNotFoundError:
            raise AudioError(f"{self._shown(path)}: recording not found") from None
        except OSError as exc:
            raise AudioError(f"{self._shown(path)}: cannot read ({exc.strerror or exc})") from exc
        if size is not None and size > max_bytes:
            raise AudioError(f"{self._shown(path)}: larger than the {max_bytes}-byte limit")
        try:
            with self.fs.open(path, "rb") as f:
                data = f.read(max_bytes + 1)  # a file that grew since is still bounded
        except FileNotFoundError:
            raise AudioError(f"{self._shown(path)}: recording not found") from None
        except OSError as exc:
            raise AudioError(f"{self._shown(path)}: cannot read ({exc.strerror or exc})") from exc
        if len(data) > max_bytes:
            raise AudioError(f"{self._shown(path)}: larger than the {max_bytes}-byte limit")
        return data

    def write_result(
        self, links: dict[str, str], result: CallResult, existing: dict[str, str]
    ) -> dict[str, str]:
        """Nothing to write: a folder has no card. The result stays in callqa's
        warehouse and report."""
        return {}

    def parse_webhook(self, body: bytes, content_type: str) -> list[CrmCall]:
        raise CrmPayloadError(
            f"{self.source}: file drops are polled (every crm.poll_interval_s); "
            "they take no webhooks"
        )

    # --- listing --------------------------------------------------------------------

    def _listing(self) -> dict[str, dict[str, Any]]:
        if self.local and not os.path.isdir(self.root):
            # A missing mount is an outage to retry, not an empty folder.
            raise CrmUnavailable(f"{self.source}: the folder does not exist or is not a folder")
        try:
            return self.fs.find(self.root, detail=True)
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise CrmUnavailable(
                f"{self.source}: cannot list the folder ({exc.__class__.__name__})"
            ) from exc

    def _recordings(self) -> Iterator[tuple[float, str]]:
        """(watermark, relative path) of every recording: the later of its mtime and
        its sidecar's."""
        sidecars: dict[str, float] = {}
        recordings: list[tuple[float, str]] = []
        for path, info in self._listing().items():
            rel = self._relative(path)
            if rel is None or info.get("type") == "directory":
                continue
            suffix = PurePosixPath(rel).suffix.lower()
            if suffix == SIDECAR_SUFFIX:
                sidecars[rel[: -len(suffix)]] = self._mtime(path, info)
            elif suffix in AUDIO_SUFFIXES:
                recordings.append((self._mtime(path, info), rel))
        for mtime, rel in recordings:
            stem = rel[: -len(PurePosixPath(rel).suffix)]
            yield max(mtime, sidecars.get(stem, -math.inf)), rel

    def _relative(self, path: str) -> str | None:
        full = path if self.local else self.fs._strip_protocol(path)
        if self.local:
            rel = os.path.relpath(full, self.root)
            return None if rel.startswith("..") else Path(rel).as_posix()
        if not full.startswith(self.root + "/"):
            return None
        return full[len(self.root) + 1 :]

    def _mtime(self, path: str, info: dict[str, Any]) -> float:
        for key in _MTIME_KEYS:
            if (value := _timestamp(info.get(key))) is not None:
                return value
        try:  # a backend whose listing has no time: ask per file
            value = _timestamp(self.fs.modified(path))
        except (NotImplementedError, OSError):
            value = None
        if value is None:
            raise CrmError(
                f"{self.source}: the filesystem gives no modification time for "
                f"{self._shown(path)}; file drops need one to page"
            )
        return value

    def _record(self, rel: str) -> CrmCall | RejectedRecord:
        stem = rel[: -len(PurePosixPath(rel).suffix)]
        derived_id = external_id_from_name(stem)
        full = self._full(rel)
        if self.local and not _inside(os.path.realpath(full), self.root):
            return RejectedRecord(
                external_id=derived_id,
                problem=f"{rel}: a symlink to a file outside the folder; not read",
            )
        if self.local and not os.path.isfile(full):
            return RejectedRecord(external_id=derived_id, problem=f"{rel}: not a regular file")
        try:
            sidecar = self._sidecar(stem)
        except _Problem as problem:
            return RejectedRecord(
                external_id=derived_id, problem=f"{rel}: sidecar {stem}.json {problem}"
            )
        external_id = (sidecar.external_id if sidecar else None) or derived_id
        try:
            make_key(self.tenant_id, external_id)
        except CallqaError as exc:
            return RejectedRecord(external_id=external_id, problem=f"{rel}: {exc}")
        fields: dict[str, Any] = {}
        if sidecar:
            fields = sidecar.model_dump(exclude_none=True, exclude={"external_id", "links"})
            fields["links"] = {k: str(v) for k, v in sidecar.links.items()}
        fields.setdefault("category", self.config.category)
        try:
            return CrmCall(external_id=external_id, recording_url=self._url_of(full), **fields)
        except ValidationError as exc:
            return RejectedRecord(external_id=external_id, problem=f"{rel}: {_problem(exc)}")

    def _sidecar(self, stem: str) -> Sidecar | None:
        path = self._full(stem + SIDECAR_SUFFIX)
        if self.local and not _inside(os.path.realpath(path), self.root):
            raise _Problem("is a symlink to a file outside the folder")
        try:
            with self.fs.open(path, "rb") as f:
                raw = f.read(SIDECAR_MAX_BYTES + 1)
        except FileNotFoundError:
            return None
        except IsADirectoryError:
            raise _Problem("is a folder, not a JSON file") from None
        except OSError as exc:
            raise _Problem(f"cannot be read ({exc.strerror or exc.__class__.__name__})") from None
        if len(raw) > SIDECAR_MAX_BYTES:
            raise _Problem(f"is larger than {SIDECAR_MAX_BYTES} bytes")
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise _Problem(f"is not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise _Problem("must be a JSON object")
        try:
            return Sidecar.model_validate(data)
        except ValidationError as exc:
            raise _Problem(f"is invalid: {_problem(exc)}") from None

    # --- paths ----------------------------------------------------------------------

    def _full(self, rel: str) -> str:
        return os.path.join(self.root, *rel.split("/")) if self.local else f"{self.root}/{rel}"

    def _url_of(self, full: str) -> str:
        return Path(full).as_uri() if self.local else self.fs.unstrip_protocol(full)

    def _checked_path(self, source_uri: str) -> str:
        """The path to read for `source_uri`, only if it lies under the folder."""
        suffix = PurePosixPath(urlsplit(source_uri).path).suffix.lower()
        if self.local:
            parts = urlsplit(source_uri)
            if parts.scheme not in ("file", ""):
                raise AudioError(f"{_label(source_uri)}: not a file of {self.source}")
            given = unquote(parts.path) if parts.scheme == "file" else source_uri
            # Resolved: `..` collapsed and every symlink followed. The resolved path is the
            # one read, so a link swapped after this check changes nothing.
            path = os.path.realpath(given)
            shown = given
        else:
            import fsspec.core

            protocol, _ = fsspec.core.split_protocol(source_uri)
            protocols = (
                (self.fs.protocol,) if isinstance(self.fs.protocol, str) else self.fs.protocol
            )
            if protocol not in protocols:
                raise AudioError(f"{_label(source_uri)}: not a file of {self.source}")
            path = posixpath.normpath(self.fs._strip_protocol(source_uri))
            shown = _label(source_uri)
        if not _inside(path, self.root):
            raise AudioError(f"{shown}: outside the file drop folder of tenant {self.tenant_id}")
        if suffix not in AUDIO_SUFFIXES:
            raise AudioError(f"{shown}: not a recording (suffix {suffix or 'none'})")
        return path

    def _shown(self, path: str) -> str:
        return path if self.local else _label(self.fs.unstrip_protocol(path))


class _Problem(Exception):
    """Why a sidecar cannot be used; its recording goes to `rejected`."""


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _label(url: str) -> str:
    """How a folder or file is named in messages: no credentials or query string."""
    parts = urlsplit(url)
    return safe_url(url) if parts.scheme and parts.scheme != "file" else url


def _timestamp(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def _encode_cursor(after: tuple[float, str]) -> str:
    return json.dumps({"m": after[0], "p": after[1]}, separators=(",", ":"))


def _decode_cursor(cursor: str, source: str) -> tuple[float, str]:
    try:
        data = json.loads(cursor)
        mtime, rel = data["m"], data["p"]
        if (
            isinstance(mtime, bool)
            or not isinstance(mtime, int | float)
            or not isinstance(rel, str)
        ):
            raise TypeError
        return float(mtime), rel
    except (ValueError, TypeError, KeyError):
        raise CrmError(
            f"{source}: cursor {cursor[:80]!r} is not a file drop cursor "
            "(reset the tenant's sensor cursor to list the folder from the beginning)"
        ) from None


def _problem(exc: ValidationError) -> str:
    """Pydantic's errors as `field: message; ...`, without the input values."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'record'}: {e['msg']}" for e in exc.errors()
    )
