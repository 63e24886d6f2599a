"""A call center's own database as a call source (`crm: {adapter: sql, url, query}`).

The tenant gives a SQLAlchemy URL (a secret reference: it holds a password) and one
SELECT. callqa polls it; nothing is ever written to that database.

The query contract
------------------
Columns (names as written, any case):

- `external_id`: the call's id in that database (a number or text).
- `recording_url`: an http(s) URL of the recording (read through `callqa.crm.fetch`).
- `watermark`: a timestamp, date or number that grows whenever the row changes (an
  `updated_at` kept by a trigger or the application, a change sequence, ...). NOT NULL.
- optional: `started_at`, `operator`, `category`, `duration_s`, `direction`
  (`inbound` / `outbound`), `links` (JSON text or a JSON column: card -> id).

Bind parameters: `:watermark`, `:last_id` and `:limit` (all three; no others). The query
must return only the rows after the position `(:watermark, :last_id)`, ordered by
`(watermark, external_id)` with external_id compared AS TEXT, at most `:limit` of them:

PostgreSQL::

    SELECT id::text AS external_id, recording_url, updated_at AS watermark,
           started_at, agent AS operator, duration AS duration_s
    FROM calls
    WHERE updated_at > :watermark
       OR (updated_at = :watermark AND id::text > :last_id)
    ORDER BY updated_at, id::text
    LIMIT :limit

MySQL / MariaDB: the same with `CAST(id AS CHAR)` in place of `id::text` (in PostgreSQL,
`CAST(id AS CHAR)` is `char(1)` and truncates ids to one character).

The comparison and the ORDER BY must use the same text expression: ordering by the
numeric `id` while comparing its text loses rows at page boundaries ('10' < '9' as text).
Both happen in the database, under the same collation, so they agree with each other; if
ids are text that differ only by letter case, use a binary collation (`COLLATE "C"`,
`utf8mb4_bin`) so two of them never compare equal. An index on `(updated_at, id)` keeps the
query cheap. SQLAlchemy's `text()` parses the bind parameters, so write
`CAST(:watermark AS timestamptz)` rather than `:watermark::timestamptz`, and a literal
colon as `\\:`.

Cursor and first poll
---------------------
The cursor is `{"t": <watermark type>, "w": <watermark>, "id": <external_id>}` of the last
row returned (rejected rows included): a position in the `(watermark, external_id)`
order, so rows sharing one watermark are split across pages without loss or repetition,
and it stays the same size however many rows there are. A row whose watermark grows
after it was read is read again (same external_id; staging dedupes). Timestamps
round-trip as ISO-8601 *as the database returned them*: a naive `timestamp`/`DATETIME`
comes back naive and is bound naive, an aware `timestamptz` keeps its offset, so the
comparison is exact to the microsecond either way. MySQL/MariaDB sessions are set to
`time_zone = '+00:00'` so `TIMESTAMP` columns read (and compare) in UTC whatever the
server's zone and its daylight-saving changes.

The first poll (no cursor) cannot know the watermark's type, and a minimum of the wrong
type is an error in PostgreSQL (`timestamp > integer`) or silently wrong in MySQL (a
date string compared to a number). So it first runs the query with a NULL watermark and
`:limit` 0, which returns no rows but describes the columns, and binds the minimum of the
watermark column's type: `1900-01-01 00:00:00` for timestamps and dates, -2**63 for
numbers, '' for text. Naive timestamps in `started_at` are taken as UTC.

Known limit: a row committed with a watermark older than one already read (a long
transaction that set `updated_at = now()` at its start) is behind the cursor and is
missed; use a watermark set at commit (or a sequence) if writers hold long transactions.

Connections: one engine per adapter, created on first use, `pool_pre_ping` (a connection
the server dropped between polls is replaced, not failed on), connect timeout, and a
read/statement timeout where the driver has one. Connection failures are
`CrmUnavailable`; errors in the query are `CrmError` naming the problem. Messages name
the database by its URL with the password hidden (`callqa.settings.redact_url`).

There is no card to write results to: `write_result` returns {} and the result stays in
callqa's warehouse and the per-call report. SQL sources are polled, never pushed to.

References: SQLAlchemy `text()` bind parameters and `create_engine(pool_pre_ping=...)`
(https://docs.sqlalchemy.org/en/20/core/sqlelement.html#sqlalchemy.sql.expression.text,
https://docs.sqlalchemy.org/en/20/core/pooling.html#disconnect-handling-pessimistic);
libpq `connect_timeout` / `options` (https://www.postgresql.org/docs/current/libpq-connect.html);
PyMySQL `connect_timeout`, `read_timeout`, `init_command`
(https://pymysql.readthedocs.io/en/latest/modules/connections.html); PEP 249 type objects
(`DATETIME`, `NUMBER`, `STRING`) for the column description.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote, urlsplit

from pydantic import ValidationError

from callqa.calls.keys import make_key
from callqa.config.crm import SqlSourceConfig
from callqa.crm.base import CallResult, CrmCall, CrmPage, RejectedRecord
from callqa.errors import (
    CallqaError,
    ConfigError,
    CrmError,
    CrmPayloadError,
    CrmUnavailable,
)
from callqa.settings import redact_url

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine
    from sqlalchemy.exc import DBAPIError

BIND_PARAMS = ("watermark", "last_id", "limit")
REQUIRED_COLUMNS = ("external_id", "recording_url", "watermark")
OPTIONAL_COLUMNS = ("started_at", "operator", "category", "duration_s", "direction", "links")
CONNECT_TIMEOUT_S = 10
READ_TIMEOUT_S = 120  # one page of a few thousand rows; longer means the query needs an index
# First-poll minimums by the watermark column's type (see the module docstring).
MIN_TIMESTAMP = datetime(1900, 1, 1)
MIN_NUMBER = -(2**63)
MIN_TEXT = ""
MAX_TEXT_WATERMARK = 256  # a text watermark lives in the cursor, which must stay small
# MySQL error codes that are outages (retried later), not mistakes in the query: lock wait
# timeout, too many connections, server shutdown, query interrupted, connection killed,
# MariaDB max_statement_time, MySQL max_execution_time. Codes >= 2000 are client errors
# (lost connection, cannot connect).
_MYSQL_TRANSIENT = {1040, 1053, 1205, 1317, 1927, 1969, 3024}
# SQLSTATE classes that are outages: connection exception, transaction rollback
# (deadlock, serialization), insufficient resources, operator intervention (statement
# timeout, admin shutdown), system error.
_TRANSIENT_SQLSTATE = {"08", "40", "53", "57", "58"}
_PG_CAST = re.compile(r"(?<![:\w\\]):(watermark|last_id|limit)::")


class SqlSourceAdapter:
    name: ClassVar[str] = "sql"

    def __init__(self, tenant_id: str, config: SqlSourceConfig):
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        self.tenant_id = tenant_id
        self.config = config
        secret = config.url.resolve(f"tenant {tenant_id} crm.url")
        try:
            # The URL object masks its password in str/repr; the plain text is not kept.
            self._url = make_url(secret.reveal())
        except ArgumentError:
            # Never echo the value: it holds a password.
            raise ConfigError(
                f"tenant {tenant_id} crm.url is not a SQLAlchemy URL "
                "(e.g. postgresql+psycopg://user:password@host:5432/db)"
            ) from None
        self.source = f"sql source of tenant {tenant_id} ({redact_url(secret.reveal())})"
        check_query(config.query, f"tenant {tenant_id} crm.query")
        self._engine: Engine | None = None

    # --- the adapter interface ------------------------------------------------------

    def list_calls(self, cursor: str | None, limit: int) -> CrmPage:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        position = Position.decode(cursor, self.source) if cursor else None
        with self._connection() as conn:
            if position is None:
                position = Position(self._first_watermark(conn), "")
            # One row more than asked: it says whether another page is ready now.
            rows = self._rows(
                conn,
                {"watermark": position.watermark, "last_id": position.last_id, "limit": limit + 1},
            )
        calls: list[CrmCall] = []
        rejected: list[RejectedRecord] = []
        for row in rows[:limit]:
            # Every returned row moves the cursor, rejected ones too: reported once.
            position = self._position_of(row)
            try:
                calls.append(self._call(row))
            except _RowProblem as problem:
                rejected.append(RejectedRecord(external_id=position.last_id, problem=str(problem)))
        return CrmPage(
            calls=calls, rejected=rejected, cursor=position.encode(), more=len(rows) > limit
        )

    def fetch_recording(self, source_uri: str, max_bytes: int) -> bytes:
        from callqa.crm.file_drop import read_remote

        return read_remote(source_uri, max_bytes=max_bytes)

    def write_result(
        self, links: dict[str, str], result: CallResult, existing: dict[str, str]
    ) -> dict[str, str]:
        """Nothing to write: a database row is not a card, and callqa never writes to a
        tenant's database. The result stays in callqa's warehouse and report."""
        return {}

    def parse_webhook(self, body: bytes, content_type: str) -> list[CrmCall]:
        raise CrmPayloadError(
            f"{self.source}: SQL sources are polled (every crm.poll_interval_s); "
            "they take no webhooks"
        )

    def close(self) -> None:
        """Close the pooled connections (the engine is created again on next use)."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    # --- the database ---------------------------------------------------------------

    def _engine_for_use(self) -> Engine:
        if self._engine is None:
            import sqlalchemy as sa
            from sqlalchemy.exc import ArgumentError, NoSuchModuleError

            try:
                self._engine = sa.create_engine(
                    self._url, pool_pre_ping=True, connect_args=_connect_args(self._url)
                )
            except (NoSuchModuleError, ImportError, ArgumentError) as exc:
                raise ConfigError(
                    f"{self.source}: cannot use this database URL ({self._scrub(str(exc))})"
                ) from None
        return self._engine

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        from sqlalchemy.exc import DBAPIError

        engine = self._engine_for_use()
        try:
            conn = engine.connect()
        except DBAPIError as exc:
            raise CrmUnavailable(f"{self.source}: cannot connect ({self._reason(exc)})") from None
        with conn:
            yield conn

    def _execute(self, conn: Connection, params: dict[str, Any]):
        import sqlalchemy as sa
        from sqlalchemy.exc import DBAPIError, StatementError

        try:
            return conn.execute(sa.text(self.config.query), params)
        except DBAPIError as exc:
            if _transient(exc):
                raise CrmUnavailable(
                    f"{self.source}: the database failed to answer ({self._reason(exc)})"
                ) from None
            raise CrmError(f"{self.source}: the query failed: {self._reason(exc)}") from None
        except StatementError as exc:  # binding the parameters failed, before the database
            raise CrmError(
                f"{self.source}: the query failed: {self._scrub(str(exc.orig or exc))}"
            ) from None

    def _first_watermark(self, conn: Connection) -> Any:
        """The minimum of the watermark column's type, read from the column description of
        the query run with a NULL watermark and no rows (see the module docstring)."""
        result = self._execute(conn, {"watermark": None, "last_id": MIN_TEXT, "limit": 0})
        try:
            description = result.cursor.description if result.cursor is not None else None
        finally:
            result.close()
        if not description:
            raise CrmError(f"{self.source}: the query returns no rows (is it a SELECT?)")
        names = [str(column[0]).lower() for column in description]
        self._check_columns(names)
        type_code = description[names.index("watermark")][1]
        dbapi = self._engine_for_use().dialect.loaded_dbapi
        if _is_type(dbapi, ("DATETIME", "DATE"), type_code):
            return MIN_TIMESTAMP
        if _is_type(dbapi, ("NUMBER",), type_code):
            return MIN_NUMBER
        if _is_type(dbapi, ("STRING",), type_code):
            return MIN_TEXT
        raise CrmError(
            f"{self.source}: the watermark column is neither a timestamp, a date, a number "
            f"nor text (database type code {type_code!r})"
        )

    def _rows(self, conn: Connection, params: dict[str, Any]) -> list[dict[str, Any]]:
        from sqlalchemy.exc import DBAPIError, ResourceClosedError

        result = self._execute(conn, params)
        if not result.returns_rows:
            raise CrmError(f"{self.source}: the query returns no rows (is it a SELECT?)")
        columns = result.keys()  # iterating the result itself would read its rows
        names = [str(key).lower() for key in columns]
        self._check_columns(names)
        try:
            # :limit bounds what the database sends; fetchmany bounds it again if the
            # query ignores it, so a page can never be the whole table.
            raw = result.fetchmany(params["limit"])
        except DBAPIError as exc:
            if _transient(exc):
                raise CrmUnavailable(
                    f"{self.source}: the database failed to answer ({self._reason(exc)})"
                ) from None
            raise CrmError(f"{self.source}: the query failed: {self._reason(exc)}") from None
        except ResourceClosedError:
            raise CrmError(f"{self.source}: the query returns no rows") from None
        finally:
            result.close()
        return [dict(zip(names, row, strict=True)) for row in raw]

    def _check_columns(self, names: list[str]) -> None:
        missing = [c for c in REQUIRED_COLUMNS if c not in names]
        if missing:
            raise CrmError(
                f"{self.source}: the query returns no column {', '.join(missing)} "
                f"(it must select {', '.join(REQUIRED_COLUMNS)}; returned: {', '.join(names)})"
            )

    # --- rows -----------------------------------------------------------------------

    def _position_of(self, row: Mapping[str, Any]) -> Position:
        if row["external_id"] is None:
            raise CrmError(
                f"{self.source}: the query returned a row with a NULL external_id; "
                "the cursor needs it (filter such rows out in the query)"
            )
        if row["watermark"] is None:
            raise CrmError(
                f"{self.source}: the query returned a row with a NULL watermark "
                f"(external_id {str(row['external_id'])[:128]!r}); the watermark must "
                "never be NULL (COALESCE it, or filter such rows out)"
            )
        return Position(row["watermark"], str(row["external_id"]))

    def _call(self, row: Mapping[str, Any]) -> CrmCall:
        external_id = str(row["external_id"])
        url = row["recording_url"]
        if url is None:
            raise _RowProblem("recording_url is NULL")
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
            raise _RowProblem("recording_url is not an http(s) URL")
        try:
            make_key(self.tenant_id, external_id)
        except CallqaError as exc:
            raise _RowProblem(str(exc)) from None
        fields: dict[str, Any] = {"external_id": external_id, "recording_url": url}
        for column in OPTIONAL_COLUMNS:
            if row.get(column) is not None:
                fields[column] = row[column]
        if isinstance(fields.get("duration_s"), Decimal):
            fields["duration_s"] = float(fields["duration_s"])
        if isinstance(fields.get("direction"), str):
            fields["direction"] = fields["direction"].strip().lower()
        if "links" in fields:
            fields["links"] = _links(fields["links"])
        if "category" not in fields and self.config.category:
            fields["category"] = self.config.category
        try:
            return CrmCall.model_validate(fields)
        except ValidationError as exc:
            raise _RowProblem(validation_problem(exc)) from None

    # --- messages -------------------------------------------------------------------

    def _reason(self, exc: DBAPIError) -> str:
        """The driver's message, first line, without the password (none of the drivers
        puts it there, but a message is checked rather than trusted)."""
        orig = exc.orig if exc.orig is not None else exc
        text = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
        return self._scrub(f"{type(orig).__name__}: {text}"[:300])

    def _scrub(self, message: str) -> str:
        password = self._url.password
        if password:
            for form in {str(password), quote(str(password), safe="")}:
                message = message.replace(form, "***")
        return message


