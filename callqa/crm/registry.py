"""CRM adapters by name: the tenant's `crm.adapter` picks one.

Adapters are imported when first used (each pulls its own client libraries), and a new
one is a module in `callqa/crm/adapters/` plus a line here and a config model in
`callqa/config/crm.py`.
"""

from __future__ import annotations

import importlib

from callqa.config.models import Tenant
from callqa.crm.base import CrmAdapter
from callqa.errors import ConfigError

# name -> "module:class"; the class takes (tenant id, the tenant's crm config).
ADAPTERS: dict[str, str] = {
    "amocrm": "callqa.crm.adapters.amocrm:AmoCrmAdapter",
    "hubspot": "callqa.crm.adapters.hubspot:HubSpotAdapter",
    "sql": "callqa.crm.adapters.sql_source:SqlSourceAdapter",
    "file_drop": "callqa.crm.adapters.file_drop:FileDropAdapter",
}


def adapter_class(name: str) -> type:
    try:
        module, cls = ADAPTERS[name].split(":")
    except KeyError:
        raise ConfigError(
            f"unknown CRM adapter {name!r} (known: {', '.join(sorted(ADAPTERS))})"
        ) from None
    return getattr(importlib.import_module(module), cls)


def adapter_for(tenant: Tenant) -> CrmAdapter:
    """The tenant's adapter, its secrets resolved; ConfigError if it has no CRM."""
    if tenant.crm is None:
        raise ConfigError(f"tenant {tenant.id!r} has no crm configured")
    return adapter_class(tenant.crm.adapter)(tenant.id, tenant.crm)


def cached_adapter(cache: dict[str, CrmAdapter], tenant: Tenant) -> CrmAdapter:
    """The tenant's adapter from `cache`, built on first use: one per tenant for a batch of
    calls or a server's lifetime (each holds an HTTP session or a database engine)."""
    if tenant.id not in cache:
        cache[tenant.id] = adapter_for(tenant)
    return cache[tenant.id]
