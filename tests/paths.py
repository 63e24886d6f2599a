"""Where the test suite finds its inputs and services (constants only, no fixtures)."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO_CALLS = ROOT / "callqa" / "demo" / "calls"
PG_ADMIN_URL = os.environ.get(
    "CALLQA_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