class _RowProblem(Exception):
    """Why one row cannot be a CrmCall; it goes to `rejected`."""


@dataclass(frozen=True)
class Position:
    """Where the next page starts: after this (watermark, external_id)."""

    watermark: Any
    last_id: str

    def encode(self) -> str:
        kind, value = _encode_watermark(self.watermark)
        return json.dumps({"t": kind, "w": value, "id": self.last_id}, separators=(",", ":"))

    @classmethod
    def decode(cls, cursor: str, source: str) -> Position:
        try:
            data = json.loads(cursor)
            return cls(_decode_watermark(data["t"], data["w"]), str(data["id"]))
        except (ValueError, TypeError, KeyError, ArithmeticError):
            raise CrmError(
                f"{source}: cursor {cursor[:80]!r} is not a SQL source cursor "
                "(reset the tenant's sensor cursor to poll from the beginning)"
            ) from None


def _encode_watermark(value: Any) -> tuple[str, Any]:
    # bool is an int subclass but no watermark; datetime is a date subclass: test it first.
    if isinstance(value, datetime):
        return "datetime", value.isoformat()
    if isinstance(value, date):
        return "date", value.isoformat()
    if isinstance(value, int) and not isinstance(value, bool):
        return "int", value
    if isinstance(value, Decimal) and value.is_finite():
        return "decimal", str(value)
    if isinstance(value, float) and math.isfinite(value):
        return "float", value  # json writes the shortest repr, which reads back exactly
    if isinstance(value, str) and len(value) <= MAX_TEXT_WATERMARK:
        return "text", value
    raise CrmError(
        f"a watermark of type {type(value).__name__} cannot be kept in the cursor "
        f"(use a timestamp, a date, a number or text of at most {MAX_TEXT_WATERMARK} characters)"
    )


