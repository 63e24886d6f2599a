"""The warehouse on SQLite and PostgreSQL: migrations, idempotent upserts, tenant isolation."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa

from callqa.reporting.aggregates import daily_aggregates
from callqa.scoring.outcome import Attempt
from callqa.storage import tables as t
from callqa.storage.migrate import current_revision, head_revision
from tests.records import sample_record

DAY = date(2024, 5, 1)


_record = sample_record


def _call_values(tenant: str, external_id: str, **overrides) -> dict:
    values = {
        "tenant": tenant,
        "external_id": external_id,
        "partition_key": f"{tenant}__{external_id}",
        "audio_uri": f"file:///a/{external_id}.wav",
        "sha256": "a" * 64,
        "size_bytes": 1000,
        "codec": "pcm_s16le",
        "container": "wav",
        "channels": 2,
        "sample_rate": 8000,
        "duration_s": 10.0,
        "category": "sales",
        "operator": "ann",
        "started_at": datetime(2024, 5, 1, 9, 30, tzinfo=UTC),
    }
    values.update(overrides)
    return values


def _count(warehouse, table: sa.Table, **where) -> int:
    query = sa.select(sa.func.count()).select_from(table)
    for column, value in where.items():
        query = query.where(table.c[column] == value)
    with warehouse.engine.connect() as conn:
        return conn.execute(query).scalar_one()


def test_migrations_reach_head_and_rerun(warehouse):
    head = head_revision()
    assert head
    assert current_revision(warehouse.engine) == head
    warehouse.migrate()  # a second run is a no-op, not an error
    assert current_revision(warehouse.engine) == head
    tables = set(sa.inspect(warehouse.engine).get_table_names())
    assert set(t.metadata.tables) <= tables


def test_upsert_call_updates_in_place(warehouse):
    warehouse.upsert_call(**_call_values("a", "c1"))
    first = warehouse.call("a", "c1")
    warehouse.upsert_call(
        **_call_values("a", "c1", duration_s=42.5, operator="bob", sha256="b" * 64, category=None)
    )
    assert _count(warehouse, t.calls) == 1
    row = warehouse.call("a", "c1")
    assert (row["duration_s"], row["operator"], row["sha256"], row["category"]) == (
        42.5,
        "bob",
        "b" * 64,
        None,
    )
    assert row["id"] == first["id"]
    assert row["started_at"] == datetime(2024, 5, 1, 9, 30, tzinfo=UTC)
    assert row["started_at"].tzinfo is not None


def test_upsert_transcript_is_idempotent_per_stage(warehouse):
    common = {"tenant": "a", "external_id": "c1", "model": "tiny.en", "language": "en"}
    warehouse.upsert_transcript(stage="stt", word_count=3, data={"v": 1}, **common)
    warehouse.upsert_transcript(stage="diarized", word_count=3, data={"v": "d1"}, **common)
    warehouse.upsert_transcript(stage="stt", word_count=5, data={"v": 2, "x": [1, 2]}, **common)
    assert _count(warehouse, t.transcripts) == 2
    assert _count(warehouse, t.transcripts, stage="stt", word_count=5) == 1
    assert warehouse.transcript("a", "c1", "stt") == {"v": 2, "x": [1, 2]}
    assert warehouse.transcript("a", "c1", "diarized") == {"v": "d1"}
    assert warehouse.transcript("a", "c1", "other") is None


def test_stage_call_once_and_keep_its_status(warehouse):
    started = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)
    stage = {
        "tenant": "a",
        "external_id": "c1",
        "source": "file",
        "source_uri": "/in/c1.wav",
        "operator": "ann",
        "started_at": started,
    }
    assert warehouse.stage_call(**stage) is True
    warehouse.set_staged_status("a", ["c1"], "failed", error="boom")
    assert warehouse.stage_call(**{**stage, "source_uri": "/in/other.wav"}) is False
    assert _count(warehouse, t.staged_calls) == 1
    row = warehouse.staged_call("a", "c1")
    assert (row["status"], row["error"], row["source_uri"]) == ("failed", "boom", "/in/c1.wav")
    assert row["started_at"] == started
    assert [r["external_id"] for r in warehouse.staged_calls("a", ["failed"])] == ["c1"]
    assert warehouse.staged_calls("a", ["staged"]) == []


def test_save_analysis_replaces_the_calls_scores(warehouse):
    warehouse.save_analysis(
        _record("a", "c1", {"greeting": 5, "needs_discovery": 2, "closing": 4}), DAY
    )
    # Re-scored with a preset that dropped `closing`.
    second = _record("a", "c1", {"greeting": 3, "needs_discovery": 4}, summary="re-scored")
    warehouse.save_analysis(second, DAY)

    assert _count(warehouse, t.analyses) == 1
    assert warehouse.analysis("a", "c1") == second
    with warehouse.engine.connect() as conn:
        row = conn.execute(sa.select(t.analyses)).mappings().one()
        scores = dict(
            conn.execute(
                sa.select(t.criterion_scores.c.criterion, t.criterion_scores.c.score)
            ).all()
        )
    assert (row["summary"], row["weakest_criterion"], row["total"]) == (
        "re-scored",
        "greeting",
        second["scores"]["total"],
    )
    assert scores == {"greeting": 3, "needs_discovery": 4}


def test_record_attempts_is_append_only(warehouse):
    def attempt(n: int, valid: bool) -> dict:
        return Attempt(
            attempt=n,
            scorer="llm",
            model="m",
            prompt_version="abc",
            prompt_tokens=10 * n,
            valid=valid,
            error=None if valid else "bad json",
        ).as_dict()

    warehouse.record_attempts("a", "c1", "run-1", [attempt(1, False), attempt(2, True)])
    warehouse.record_attempts("a", "c1", "run-2", [attempt(1, True)])
    warehouse.record_attempts("a", "c1", "run-3", [])
    rows = warehouse.attempts("a", "c1")
    assert [(r["run_id"], r["attempt"], r["valid"], r["error"]) for r in rows] == [
        ("run-1", 1, False, "bad json"),
        ("run-1", 2, True, None),
        ("run-2", 1, True, None),
    ]
    assert _count(warehouse, t.scoring_attempts) == 3
    assert warehouse.attempts("b", "c1") == []


def test_tenants_are_isolated(warehouse):
    warehouse.stage_call(tenant="a", external_id="c1", source="file", source_uri="/in/c1.wav")
    warehouse.upsert_call(**_call_values("a", "c1"))
    warehouse.upsert_transcript(
        tenant="a",
        external_id="c1",
        stage="stt",
        model="m",
        language="en",
        word_count=1,
        data={"x": 1},
    )
    warehouse.save_analysis(_record("a", "c1", {"greeting": 4, "closing": 2}), DAY)
    warehouse.record_attempts(
        "a",
        "c1",
        "run",
        [
            {
                "attempt": 1,
                "scorer": "rules",
                "model": None,
                "prompt_version": "v",
                "prompt_tokens": 0,
                "completion_tokens": 0,
                "latency_ms": 0,
                "cost_usd": 0,
                "valid": True,
            }
        ],
    )
    calls_rows, criterion_rows = daily_aggregates(
        warehouse.analyses_frame("a"), warehouse.criterion_frame("a")
    )
    warehouse.replace_daily_aggregates("a", calls_rows, criterion_rows)

    # Tenant `a` sees its own data (so the emptiness below is meaningful) ...
    assert warehouse.call("a", "c1") is not None
    assert len(warehouse.analyses_frame("a")) == 1
    assert len(warehouse.daily_aggregates("a")) == 2
    # ... and tenant `b` sees none of it, through every read method.
    assert warehouse.staged_call("b", "c1") is None
    assert warehouse.staged_calls("b") == []
    assert warehouse.call("b", "c1") is None
    assert warehouse.transcript("b", "c1", "stt") is None
    assert warehouse.analysis("b", "c1") is None
    assert warehouse.attempts("b", "c1") == []
    assert warehouse.analyses_frame("b").empty
    assert warehouse.criterion_frame("b").empty
    assert warehouse.daily_aggregates("b") == []
    assert warehouse.daily_criterion_aggregates("b") == []
    # Status changes addressed to `b` do not touch `a`'s row.
    warehouse.set_staged_status("b", ["c1"], "processed")
    assert warehouse.staged_call("a", "c1")["status"] == "staged"


def test_replace_daily_aggregates_swaps_one_tenant(warehouse):
    for tenant, ext, operator, scores in [
        ("a", "c1", "ann", {"greeting": 5, "closing": 3}),
        ("a", "c2", "bob", {"greeting": 1, "closing": 1}),
        ("b", "c1", "cat", {"greeting": 3, "closing": 3}),
    ]:
        warehouse.save_analysis(_record(tenant, ext, scores, operator=operator), DAY)
    for tenant in ("a", "b"):
        warehouse.replace_daily_aggregates(
            tenant,
            *daily_aggregates(warehouse.analyses_frame(tenant), warehouse.criterion_frame(tenant)),
        )

    rows_a = warehouse.daily_aggregates("a")
    assert [(r["day"], r["operator"], r["calls"]) for r in rows_a] == [
        (DAY, "*", 2),
        (DAY, "ann", 1),
        (DAY, "bob", 1),
    ]
    assert rows_a[0]["mean_total"] == pytest.approx(37.5)  # (75 + 0) / 2
    team_greeting = [
        r
        for r in warehouse.daily_criterion_aggregates("a")
        if r["operator"] == "*" and r["criterion"] == "greeting"
    ]
    assert [(r["calls"], r["mean_score"]) for r in team_greeting] == [(2, 3.0)]

    # Re-aggregating `a` with fewer rows replaces its rows and leaves `b` alone.
    b_before = warehouse.daily_aggregates("b")
    one_row = {
        **{k: v for k, v in rows_a[1].items() if k not in ("id", "tenant", "updated_at")},
        "calls": 7,
    }
    warehouse.replace_daily_aggregates("a", [one_row], [])
    assert [(r["operator"], r["calls"]) for r in warehouse.daily_aggregates("a")] == [("ann", 7)]
    assert warehouse.daily_criterion_aggregates("a") == []
    assert warehouse.daily_aggregates("b") == b_before
    assert [r["operator"] for r in b_before] == ["*", "cat"]
    assert len(warehouse.daily_criterion_aggregates("b")) == 4
