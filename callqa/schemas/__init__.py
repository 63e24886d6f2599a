"""Published JSON schemas (analysis record, tenant, preset), generated from the models."""

from __future__ import annotations

import json
from pathlib import Path

SCHEMA_DIR = Path(__file__).parent


def generated_schemas() -> dict[str, dict]:
    from callqa.calls.record import generated_schema
    from callqa.config.models import Preset, Tenant

    return {
        "analysis": generated_schema(),
        "tenant": Tenant.model_json_schema(),
        "preset": Preset.model_json_schema(),
    }


def write_schemas() -> list[Path]:
    paths = []
    for name, schema in generated_schemas().items():
        path = SCHEMA_DIR / f"{name}.schema.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        paths.append(path)
    return paths