def _decode_watermark(kind: str, value: Any) -> Any:
    decoders = {
        "datetime": datetime.fromisoformat,
        "date": date.fromisoformat,
        "int": int,
        "decimal": Decimal,
        "float": float,
        "text": str,
    }
    return decoders[kind](value)


def _links(value: Any) -> dict[str, str]:
    """The links column: JSON text, or a mapping from a JSON column; ids may be numbers."""
    if isinstance(value, bytes | bytearray):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise _RowProblem("links is not valid JSON") from None
    if not isinstance(value, Mapping):
        raise _RowProblem("links must be a JSON object of card type -> card id")
    links = {}
    for key, card in value.items():
        if isinstance(card, bool) or not isinstance(card, str | int):
            raise _RowProblem(f"links[{str(key)[:40]!r}] must be a string or integer id")
        links[str(key)] = str(card)
    return links


def validation_problem(exc: ValidationError) -> str:
    """Pydantic's errors as `field: message; ...` (never the input values: they may hold
    a recording URL with a token)."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'record'}: {e['msg']}" for e in exc.errors()
    )


def check_query(query: str, where: str) -> None:
    """ConfigError unless the query binds exactly :watermark, :last_id and :limit."""
    import sqlalchemy as sa

    names = set(sa.text(query).compile().params)
    missing = [f":{n}" for n in BIND_PARAMS if n not in names]
    unknown = sorted(f":{n}" for n in names - set(BIND_PARAMS))
    # `:watermark::timestamp` is not a bind parameter to text(): it would reach the
    # database as written and fail on every poll.
    if cast := _PG_CAST.search(query):
        raise ConfigError(
            f"{where}: {cast.group(0)}... is not read as a bind parameter; write "
            f"CAST(:{cast.group(1)} AS type) instead"
        )
    if missing:
        raise ConfigError(
            f"{where}: the query must use the bind parameters :watermark, :last_id and "
            f":limit; it does not use {', '.join(missing)} (write CAST(:watermark AS type), "
            "not :watermark::type)"
        )
    if unknown:
        raise ConfigError(
            f"{where}: the query uses bind parameters callqa does not fill: "
            f"{', '.join(unknown)} (only :watermark, :last_id and :limit; a literal colon "
            "is written \\:)"
        )


def _connect_args(url: Any) -> dict[str, Any]:
    """Timeouts (and MySQL's session time zone) for the drivers that take them; a value
    the URL's query string already sets wins."""
    driver = url.get_driver_name()
    args: dict[str, Any] = {}
    if driver in ("psycopg", "psycopg2"):
        args = {
            "connect_timeout": CONNECT_TIMEOUT_S,
            # psycopg has no client read timeout; the server's statement_timeout bounds
            # a query instead.
            "options": f"-c statement_timeout={READ_TIMEOUT_S * 1000}",
        }
    elif driver == "pymysql":
        args = {
            "connect_timeout": CONNECT_TIMEOUT_S,
            "read_timeout": READ_TIMEOUT_S,
            "init_command": "SET time_zone = '+00:00'",
        }
    return {k: v for k, v in args.items() if k not in url.query}


def _is_type(dbapi: Any, names: tuple[str, ...], type_code: Any) -> bool:
    """PEP 249: a description's type_code compares equal to the module's type objects."""
    return any(
        getattr(dbapi, n, None) is not None and type_code == getattr(dbapi, n) for n in names
    )


def _transient(exc: DBAPIError) -> bool:
    """An outage to retry later (lost connection, timeout, deadlock), not a mistake in
    the query."""
    from sqlalchemy.exc import OperationalError

    if exc.connection_invalidated:
        return True
    orig = exc.orig
    state = getattr(orig, "sqlstate", None)
    if isinstance(state, str) and state[:2] in _TRANSIENT_SQLSTATE:
        return True
    code = getattr(orig, "args", (None,))[0] if getattr(orig, "args", None) else None
    if isinstance(code, int):  # MySQL drivers: (errno, message)
        return code >= 2000 or code in _MYSQL_TRANSIENT
    if isinstance(state, str) and state:
        return False
    # A driver that tells nothing more: OperationalError is the PEP 249 class for
    # "errors related to the database's operation", mostly outages.
    return isinstance(exc, OperationalError)
