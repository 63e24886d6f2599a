"""The warehouse on SQLite and PostgreSQL: migrations, idempotent upserts, tenant isolation,
results kept by version (valid and invalid), patterns and costs for the aggregates."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa

from callqa.reporting.aggregates import daily_aggregates, daily_pattern_aggregates
from callqa.scoring.outcome import Attempt
from callqa.storage import tables as t
from callqa.storage.migrate import current_revision, head_revision, upgrade
from callqa.storage.warehouse import FRAME_COLUMNS, Warehouse
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


def test_migrations_and_create_all_agree(warehouse):
    """The schema the migrations build is the one `tables.py` declares: same tables,
    columns, types, nullability, server defaults, indexes and constraints."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with warehouse.engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        assert compare_metadata(context, t.metadata) == []


def test_upgrade_to_0005_keeps_existing_rows(db_url):
    """A warehouse at 0004 with analyses and aggregates: 0005 gives them defaults that keep
    their meaning, and copies their patterns into call_patterns."""
    wh = Warehouse.from_url(db_url, migrate=False)
    upgrade(wh.engine, "0004")
    record = _record("a", "c1", {"greeting": 4})
    record["patterns"] = [{"type": "objection", "quote": "cheaper plan", "start": 4.5}]  # 1.x
    now = datetime(2024, 5, 1, 12, tzinfo=UTC)
    with wh.engine.begin() as conn:
        conn.execute(
            t.analyses.insert().values(
                tenant="a",
                external_id="c1",
                call_day=DAY,
                preset="p1",
                prompt_version="old",
                scorer="rules",
                total=75.0,
                weakest_criterion="greeting",
                summary="ok",
                cost_usd=0.25,
                record=record,
                updated_at=now,
            )
        )
        conn.execute(
            t.daily_aggregates.insert().values(
                tenant="a",
                day=DAY,
                operator="*",
                calls=1,
                mean_total=75.0,
                min_total=75.0,
                max_total=75.0,
                audio_s=10.0,
                cost_usd=0.25,
                mean_operator_talk_share=0.5,
                mean_silence_ratio=0.1,
                interruptions=0,
                updated_at=now,
            )
        )
    wh.migrate()
    assert current_revision(wh.engine) == head_revision()
    with wh.engine.connect() as conn:
        analysis = conn.execute(sa.select(t.analyses)).mappings().one()
        patterns = conn.execute(sa.select(t.call_patterns)).mappings().all()
        aggregate = conn.execute(sa.select(t.daily_aggregates)).mappings().one()
    assert (analysis["variant"], analysis["evidence_rate"]) == ("control", None)
    assert [
        (p["tenant"], p["external_id"], p["pattern"], p["kind"], p["speaker"], p["start_s"])
        for p in patterns
    ] == [("a", "c1", "objection", "other", "any", 4.5)]
    assert (aggregate["llm_cost_usd"], aggregate["speech_cost_usd"]) == (0.25, 0.0)
    assert (aggregate["unpriced_calls"], aggregate["mean_evidence_rate"]) == (0, None)
    assert [r["pattern"] for r in wh.pattern_frame("a").to_dict("records")] == ["objection"]
    wh.dispose()


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


def test_transcript_cost_is_stored_and_unknown_stays_null(warehouse):
    common = {"tenant": "a", "model": "whisper-1", "language": "en", "word_count": 3, "data": {}}
    warehouse.upsert_transcript(external_id="c1", stage="stt", cost_usd=0.006, **common)
    warehouse.upsert_transcript(external_id="c2", stage="stt", **common)
    warehouse.upsert_transcript(external_id="c1", stage="diarized", **common)
    with warehouse.engine.connect() as conn:
        costs = conn.execute(
            sa.select(
                t.transcripts.c.external_id, t.transcripts.c.stage, t.transcripts.c.cost_usd
            ).order_by(t.transcripts.c.external_id, t.transcripts.c.stage)
        ).all()
    assert [tuple(r) for r in costs] == [
        ("c1", "diarized", None),
        ("c1", "stt", 0.006),
        ("c2", "stt", None),
    ]


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


KINDS = {"price_objection": "objection", "competitor_mention": "competitor"}


