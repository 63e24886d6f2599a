"""Tenant files for tests: written into a CALLQA_CONFIG_DIR the registry then loads."""

from __future__ import annotations

from pathlib import Path

import yaml

from callqa.config.registry import default_registry


def use_tenants(config_dir: Path, monkeypatch, *tenants: dict) -> None:
    """Write each tenant dict as `<config_dir>/tenants/<id>.yaml` and point the registry at
    it (the bundled demo tenant stays). The registry cache is cleared now and by the
    caller's monkeypatch teardown order: call `default_registry.cache_clear()` after."""
    folder = config_dir / "tenants"
    folder.mkdir(parents=True, exist_ok=True)
    for tenant in tenants:
        (folder / f"{tenant['id']}.yaml").write_text(yaml.safe_dump(tenant))
    monkeypatch.setenv("CALLQA_CONFIG_DIR", str(config_dir))
    default_registry.cache_clear()
