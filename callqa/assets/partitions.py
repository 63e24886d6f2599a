"""Partitions: one `calls` partition per call, one `tenants` partition per tenant."""

import dagster as dg

from callqa.config.registry import default_registry

calls_partitions = dg.DynamicPartitionsDefinition(name="calls")


def tenant_partitions() -> dg.StaticPartitionsDefinition:
    # Tenants are config files reviewed like code, so their set changes with a deploy.
    return dg.StaticPartitionsDefinition(sorted(default_registry().tenants))