def test_save_analysis_publishes_scores_patterns_and_its_version(warehouse):
    record = _record(
        "a",
        "c1",
        {"greeting": 4, "objection_handling": None, "closing": 2},
        patterns=[("price_objection", "customer"), ("mystery", "customer")],
        variant="short_prompt",
        model="openai/gpt-4o-mini",
        cost_usd=0.004,
    )
    record["scoring"]["evidence"] = {"quotes": 4, "verified": 3}
    warehouse.save_analysis(record, DAY, run_id="run-1", pattern_kinds=KINDS)

    with warehouse.engine.connect() as conn:
        analysis = conn.execute(sa.select(t.analyses)).mappings().one()
        scores = conn.execute(
            sa.select(t.criterion_scores.c.criterion, t.criterion_scores.c.score).order_by(
                t.criterion_scores.c.criterion
            )
        ).all()
        patterns = conn.execute(
            sa.select(t.call_patterns).order_by(t.call_patterns.c.pattern)
        ).mappings()
        patterns = [(p["pattern"], p["kind"], p["speaker"], p["quote"]) for p in patterns]
    assert (analysis["variant"], analysis["evidence_rate"]) == ("short_prompt", 0.75)
    assert (analysis["scorer"], analysis["model"], analysis["cost_usd"]) == (
        "llm",
        "openai/gpt-4o-mini",
        0.004,
    )
    assert [tuple(r) for r in scores] == [("closing", 2), ("greeting", 4)]  # N/A: no row
    assert patterns == [
        ("mystery", "other", "customer", "I want a cheaper plan."),  # a kind nobody gave
        ("price_objection", "objection", "customer", "I want a cheaper plan."),
    ]
    [version] = warehouse.analysis_versions("a", "c1")
    assert {k: version[k] for k in version if k not in ("id", "scored_at", "record")} == {
        "tenant": "a",
        "external_id": "c1",
        "preset": "p1",
        "prompt_version": record["scoring"]["prompt_version"],
        "variant": "short_prompt",
        "scorer": "llm",
        "model": "openai/gpt-4o-mini",
        "valid": True,
        "total": record["scores"]["total"],
        "errors": None,
        "evidence_quotes": 4,
        "evidence_verified": 3,
        "attempts": 1,
        "cost_usd": 0.004,
        "latency_ms": 0.0,
        "run_id": "run-1",
    }
    assert version["record"] == record
    assert version["scored_at"].tzinfo is not None
    assert "record" not in warehouse.analysis_versions("a", with_record=False)[0]


def test_no_quotes_cited_leaves_the_evidence_rate_null(warehouse):
    record = _record("a", "c1", {"greeting": 4})
    record["scoring"]["evidence"] = {"quotes": 0, "verified": 0}
    warehouse.save_analysis(record, DAY)
    assert warehouse.analyses_frame("a")["evidence_rate"].isna().all()


def test_rescoring_keeps_each_version_and_replaces_the_published_one(warehouse):
    first = _record(
        "a", "c1", {"greeting": 5, "closing": 4}, patterns=[("price_objection", "customer")]
    )
    warehouse.save_analysis(first, DAY, run_id="run-1", pattern_kinds=KINDS)
    # The same version again (a retried run): its row is updated, not duplicated.
    again = _record(
        "a", "c1", {"greeting": 3, "closing": 4}, patterns=[("price_objection", "customer")]
    )
    warehouse.save_analysis(again, DAY, run_id="run-2", pattern_kinds=KINDS)
    # A changed preset (another prompt version) adds a row; older results stay queryable.
    rescored = _record("a", "c1", {"greeting": 2, "empathy": 5})
    warehouse.save_analysis(rescored, DAY, run_id="run-3")

    versions = warehouse.analysis_versions("a")
    assert [(v["prompt_version"], v["total"], v["run_id"]) for v in versions] == [
        (first["scoring"]["prompt_version"], again["scores"]["total"], "run-2"),
        (rescored["scoring"]["prompt_version"], rescored["scores"]["total"], "run-3"),
    ]
    assert first["scoring"]["prompt_version"] != rescored["scoring"]["prompt_version"]
    assert warehouse.analysis("a", "c1") == rescored
    assert _count(warehouse, t.call_patterns) == 0  # the re-scored call found none
    assert warehouse.pattern_frame("a").empty


def test_invalid_results_stay_out_of_the_analyses(warehouse):
    valid_record = _record("a", "c1", {"greeting": 4})
    version = valid_record["scoring"]["prompt_version"]

    def invalid(external_id: str, errors: str, attempts: int) -> bool:
        return warehouse.save_invalid_analysis(
            "a",
            external_id,
            preset="p1",
            prompt_version=version,
            variant="control",
            scorer="rules",
            model=None,
            errors=errors,
            attempts=attempts,
            cost_usd=0.002,
            latency_ms=120.0,
            run_id="run-1",
        )

    assert invalid("c2", "greeting: evidence quote not found in transcript", 2)
    assert invalid("c2", "total 80 != weighted total 75", 3)  # the retry failed too: replaced
    [row] = warehouse.analysis_versions("a", "c2")
    assert (row["valid"], row["errors"], row["attempts"], row["total"], row["record"]) == (
        False,
        "total 80 != weighted total 75",
        3,
        None,
        None,
    )
    assert (row["model"], row["cost_usd"], row["latency_ms"]) == ("", 0.002, 120.0)
    assert warehouse.analysis("a", "c2") is None
    assert _count(warehouse, t.analyses) == 0
    assert warehouse.analyses_frame("a").empty  # the aggregates never see it

    # Scored validly later, same version: the valid result replaces the invalid one ...
    warehouse.save_analysis(_record("a", "c2", {"greeting": 4}), DAY)
    [row] = warehouse.analysis_versions("a", "c2")
    assert (row["valid"], row["errors"]) == (True, None)
    # ... and a later invalid run of that version does not replace it.
    assert not invalid("c2", "timeout", 1)
    [row] = warehouse.analysis_versions("a", "c2")
    assert (row["valid"], row["total"]) == (True, 75.0)
    assert warehouse.analysis("a", "c2")["scores"]["total"] == 75.0


