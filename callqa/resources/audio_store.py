from __future__ import annotations

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
            tmp = path.with_suffix(path.suffix + ".part")
            tmp.write_bytes(data)
            tmp.replace(path)  # atomic: a reader never sees half a file
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
