"""The `calls` partition key: `<tenant>__<external call id>`.

Both halves are restricted to characters that are safe in Dagster partition keys,
URLs and file names, so the key alone identifies a call in every store.
"""

from __future__ import annotations

import hashlib
import re
from typing import NamedTuple

from callqa.errors import PartitionKeyError

SEPARATOR = "__"
TENANT_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
EXTERNAL_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,127}$")
HASH_LEN = 8  # hex digits of sha256 that `external_id_from_name` appends to cleaned names


class CallKey(NamedTuple):
    tenant: str
    external_id: str

    @property
    def partition_key(self) -> str:
        return f"{self.tenant}{SEPARATOR}{self.external_id}"


def make_key(tenant: str, external_id: str) -> CallKey:
    if not TENANT_RE.fullmatch(tenant):
        raise PartitionKeyError(
            f"tenant {tenant!r} is not a valid slug (lowercase letters, digits and dashes)"
        )
    if not EXTERNAL_ID_RE.fullmatch(external_id) or SEPARATOR in external_id:
        raise PartitionKeyError(
            f"external call id {external_id!r} must be 1-128 letters, digits, dots or dashes"
        )
    return CallKey(tenant, external_id)


def parse_key(partition_key: str) -> CallKey:
    tenant, sep, external_id = partition_key.partition(SEPARATOR)
    if not sep:
        raise PartitionKeyError(
            f"calls partition key {partition_key!r} must look like '<tenant>__<call id>'"
        )
    return make_key(tenant, external_id)


def external_id_from_name(name: str) -> str:
    """Turn a file name (or any label) into a valid external call id.

    A name that already is a valid id is kept as it is. Otherwise the characters an id cannot
    hold are replaced and a short hash of the original name is appended (`call 1` ->
    `call-1-<8 hex>`), so the same name always gets the same id and two names that clean to
    the same text (`call 1`, `call_1`; `звонок`, `通话`) still get different ids.
    """
    if EXTERNAL_ID_RE.fullmatch(name) and SEPARATOR not in name:
        return name
    digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:HASH_LEN]
    limit = 128 - HASH_LEN - 1
    cleaned = re.sub(r"[^A-Za-z0-9.-]+", "-", name).strip("-.")[:limit].rstrip("-.")
    return f"{cleaned or 'call'}-{digest}"