def test_stale_analyses_are_those_scored_with_another_version(warehouse):
    for external_id, preset, version in [
        ("c1", "sales", "v1"),
        ("c2", "sales", "v2"),
        ("c3", "sales", "v2-variant"),
        ("c4", "support", "s1"),
        ("c5", "retired", "r1"),
    ]:
        record = _record("a", external_id, {"greeting": 4})
        record["scoring"].update(preset=preset, prompt_version=version)
        warehouse.save_analysis(record, DAY)
    record = _record("b", "c1", {"greeting": 4})
    record["scoring"].update(preset="sales", prompt_version="v0")
    warehouse.save_analysis(record, DAY)

    assert warehouse.stale_analyses("a", {"sales": "v2", "support": "s1"}) == ["c1", "c3"]
    # a preset with A/B variants: each variant's version is current
    assert warehouse.stale_analyses("a", {"sales": {"v2", "v2-variant"}, "support": "s0"}) == [
        "c1",
        "c4",
    ]
    assert warehouse.stale_analyses("a", {}) == []
    assert warehouse.stale_analyses("b", {"sales": "v2"}) == ["c1"]


def test_frames_carry_costs_evidence_and_patterns(warehouse):
    warehouse.save_analysis(
        _record("a", "c1", {"greeting": 4}, patterns=[("price_objection", "customer")] * 2),
        DAY,
        pattern_kinds=KINDS,
    )
    warehouse.save_analysis(
        _record("a", "c2", {"greeting": 2}, operator=None, model="local/m", cost_known=False),
        date(2024, 5, 2),
    )
    common = {"tenant": "a", "stage": "stt", "model": "m", "language": "en", "word_count": 1}
    warehouse.upsert_transcript(external_id="c1", data={}, cost_usd=0.006, **common)
    warehouse.upsert_transcript(external_id="c2", data={}, **common)  # speech cost unknown
    warehouse.upsert_transcript(  # the diarized row must not double the call
        **{**common, "stage": "diarized"}, external_id="c1", data={}, cost_usd=9.0
    )

    frame = warehouse.analyses_frame("a").sort_values("external_id")
    assert list(frame.columns) == FRAME_COLUMNS
    rows = frame.drop(columns=["record"]).to_dict("records")
    assert rows[0] == {
        "external_id": "c1",
        "call_day": DAY,
        "operator": "ann",
        "total": 75.0,
        "llm_cost_usd": 0.001,
        "cost_known": True,
        "speech_cost_usd": 0.006,
        "evidence_rate": 1.0,
    }
    assert rows[1]["cost_known"] is False
    assert pd_isna(rows[1]["operator"]) and pd_isna(rows[1]["speech_cost_usd"])

    patterns = warehouse.pattern_frame("a").to_dict("records")
    assert (
        patterns
        == [
            {
                "external_id": "c1",
                "pattern": "price_objection",
                "kind": "objection",
                "call_day": DAY,
                "operator": "ann",
            }
        ]
        * 2
    )

    [team_day1, _ann, team_day2, _unknown] = daily_aggregates(
        frame, warehouse.criterion_frame("a")
    )[0]
    assert (team_day1["cost_usd"], team_day1["unpriced_calls"]) == (0.007, 0)
    assert (team_day2["cost_usd"], team_day2["unpriced_calls"]) == (0.001, 1)


def pd_isna(value) -> bool:
    import pandas as pd

    return bool(pd.isna(value))


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
    warehouse.save_analysis(
        _record(
            "a", "c1", {"greeting": 4, "closing": 2}, patterns=[("price_objection", "customer")]
        ),
        DAY,
    )
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
    assert warehouse.daily_pattern_aggregates("b") == []
    assert len(warehouse.analysis_versions("a")) == 1
    assert warehouse.analysis_versions("b") == []
    assert warehouse.analysis_versions("b", "c1") == []
    assert warehouse.pattern_frame("b").empty
    assert warehouse.stale_analyses("b", {"p1": "other"}) == []
    assert warehouse.stale_analyses("a", {"p1": "other"}) == ["c1"]
    assert warehouse.variant_comparison("b") == []
    # Status changes addressed to `b` do not touch `a`'s row.
    warehouse.set_staged_status("b", ["c1"], "processed")
    assert warehouse.staged_call("a", "c1")["status"] == "staged"


