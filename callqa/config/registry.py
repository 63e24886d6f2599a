"""Load tenants and presets from YAML files.

The bundled files live next to this module; `CALLQA_CONFIG_DIR` points at a folder with
`tenants/` and `presets/` subfolders whose files add to or replace the bundled ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml
from pydantic import ValidationError

from callqa.config.models import Preset, Tenant
from callqa.errors import ConfigError
from callqa.settings import config_dir

BUNDLED_DIR = Path(__file__).parent / "files"


@dataclass(frozen=True)
class Registry:
    tenants: dict[str, Tenant]
    presets: dict[str, Preset]

    def tenant(self, tenant_id: str) -> Tenant:
        try:
            return self.tenants[tenant_id]
        except KeyError:
            known = ", ".join(sorted(self.tenants)) or "none"
            raise ConfigError(f"unknown tenant {tenant_id!r} (known: {known})") from None

    def preset(self, preset_id: str) -> Preset:
        try:
            return self.presets[preset_id]
        except KeyError:
            known = ", ".join(sorted(self.presets)) or "none"
            raise ConfigError(f"unknown preset {preset_id!r} (known: {known})") from None

    def preset_for(self, tenant_id: str, category: str | None) -> Preset:
        return self.preset(self.tenant(tenant_id).preset_id_for(category))


def _load_file(path: Path, model: type[Tenant] | type[Preset]) -> Tenant | Preset:
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read YAML: {exc}") from exc
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"{path}: invalid {model.__name__.lower()}: {problems}") from None


def _load_dir(directory: Path, model, into: dict, sources: dict | None = None) -> None:
    if not directory.is_dir():
        return
    for path in sorted(directory.glob("*.y*ml")):
        item = _load_file(path, model)
        if item.id != path.stem:
            raise ConfigError(f"{path}: id {item.id!r} must match the file name {path.stem!r}")
        into[item.id] = item
        if sources is not None:
            sources[item.id] = path


def load_registry(config_dir: Path | None = None) -> Registry:
    tenants: dict[str, Tenant] = {}
    presets: dict[str, Preset] = {}
    tenant_files: dict[str, Path] = {}
    for root in [BUNDLED_DIR, config_dir]:
        if root is None:
            continue
        _load_dir(root / "presets", Preset, presets)
        _load_dir(root / "tenants", Tenant, tenants, tenant_files)
    for tenant in tenants.values():
        for category, preset_id in tenant.presets.items():
            if preset_id not in presets:
                raise ConfigError(
                    f"{tenant_files[tenant.id]}: tenant {tenant.id!r} maps category "
                    f"{category!r} to unknown preset {preset_id!r}"
                )
    return Registry(tenants=tenants, presets=presets)


@cache
def default_registry() -> Registry:
    return load_registry(config_dir())
