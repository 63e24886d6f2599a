from __future__ import annotations

import os
import secrets
from pathlib import Path

import dagster as dg
from pydantic import Field

from callqa import settings
from callqa.errors import AudioError


class AudioStoreResource(dg.ConfigurableResource):
    """Keeps the original bytes of every recording, one folder per tenant.

    Files are content-addressed (sha256), so storing the same recording twice is a no-op.
    """

    root: str | None = Field(
        default=None, description="Folder; unset = CALLQA_AUDIO_STORE or <data dir>/audio."
    )

    def _root(self) -> Path:
        return Path(self.root or settings.audio_store_root()).expanduser().resolve()

    def put(self, tenant: str, external_id: str, sha256: str, suffix: str, data: bytes) -> str:
        folder = self._root() / tenant / external_id
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{sha256}{suffix.lower()}"
        if not path.exists():
            _write_atomically(path, data)
        return path.as_uri()

    def get(self, tenant: str, uri: str) -> bytes:
        """Read a stored recording; only from `tenant`'s own folder of this store."""
        from urllib.parse import unquote, urlsplit

        path = Path(unquote(urlsplit(uri).path)).resolve()
        folder = self._root() / tenant
        if folder not in path.parents:
            raise AudioError(f"{uri}: not in tenant {tenant!r}'s folder of the audio store")
        if not path.is_file():
            raise AudioError(f"{uri}: recording missing from the audio store")
        return path.read_bytes()


def _write_atomically(path: Path, data: bytes) -> None:
    """Write `path` so that a reader sees either no file or all of `data`.

    Each writer fills its own temp file in the same folder (so concurrent writers of one
    recording never share one), syncs it to disk, then renames it over `path` in one step.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # mode as umask allows
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if os.name == "posix":  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
