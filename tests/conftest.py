"""Shared fixtures: throwaway databases (SQLite and a real PostgreSQL), sample calls,
and a fake OpenAI-compatible LLM server on loopback (the fakes are in tests/fakes.py,
paths and URLs in tests/paths.py; test modules import from those, never from here)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from callqa.storage.warehouse import Warehouse  # noqa: E402
from tests.databases import server_problem, throwaway_database  # noqa: E402
from tests.fakes import FakeLLM  # noqa: E402
from tests.paths import DEMO_CALLS, PG_ADMIN_URL  # noqa: E402


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items) -> None:
    """Every test that asks for a PostgreSQL database is marked `postgres`, so that
    `-m "not postgres"` runs without the server (before -m deselects anything)."""
    for item in items:
        if {"pg_url", "pg_server_url"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path, monkeypatch):
    """Every test gets its own data folder; nothing leaks into the working tree."""
    monkeypatch.setenv("CALLQA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("CALLQA_DATABASE_URL", raising=False)
    monkeypatch.delenv("CALLQA_AUDIO_STORE", raising=False)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    problem = server_problem(PG_ADMIN_URL)
    if problem:  # the suite needs the real server; say which one
        pytest.fail(f"PostgreSQL at {problem}; set CALLQA_TEST_PG_URL")
    return PG_ADMIN_URL


@pytest.fixture
def pg_url(pg_server_url) -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    with throwaway_database(pg_server_url) as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'warehouse.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def warehouse(db_url) -> Iterator[Warehouse]:
    wh = Warehouse.from_url(db_url)
    yield wh
    wh.dispose()


@pytest.fixture(scope="session")
def manifest() -> list[dict]:
    return json.loads((DEMO_CALLS / "manifest.json").read_text())


@pytest.fixture(scope="session")
def good_call(manifest) -> dict:
    return next(m for m in manifest if m["expected_quality"] == "good")


@pytest.fixture(scope="session")
def poor_call(manifest) -> dict:
    return next(m for m in manifest if m["expected_quality"] == "poor")


@pytest.fixture
def fake_llm() -> Iterator[FakeLLM]:
    server = FakeLLM()
    yield server
    server.close()
