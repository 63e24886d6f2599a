"""Reading a staged call's recording, by where it was staged from.

The source decides what may be read, so one tenant cannot point a call at another
tenant's files: a call an admin staged by hand (`callqa stage add`, source `file`) is read
from the local path the admin named; every other call (`crm`, `webhook`) is read by the
tenant's own adapter, which only fetches http(s) URLs through the SSRF guard (AmoCRM,
HubSpot, SQL sources) or files under the tenant's drop folder (file drop). A CRM payload
naming `file:///...` or a bare path therefore never reaches the local disk.
"""

from __future__ import annotations

from callqa.config.models import Tenant
from callqa.crm.base import CrmAdapter
from callqa.crm.fetch import MAX_BYTES
from callqa.crm.file_drop import read_source, source_label
from callqa.crm.registry import cached_adapter
from callqa.errors import AudioError

HAND_STAGED = "file"  # `callqa stage add`: the admin on this machine chose the file


def read_recording(
    tenant: Tenant,
    source: str,
    source_uri: str,
    *,
    adapters: dict[str, CrmAdapter] | None = None,
    max_bytes: int = MAX_BYTES,
) -> bytes:
    if source == HAND_STAGED:
        return read_source(source_uri, max_bytes=max_bytes)
    if tenant.crm is None:
        raise AudioError(
            f"{source_label(source_uri)}: staged from {source!r} but tenant {tenant.id!r} "
            "has no crm configured to read it"
        )
    adapter = cached_adapter({} if adapters is None else adapters, tenant)
    return adapter.fetch_recording(source_uri, max_bytes)
