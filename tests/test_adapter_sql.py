"""The SQL call source against the real PostgreSQL and MariaDB servers of this machine.

Every test that needs a server gets its own throwaway database (PostgreSQL through the
`pg_url` fixture of conftest.py, MariaDB through `mariadb_url` here), dropped afterwards.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from callqa.config.crm import SqlSourceConfig
from callqa.crm.adapters.sql_source import SqlSourceAdapter
from callqa.crm.base import CallResult, CrmPage
from callqa.crm.registry import adapter_class
from callqa.errors import AudioError, ConfigError, CrmError, CrmPayloadError, CrmUnavailable
from callqa.settings import ALLOW_PRIVATE_URLS_ENV
from tests import crm_paging as paging
from tests.databases import server_problem, throwaway_database
from tests.fakes import FakeRecordingServer
from tests.paths import DEMO_CALLS

MARIADB_ADMIN_URL = os.environ.get(
    "CALLQA_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/"
)
URL_ENV = "TEST_SQL_URL"
BASE = datetime(2025, 3, 1, 9, 0, 0)


# --- servers and databases ----------------------------------------------------------


@pytest.fixture(scope="session")
def mariadb_server_url() -> str:
    problem = server_problem(MARIADB_ADMIN_URL, connect_timeout=5)
    if problem:
        pytest.skip(f"MariaDB at {problem}; set CALLQA_TEST_MARIADB_URL")
    return MARIADB_ADMIN_URL


@pytest.fixture
def mariadb_url(mariadb_server_url) -> Iterator[str]:
    """A fresh MariaDB database for one test, dropped afterwards."""
    with throwaway_database(mariadb_server_url) as url:
        yield url


@dataclass
class Db:
    """One throwaway database on one of the two servers, and how to speak to it."""

    kind: str  # "postgresql" | "mariadb"
    url: str

    @property
    def id_text(self) -> str:
        # PostgreSQL's CAST(id AS CHAR) is char(1): it would cut ids to one character.
        return "id::text" if self.kind == "postgresql" else "CAST(id AS CHAR)"

    def column_type(self, watermark: str) -> str:
        return {
            ("postgresql", "naive"): "TIMESTAMP(6)",
            ("postgresql", "aware"): "TIMESTAMPTZ",
            ("mariadb", "naive"): "DATETIME(6)",
            ("mariadb", "aware"): "TIMESTAMP(6)",
        }.get((self.kind, watermark), "BIGINT")

    def engine(self):
        import sqlalchemy as sa

        return sa.create_engine(self.url)

    def run(self, sql: str, rows: list[dict] | None = None) -> None:
        import sqlalchemy as sa

        engine = self.engine()
        try:
            with engine.begin() as conn:
                conn.execute(sa.text(sql), rows) if rows else conn.execute(sa.text(sql))
        finally:
            engine.dispose()

    def create_telephony(self, watermark: str = "naive") -> None:
        started = "TIMESTAMP(6)" if self.kind == "postgresql" else "DATETIME(6)"
        self.run(
            f"""CREATE TABLE telephony (
                id INTEGER PRIMARY KEY,
                changed {self.column_type(watermark)} NOT NULL,
                started {started} NULL,
                agent VARCHAR(64) NULL,
                record_url TEXT NULL,
                duration NUMERIC(10, 2) NULL,
                direction VARCHAR(16) NULL,
                crm_links TEXT NULL
            )"""
        )

    def insert(self, rows: list[dict]) -> None:
        full = [
            {
                "started": None,
                "agent": None,
                "duration": None,
                "direction": None,
                "crm_links": None,
                **row,
            }
            for row in rows
        ]
        self.run(
            "INSERT INTO telephony (id, changed, started, agent, record_url, duration, "
            "direction, crm_links) VALUES (:id, :changed, :started, :agent, :record_url, "
            ":duration, :direction, :crm_links)",
            full,
        )

    def query(self) -> str:
        """The canonical query of the module docstring, for this server."""
        i = self.id_text
        return (
            f"SELECT {i} AS external_id, record_url AS recording_url, changed AS watermark, "
            "started AS started_at, agent AS operator, duration AS duration_s, direction, "
            "crm_links AS links "
            "FROM telephony "
            f"WHERE changed > :watermark OR (changed = :watermark AND {i} > :last_id) "
            f"ORDER BY changed, {i} LIMIT :limit"
        )


@pytest.fixture(params=[pytest.param("postgresql", marks=pytest.mark.postgres), "mariadb"])
def db(request) -> Db:
    fixture = "pg_url" if request.param == "postgresql" else "mariadb_url"
    return Db(request.param, request.getfixturevalue(fixture))


@pytest.fixture
def adapters(monkeypatch) -> Iterator[list[SqlSourceAdapter]]:
    """Adapters made in a test, closed (pool disposed) before its database is dropped."""
    made: list[SqlSourceAdapter] = []
    yield made
    for adapter in made:
        adapter.close()


@pytest.fixture
def make_adapter(monkeypatch, adapters):
    def make(url: str, query: str, page_size: int = 100, **extra) -> SqlSourceAdapter:
        monkeypatch.setenv(URL_ENV, url)
        config = SqlSourceConfig.model_validate(
            {"adapter": "sql", "url": {"env": URL_ENV}, "query": query, "page_size": page_size}
            | extra
        )
        adapter = SqlSourceAdapter("acme", config)
        adapters.append(adapter)
        return adapter

    return make


def drain(adapter: SqlSourceAdapter, cursor: str | None, limit: int) -> list[CrmPage]:
    """Poll page after page until the source says it is caught up."""
    return paging.drain(adapter, cursor, limit)[0]


def ids(pages: list[CrmPage]) -> list[str]:
    return [c.external_id for p in pages for c in p.calls]


def url(n: int) -> str:
    return f"https://records.example.com/rec/{n}.mp3?token=abc"


# --- paging -------------------------------------------------------------------------


@pytest.mark.parametrize("watermark", ["naive", "aware", "number"])
def test_pages_1200_rows_with_ties_each_exactly_once_in_order(db, make_adapter, watermark):
    db.create_telephony(watermark)
    rng = random.Random(7)
    # 30 distinct watermark values, 40 rows on each: every page boundary falls in a tie.
    # Microseconds prove the timestamp round-trips exactly through the cursor.
    values = [
        n * 17 + 3
        if watermark == "number"
        else BASE + timedelta(seconds=n * 1.5, microseconds=123_456 + n)
        for n in range(30)
    ]
    rows = [
        {
            "id": i,
            "changed": values[rng.randrange(30)],
            "record_url": url(i),
            "agent": f"agent-{i % 7}",
            "duration": f"{i % 300}.25",
            "direction": "inbound" if i % 2 else "OUTBOUND",
            "crm_links": json.dumps({"leads": i, "contacts": str(i * 3)}),
            "started": BASE - timedelta(minutes=i),
        }
        for i in range(1, 1201)
    ]
    rng.shuffle(rows)  # insertion order must not matter
    db.insert(rows)
    adapter = make_adapter(db.url, db.query(), page_size=100)

    pages = drain(adapter, None, 100)

    expected = [str(r["id"]) for r in sorted(rows, key=lambda r: (r["changed"], str(r["id"])))]
    assert ids(pages) == expected
    assert len(set(ids(pages))) == 1200
    assert [len(p.calls) for p in pages] == [100] * 12
    assert [p.more for p in pages] == [True] * 11 + [False]
    assert not any(p.rejected for p in pages)
    assert all(len(p.cursor or "") < 120 for p in pages)  # small, whatever the table size
    call = next(c for p in pages for c in p.calls if c.external_id == "42")
    assert call.recording_url == url(42)
    assert call.operator == "agent-0"
    assert call.duration_s == 42.25
    assert call.direction == "outbound"
    assert call.links == {"leads": "42", "contacts": "126"}
    assert call.started_at == (BASE - timedelta(minutes=42)).replace(tzinfo=UTC)
    # Caught up: the last cursor finds nothing more and stays where it is.
    again = adapter.list_calls(pages[-1].cursor, 100)
    assert (again.calls, again.rejected, again.more) == ([], [], False)
    assert again.cursor == pages[-1].cursor


def test_changed_rows_are_found_again_and_new_rows_found(db, make_adapter):
    db.create_telephony()
    db.insert(
        [
            {"id": i, "changed": BASE + timedelta(seconds=i // 2), "record_url": url(i)}
            for i in range(1, 9)
        ]
    )
    adapter = make_adapter(db.url, db.query(), page_size=3)
    first = drain(adapter, None, 3)
    assert ids(first) == ["1", "2", "3", "4", "5", "6", "7", "8"]
    cursor = first[-1].cursor

    # After the finished poll: row 2 changes (its watermark grows), two rows arrive, one
    # of them tied with the changed row.
    later = BASE + timedelta(hours=1)
    db.run(
        "UPDATE telephony SET changed = :t, agent = 'supervisor' WHERE id = 2",
        [{"t": later}],
    )
    db.insert(
        [
            {"id": 20, "changed": later, "record_url": url(20)},
            {"id": 9, "changed": later + timedelta(seconds=1), "record_url": url(9)},
        ]
    )
    second = drain(adapter, cursor, 3)

    # Tied rows come in text order of the id: "2" < "20".
    assert ids(second) == ["2", "20", "9"]
    changed = second[0].calls[0]
    assert changed.operator == "supervisor"
    assert drain(adapter, second[-1].cursor, 3)[0].calls == []


def test_malformed_rows_are_rejected_and_the_rest_go_on(db, make_adapter):
    db.create_telephony()
    t = BASE
    db.insert(
        [
            {"id": 1, "changed": t, "record_url": url(1)},
            {"id": 2, "changed": t, "record_url": None},
            {"id": 3, "changed": t, "record_url": url(3), "duration": "-5.00"},
            {"id": 4, "changed": t, "record_url": url(4), "direction": "sideways"},
            {"id": 5, "changed": t, "record_url": "file:///etc/passwd"},
            {"id": 6, "changed": t, "record_url": url(6), "crm_links": "{not json"},
            {"id": 7, "changed": t, "record_url": url(7), "duration": "61.50"},
        ]
    )
    adapter = make_adapter(db.url, db.query(), page_size=4)

    pages = drain(adapter, None, 4)

    assert ids(pages) == ["1", "7"]
    rejected = {r.external_id: r.problem for p in pages for r in p.rejected}
    assert set(rejected) == {"2", "3", "4", "5", "6"}
    assert "recording_url is NULL" in rejected["2"]
    assert "duration_s" in rejected["3"] and "greater than or equal to 0" in rejected["3"]
    assert "direction" in rejected["4"]
    assert "http(s)" in rejected["5"]
    assert "links is not valid JSON" in rejected["6"]
    # Reported once: the cursor moved past the rejected rows.
    again = adapter.list_calls(pages[-1].cursor, 4)
    assert (again.calls, again.rejected) == ([], [])


def test_a_number_watermark_and_ids_that_sort_differently_as_text(db, make_adapter):
    """Ids 9 and 10 on one watermark: compared as text ("10" < "9") on both sides of a
    page boundary, so neither is lost."""
    db.create_telephony("number")
    db.insert([{"id": i, "changed": 5, "record_url": url(i)} for i in (8, 9, 10, 11, 100)])
    adapter = make_adapter(db.url, db.query(), page_size=1)
    pages = drain(adapter, None, 1)
    assert ids(pages) == ["10", "100", "11", "8", "9"]
    assert json.loads(pages[0].cursor) == {"t": "int", "w": 5, "id": "10"}


# --- errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://postgres:Pa55-w0rd-xyz@127.0.0.1:1/calls",
        "mysql+pymysql://root:Pa55-w0rd-xyz@127.0.0.1:1/calls",
    ],
)
def test_unreachable_server_is_unavailable_without_the_password(make_adapter, url):
    adapter = make_adapter(url, Db("postgresql", url).query())
    with pytest.raises(CrmUnavailable) as caught:
        adapter.list_calls(None, 10)
    message = str(caught.value)
    assert "Pa55-w0rd-xyz" not in message
    assert "127.0.0.1:1/calls" in message and "***" in message
    assert "cannot connect" in message
    assert "Pa55-w0rd-xyz" not in repr(adapter.__dict__.get("source"))


def test_wrong_password_on_the_real_mariadb_is_unavailable_without_it(mariadb_url, make_adapter):
    import sqlalchemy as sa

    bad = (
        sa.engine.make_url(mariadb_url)
        .set(password="Wr0ng-Pa55-qq")
        .render_as_string(hide_password=False)
    )
    adapter = make_adapter(bad, Db("mariadb", bad).query())
    with pytest.raises(CrmUnavailable) as caught:
        adapter.list_calls(None, 10)
    assert "Wr0ng-Pa55-qq" not in str(caught.value)
    assert "Access denied" in str(caught.value)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (
            "SELECT nope AS external_id, record_url AS recording_url, changed AS watermark "
            "FROM telephony WHERE changed > :watermark OR (changed = :watermark AND "
            "record_url > :last_id) ORDER BY changed LIMIT :limit",
            "nope",
        ),
        (
            "SELEC external_id FROM telephony WHERE :watermark < 1 AND :last_id = '' LIMIT :limit",
            "syntax",
        ),
        (
            "SELECT record_url AS recording_url, changed AS watermark FROM telephony "
            "WHERE changed > :watermark AND record_url > :last_id LIMIT :limit",
            "no column external_id",
        ),
    ],
    ids=["unknown-column", "syntax-error", "missing-column"],
)
def test_broken_query_is_a_crm_error(db, make_adapter, query, expected):
    db.create_telephony()
    adapter = make_adapter(db.url, query)
    with pytest.raises(CrmError) as caught:
        adapter.list_calls(None, 10)
    assert not isinstance(caught.value, CrmUnavailable)  # fixing the query, not waiting
    assert expected in str(caught.value)
    assert "sql source of tenant acme" in str(caught.value)


@pytest.mark.parametrize("kind", ["postgresql", "mariadb"])
@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda q: q.replace(":last_id", "''"), "does not use :last_id"),
        (lambda q: q.replace("LIMIT :limit", "LIMIT 10"), "does not use :limit"),
        (
            lambda q: q.replace("changed > :watermark", "changed > :watermark::timestamp"),
            "CAST(:watermark AS type)",
        ),
        (lambda q: q.replace("SELECT ", "SELECT :tenant AS tenant, "), ":tenant"),
    ],
    ids=["no-last-id", "no-limit", "pg-cast-syntax", "unknown-param"],
)
def test_query_without_the_bind_parameters_is_a_config_error(make_adapter, kind, mutate, expected):
    url = (
        "postgresql+psycopg://postgres@127.0.0.1:5432/x"
        if kind == "postgresql"
        else "mysql+pymysql://root@127.0.0.1:3306/x"
    )
    query = mutate(Db(kind, url).query())
    with pytest.raises(ConfigError) as caught:
        make_adapter(url, query)
    assert expected in str(caught.value)
    assert "tenant acme crm.query" in str(caught.value)


def test_a_cursor_of_something_else_is_a_crm_error(make_adapter):
    adapter = make_adapter(
        "postgresql+psycopg://postgres@127.0.0.1:5432/x", Db("postgresql", "").query()
    )
    with pytest.raises(CrmError, match="not a SQL source cursor"):
        adapter.list_calls('{"m": 1.5, "p": "a.flac"}', 10)


def test_url_must_be_set_and_must_be_a_url(make_adapter, monkeypatch):
    with pytest.raises(ConfigError, match="not a SQLAlchemy URL"):
        make_adapter("no url here: secret-ish", Db("postgresql", "").query())
    config = SqlSourceConfig.model_validate(
        {
            "adapter": "sql",
            "url": {"env": "TEST_SQL_URL_UNSET"},
            "query": Db("postgresql", "").query(),
        }
    )
    monkeypatch.delenv("TEST_SQL_URL_UNSET", raising=False)
    with pytest.raises(ConfigError, match="TEST_SQL_URL_UNSET is not set"):
        SqlSourceAdapter("acme", config)


# --- recordings, results, webhooks --------------------------------------------------


@pytest.mark.postgres
def test_fetch_recording_reads_the_listed_url(pg_url, make_adapter, monkeypatch):
    monkeypatch.setenv(ALLOW_PRIVATE_URLS_ENV, "127.0.0.1")
    audio = (DEMO_CALLS / "call-002.flac").read_bytes()
    server = FakeRecordingServer(audio)
    try:
        db = Db("postgresql", pg_url)
        db.create_telephony()
        db.insert([{"id": 1, "changed": BASE, "record_url": server.url("/audio.wav")}])
        adapter = make_adapter(db.url, db.query())
        (call,) = adapter.list_calls(None, 10).calls
        assert adapter.fetch_recording(call.recording_url, max_bytes=len(audio)) == audio
        assert server.paths == ["/audio.wav"]
        with pytest.raises(AudioError, match="exceeds"):
            adapter.fetch_recording(call.recording_url, max_bytes=len(audio) - 1)
        with pytest.raises(AudioError, match="only http"):
            adapter.fetch_recording(f"file://{DEMO_CALLS / 'call-002.flac'}", max_bytes=10**8)
    finally:
        server.close()


def test_no_card_to_write_and_no_webhooks(make_adapter):
    adapter = make_adapter(
        "postgresql+psycopg://postgres@127.0.0.1:5432/x", Db("postgresql", "").query()
    )
    result = CallResult(
        partition_key="acme__1", total=80, summary="ok", report_url="https://r/1", preset="p"
    )
    assert adapter.write_result({"leads": "1"}, result, {"leads": "5"}) == {}
    with pytest.raises(CrmPayloadError, match="polled"):
        adapter.parse_webhook(b"{}", "application/json")
    assert adapter_class("sql") is SqlSourceAdapter