def _aggregate(warehouse, tenant: str) -> None:
    analyses = warehouse.analyses_frame(tenant)
    warehouse.replace_daily_aggregates(
        tenant,
        *daily_aggregates(analyses, warehouse.criterion_frame(tenant)),
        daily_pattern_aggregates(analyses, warehouse.pattern_frame(tenant)),
    )


def test_replace_daily_aggregates_swaps_one_tenant(warehouse):
    objection = [("price_objection", "customer")]
    for tenant, ext, operator, scores, patterns in [
        ("a", "c1", "ann", {"greeting": 5, "closing": 3}, objection * 2),
        ("a", "c2", "bob", {"greeting": 1, "closing": 1}, []),
        ("b", "c1", "cat", {"greeting": 3, "closing": 3}, objection),
    ]:
        record = _record(tenant, ext, scores, operator=operator, patterns=patterns)
        warehouse.save_analysis(record, DAY, pattern_kinds=KINDS)
    for tenant in ("a", "b"):
        _aggregate(warehouse, tenant)

    rows_a = warehouse.daily_aggregates("a")
    assert [(r["day"], r["operator"], r["calls"]) for r in rows_a] == [
        (DAY, "*", 2),
        (DAY, "ann", 1),
        (DAY, "bob", 1),
    ]
    assert rows_a[0]["mean_total"] == pytest.approx(37.5)  # (75 + 0) / 2
    # sample records cost 0.001 each (rules), with no speech cost recorded: unpriced
    assert (rows_a[0]["llm_cost_usd"], rows_a[0]["speech_cost_usd"]) == (0.002, 0.0)
    assert (rows_a[0]["cost_usd"], rows_a[0]["unpriced_calls"]) == (0.002, 2)
    assert rows_a[0]["mean_evidence_rate"] == 1.0
    team_greeting = [
        r
        for r in warehouse.daily_criterion_aggregates("a")
        if r["operator"] == "*" and r["criterion"] == "greeting"
    ]
    assert [(r["calls"], r["mean_score"]) for r in team_greeting] == [(2, 3.0)]
    assert [
        (r["operator"], r["pattern"], r["kind"], r["calls"], r["mentions"], r["share_of_calls"])
        for r in warehouse.daily_pattern_aggregates("a")
    ] == [
        ("*", "price_objection", "objection", 1, 2, 0.5),
        ("ann", "price_objection", "objection", 1, 2, 1.0),
    ]

    # Re-aggregating `a` with fewer rows replaces its rows and leaves `b` alone.
    b_before = warehouse.daily_aggregates("b")
    b_patterns = warehouse.daily_pattern_aggregates("b")
    one_row = {
        **{k: v for k, v in rows_a[1].items() if k not in ("id", "tenant", "updated_at")},
        "calls": 7,
    }
    warehouse.replace_daily_aggregates("a", [one_row], [])
    assert [(r["operator"], r["calls"]) for r in warehouse.daily_aggregates("a")] == [("ann", 7)]
    assert warehouse.daily_criterion_aggregates("a") == []
    assert warehouse.daily_pattern_aggregates("a") == []
    assert warehouse.daily_aggregates("b") == b_before
    assert [r["operator"] for r in b_before] == ["*", "cat"]
    assert len(warehouse.daily_criterion_aggregates("b")) == 4
    assert warehouse.daily_pattern_aggregates("b") == b_patterns
    assert [(r["operator"], r["share_of_calls"]) for r in b_patterns] == [("*", 1.0), ("cat", 1.0)]


def test_a_failed_swap_keeps_the_old_rows(warehouse):
    """The three tables change together or not at all."""
    warehouse.save_analysis(
        _record("a", "c1", {"greeting": 4}, patterns=[("price_objection", "customer")]),
        DAY,
        pattern_kinds=KINDS,
    )
    _aggregate(warehouse, "a")
    before = (
        warehouse.daily_aggregates("a"),
        warehouse.daily_criterion_aggregates("a"),
        warehouse.daily_pattern_aggregates("a"),
    )
    broken = [{"day": DAY, "operator": "*", "pattern": "x", "kind": "other"}]  # counts missing
    with pytest.raises(sa.exc.IntegrityError):
        warehouse.replace_daily_aggregates("a", [], [], broken)
    assert (
        warehouse.daily_aggregates("a"),
        warehouse.daily_criterion_aggregates("a"),
        warehouse.daily_pattern_aggregates("a"),
    ) == before
    assert all(before)
