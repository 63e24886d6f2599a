from __future__ import annotations

from pathlib import Path

import dagster as dg
from pydantic import Field

from callqa import settings


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

    def get(self, uri: str) -> bytes:
        path = Path(uri.removeprefix("file://"))
        root = self._root()
        if root not in path.resolve().parents:
            raise ValueError(f"{uri}: outside the audio store {root}")
        return path.read_bytes()
