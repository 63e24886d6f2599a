"""The analyst views (migrations 0002, 0004, 0005) and `callqa export`, on SQLite and
PostgreSQL, with known rows and exact expected values."""

from __future__ import annotations

import importlib.util
from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pytest
import sqlalchemy as sa

from callqa.cli import main
from callqa.config.registry import default_registry
from callqa.reporting.aggregates import daily_aggregates
from callqa.scoring.outcome import Attempt
from callqa.storage import views
from callqa.storage.migrate import MIGRATIONS_DIR, alembic_config, upgrade
from tests.records import sample_record

T, OTHER = "demo", "t2"  # `demo` is a bundled tenant, so `callqa export` accepts it
MON = date(2024, 5, 6)  # a Monday: ISO week 2024-W19 runs MON .. MON + 6
NEXT_MON = MON + timedelta(days=7)
STARTED = datetime(2024, 5, 6, 9, 30, tzinfo=UTC)
SPEECH_COST = 0.0125
TRANSCRIPT_ERROR = "transcript: check transcript_covers_speech failed: 41% of speech covered"


def _scores(closing: int) -> dict[str, int]:
    return {**dict.fromkeys(views.WIDE_CRITERIA, 4), "closing": closing}


def _pattern(kind: str, start: float = 4.5) -> dict:
    return {"type": kind, "quote": "I want a cheaper plan.", "start": start}


# external id -> (operator, call day, closing score, pattern types)
CALLS = {
    "c1": ("ann", MON, 2, ["objection", "objection", "price_question"]),
    "c2": ("ann", MON, 2, ["objection"]),
    "c3": ("ann", MON, 2, []),
    "c4": ("ann", MON + timedelta(days=2), 1, ["competitor_mention"]),
    "c5": ("bob", MON + timedelta(days=1), 5, ["objection"]),
    "c6": ("ann", NEXT_MON, 3, ["objection"]),
    "c7": ("bob", MON + timedelta(days=6), 3, []),  # a Sunday: still MON's ISO week
    "c8": (None, NEXT_MON, 4, []),  # no operator: reported as 'unknown'
}


def _attempt(n: int, **kw) -> dict:
    return Attempt(
        attempt=n,
        scorer="llm",
        model="m",
        prompt_version="v1",
        prompt_tokens=100,
        completion_tokens=20,
        latency_ms=5.0,
        raw_output="{}",
        **kw,
    ).as_dict()


def _seed(warehouse) -> dict[str, dict]:
    """The known rows every test below reads; returns the stored records by call id."""
    records = {}
    for external_id, (operator, day, closing, patterns) in CALLS.items():
        scores = _scores(closing)
        if external_id == "c3":  # the customer raised no objection: N/A
            scores["objection_handling"] = None
        record = sample_record(
            T,
            external_id,
            scores,
            operator=operator,
            variant="short_prompt" if external_id == "c2" else "control",
        )
        record["patterns"] = [_pattern(p) for p in patterns]
        if external_id == "c1":
            criteria = {c["id"]: c for c in record["scores"]["criteria"]}
            # Quotes of records before schema 2.0 name no speaker: the view finds it.
            criteria["closing"]["evidence"] = [
                {"quote": "cheaper plan", "start": 4.4},  # in the customer's line
                {"quote": "ann here", "start": 4.5},  # text wins over the nearer start
                {"quote": "I want, a cheaper plan", "start": 4.6},  # re-punctuated: nearest
                # A cited speaker is the view's, whatever the text says (the scorer checked
                # it against the transcript before the record was stored).
                {"quote": "Northwind", "start": 0.0, "speaker": "customer"},
            ]
            criteria["tone"]["evidence"] = []
            record["scoring"]["evidence"] = {"quotes": 4, "verified": 3}  # the scorer's tally
        warehouse.stage_call(
            tenant=T,
            external_id=external_id,
            source="file",
            source_uri=f"/calls/{external_id}.wav",
            operator=operator,
            started_at=STARTED if external_id == "c1" else None,
        )
        warehouse.save_analysis(record, day)
        warehouse.set_staged_status(T, [external_id], "processed")
        records[external_id] = record
    warehouse.upsert_call(
        tenant=T,
        external_id="c1",
        partition_key=f"{T}__c1",
        audio_uri="file:///audio/c1.wav",
        sha256="a" * 64,
        size_bytes=1000,
        codec="pcm_s16le",
        container="wav",
        channels=2,
        sample_rate=8000,
        duration_s=42.5,  # the calls row wins over the record's 10 s
        category="sales",
        operator="ann",
        started_at=STARTED,
    )
    # Speech-to-text cost: known for c1, unknown (an API without a price) for c2.
    for external_id, cost in (("c1", SPEECH_COST), ("c2", None)):
        warehouse.upsert_transcript(
            tenant=T,
            external_id=external_id,
            stage="stt",
            model="whisper-1",
            language="en",
            word_count=9,
            data={},
            cost_usd=cost,
        )
    warehouse.record_attempts(
        T,
        "c1",
        "run-1",
        [
            _attempt(1, cost_usd=0.002, valid=False, error="bad json"),
            _attempt(2, cost_usd=0.001, valid=True),
        ],
    )
    for external_id in ("s-new", "s-bad", "s-odd"):
        warehouse.stage_call(tenant=T, external_id=external_id, source="file", source_uri="/x")
    warehouse.set_staged_status(T, ["s-bad"], "failed", TRANSCRIPT_ERROR)
    warehouse.set_staged_status(T, ["s-odd"], "failed", "something odd")
    # Another tenant, same operator name and week: must never show up in T's rows.
    other = sample_record(OTHER, "x1", _scores(5), operator="ann")
    other["patterns"] = [_pattern("objection")]
    warehouse.save_analysis(other, MON)
    warehouse.stage_call(tenant=OTHER, external_id="x1", source="file", source_uri="/x")
    return records


def _rows(warehouse, view: sa.Table, order_by: list[str], **where) -> list[dict]:
    """Rows of a view through its typed description, so both dialects give the same types."""
    query = sa.select(view).where(*(view.c[k] == value for k, value in where.items()))
    with warehouse.engine.connect() as conn:
        result = conn.execute(query.order_by(*(view.c[c] for c in order_by))).mappings()
        return [dict(r) for r in result]


def _migration_0002():
    path = next((MIGRATIONS_DIR / "versions").glob("0002_*.py"))
    spec = importlib.util.spec_from_file_location("migration_0002", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_views_exist_with_the_documented_columns(warehouse):
    inspector = sa.inspect(warehouse.engine)
    assert {v.name for v in views.ALL} <= set(inspector.get_view_names())
    for view in views.ALL:
        assert [c["name"] for c in inspector.get_columns(view.name)] == [
            c.name for c in view.columns
        ], view.name
        assert "tenant" in view.c


def test_wide_criteria_are_the_bundled_sales_default_ones():
    preset = default_registry().preset("sales-default")
    assert list(views.WIDE_CRITERIA) == preset.criterion_ids
    assert _migration_0002().WIDE_CRITERIA == views.WIDE_CRITERIA


def test_downgrade_drops_the_views_and_upgrade_restores_them(warehouse):
    from alembic import command

    _seed(warehouse)
    with warehouse.engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0001")
    inspector = sa.inspect(warehouse.engine)
    assert not {v.name for v in views.ALL} & set(inspector.get_view_names())
    assert {"analyses", "criterion_scores", "staged_calls"} <= set(inspector.get_table_names())
    upgrade(warehouse.engine)
    assert len(warehouse.call_scores(T)) == len(CALLS)


def test_call_scores_one_wide_row_per_call(warehouse):
    records = _seed(warehouse)
    rows = {r["external_id"]: r for r in warehouse.call_scores(T)}
    assert list(rows) == ["c1", "c2", "c3", "c5", "c4", "c7", "c6", "c8"]  # by day, then id
    c1 = rows["c1"]
    analysed_at = c1.pop("analysed_at")
    assert analysed_at.tzinfo is not None
    assert c1 == {
        "tenant": T,
        "external_id": "c1",
        "call_day": MON,
        "week_start": MON,
        "started_at": STARTED,
        "operator": "ann",
        "category": None,
        "preset": "p1",
        "scorer": "rules",
        "model": None,
        "prompt_version": records["c1"]["scoring"]["prompt_version"],
        "variant": "control",
        "duration_s": 42.5,
        "total": records["c1"]["scores"]["total"],
        "evidence_rate": 0.75,  # 3 of its 4 quotes hold up (see _seed)
        "greeting": 4,
        "needs_discovery": 4,
        "presentation": 4,
        "objection_handling": 4,
        "closing": 2,
        "tone": 4,
        "weakest_criterion": "closing",
        "status": "processed",
        "error": None,
        "llm_cost_usd": 0.001,
        "llm_spend_usd": pytest.approx(0.003),
        "llm_attempts": 2,
        "llm_tokens": 0,
        "speech_cost_usd": SPEECH_COST,
        "cost_usd": pytest.approx(0.001 + SPEECH_COST),
    }
    assert rows["c4"]["closing"] == 1 and rows["c4"]["weakest_criterion"] == "closing"
    assert rows["c5"]["weakest_criterion"] == "greeting"  # all 4 but closing 5: heaviest first
    # no calls row: the record's duration; no attempts recorded: no spend
    assert (rows["c2"]["duration_s"], rows["c2"]["llm_spend_usd"], rows["c2"]["llm_attempts"]) == (
        10.0,
        None,
        0,
    )
    assert rows["c8"]["operator"] == "unknown"
    # N/A is NULL, like a criterion the preset lacks; the call's other columns are scored.
    assert (rows["c3"]["objection_handling"], rows["c3"]["closing"]) == (None, 2)
    assert rows["c2"]["variant"] == "short_prompt"
    assert rows["c2"]["evidence_rate"] == 1.0
    # speech cost unknown (c2) or never recorded (c3): NULL, and cost_usd is the LLM's
    assert [(rows[c]["speech_cost_usd"], rows[c]["cost_usd"]) for c in ("c2", "c3")] == [
        (None, 0.001),
        (None, 0.001),
    ]
    assert (rows["c7"]["call_day"], rows["c7"]["week_start"]) == (MON + timedelta(days=6), MON)
    assert rows["c6"]["week_start"] == NEXT_MON
    assert [r["external_id"] for r in warehouse.call_scores(T, MON + timedelta(days=1), MON)] == []
    assert [r["external_id"] for r in warehouse.call_scores(T, MON, MON)] == ["c1", "c2", "c3"]
    assert [r["external_id"] for r in warehouse.call_scores(OTHER)] == ["x1"]


def test_call_scores_answers_in_one_short_select(warehouse):
    _seed(warehouse)
    with warehouse.engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT external_id, closing FROM call_scores "
                "WHERE tenant = :tenant AND closing <= 2 ORDER BY external_id"
            ),
            {"tenant": T},
        ).all()
    assert [tuple(r) for r in rows] == [("c1", 2), ("c2", 2), ("c3", 2), ("c4", 1)]


def test_criterion_evidence_one_row_per_quote_with_speaker(warehouse):
    _seed(warehouse)
    rows = _rows(
        warehouse,
        views.criterion_evidence,
        ["criterion", "evidence_index"],
        tenant=T,
        external_id="c1",
    )
    by_criterion = {}
    for r in rows:
        by_criterion.setdefault(r["criterion"], []).append(
            (r["evidence_index"], r["quote"], r["start_s"], r["speaker"])
        )
    assert by_criterion == {
        "closing": [
            (0, "cheaper plan", 4.4, "customer"),
            (1, "ann here", 4.5, "operator"),
            (2, "I want, a cheaper plan", 4.6, "customer"),
            (3, "Northwind", 0.0, "customer"),
        ],
        "greeting": [(0, "Ann here", 0.0, "operator")],
        "needs_discovery": [(0, "Ann here", 0.0, "operator")],
        "objection_handling": [(0, "Ann here", 0.0, "operator")],
        "presentation": [(0, "Ann here", 0.0, "operator")],
        "tone": [(None, None, None, None)],  # no evidence: the rationale still shows
    }
    closing = next(r for r in rows if r["criterion"] == "closing")
    assert {k: closing[k] for k in ("call_day", "operator", "score", "rationale")} == {
        "call_day": MON,
        "operator": "ann",
        "score": 2,
        "rationale": "because",
    }
    assert closing["criterion_name"] == "Closing"
    assert closing["weight"] == pytest.approx(1 / 6, abs=1e-4)
    # across calls: the analyst's "quotes behind low closing scores"
    with warehouse.engine.connect() as conn:
        low = conn.execute(
            sa.text(
                "SELECT external_id, quote, speaker FROM criterion_evidence "
                "WHERE tenant = :tenant AND criterion = 'closing' AND score <= 1"
            ),
            {"tenant": T},
        ).all()
    assert [tuple(r) for r in low] == [("c4", "Ann here", "operator")]


def test_operator_criterion_weekly_weights_means_by_calls(warehouse):
    _seed(warehouse)
    closing = [
        (
            r["week_start"],
            r["operator"],
            r["calls"],
            r["mean_score"],
            r["min_score"],
            r["max_score"],
        )
        for r in _rows(
            warehouse,
            views.operator_criterion_weekly,
            ["week_start", "operator"],
            tenant=T,
            criterion="closing",
        )
    ]
    assert closing == [
        # ann: 3 calls scoring 2 on Monday, 1 call scoring 1 on Wednesday -> 7 / 4
        (MON, "*", 6, 2.5, 1, 5),
        (MON, "ann", 4, 1.75, 1, 2),
        (MON, "bob", 2, 4.0, 3, 5),  # Tuesday's 5 and Sunday's 3 are the same ISO week
        (NEXT_MON, "*", 2, 3.5, 3, 4),
        (NEXT_MON, "ann", 1, 3.0, 3, 3),
        (NEXT_MON, "unknown", 1, 4.0, 4, 4),
    ]
    everything = _rows(warehouse, views.operator_criterion_weekly, ["week_start"], tenant=T)
    assert len(everything) == 2 * 3 * len(views.WIDE_CRITERIA)  # weeks x scopes x criteria
    assert {r["mean_score"] for r in everything if r["criterion"] != "closing"} == {4.0}
    assert [
        (r["operator"], r["calls"], r["mean_score"])
        for r in _rows(
            warehouse,
            views.operator_criterion_weekly,
            ["operator"],
            tenant=OTHER,
            criterion="closing",
        )
    ] == [("*", 1, 5.0), ("ann", 1, 5.0)]

    # The daily aggregate tables give 1.5 for the same question when averaged naively: the
    # mean of Monday's 2.0 and Wednesday's 1.0, each day counting once.
    calls_rows, criterion_rows = daily_aggregates(
        warehouse.analyses_frame(T), warehouse.criterion_frame(T)
    )
    warehouse.replace_daily_aggregates(T, calls_rows, criterion_rows)
    with warehouse.engine.connect() as conn:
        naive = conn.execute(
            sa.text(
                "SELECT AVG(mean_score) FROM daily_criterion_aggregates WHERE tenant = :tenant "
                "AND operator = 'ann' AND criterion = 'closing' AND day BETWEEN :monday AND :sunday"
            ),
            {"tenant": T, "monday": MON, "sunday": MON + timedelta(days=6)},
        ).scalar_one()
        weekly = conn.execute(
            sa.text(
                "SELECT mean_score FROM operator_criterion_weekly WHERE tenant = :tenant "
                "AND operator = 'ann' AND criterion = 'closing' AND week_start = :monday"
            ),
            {"tenant": T, "monday": MON},
        ).scalar_one()
    assert naive == pytest.approx(1.5)
    assert weekly == 1.75


def test_pattern_weekly_counts_occurrences_and_calls(warehouse):
    _seed(warehouse)
    rows = [
        (
            r["week_start"],
            r["operator"],
            r["pattern"],
            r["occurrences"],
            r["calls_with_pattern"],
            r["calls"],
            r["call_share"],
        )
        for r in _rows(
            warehouse, views.pattern_weekly, ["week_start", "operator", "pattern"], tenant=T
        )
    ]
    assert rows == [
        (MON, "*", "competitor_mention", 1, 1, 6, pytest.approx(1 / 6)),
        (MON, "*", "objection", 4, 3, 6, 0.5),
        (MON, "*", "price_question", 1, 1, 6, pytest.approx(1 / 6)),
        (MON, "ann", "competitor_mention", 1, 1, 4, 0.25),
        (MON, "ann", "objection", 3, 2, 4, 0.5),  # twice in c1, once in c2
        (MON, "ann", "price_question", 1, 1, 4, 0.25),
        (MON, "bob", "objection", 1, 1, 2, 0.5),
        (NEXT_MON, "*", "objection", 1, 1, 2, 0.5),
        (NEXT_MON, "ann", "objection", 1, 1, 1, 1.0),
    ]


def test_cost_daily_sums_per_day(warehouse):
    _seed(warehouse)
    rows = _rows(warehouse, views.cost_daily, ["day"], tenant=T)
    assert [
        (
            r["day"],
            r["calls"],
            r["audio_s"],
            r["llm_cost_usd"],
            r["llm_spend_usd"],
            r["speech_cost_usd"],
            r["cost_usd"],
            r["cost_per_call_usd"],
        )
        for r in rows
    ] == [
        (
            MON,
            3,
            62.5,
            pytest.approx(0.003),
            pytest.approx(0.003),
            SPEECH_COST,  # c1's; c2's is unknown, c3 recorded none
            pytest.approx(0.003 + SPEECH_COST),
            pytest.approx((0.003 + SPEECH_COST) / 3),
        ),
        (MON + timedelta(days=1), 1, 10.0, 0.001, None, None, 0.001, 0.001),
        (MON + timedelta(days=2), 1, 10.0, 0.001, None, None, 0.001, 0.001),
        (MON + timedelta(days=6), 1, 10.0, 0.001, None, None, 0.001, 0.001),
        (
            NEXT_MON,
            2,
            20.0,
            pytest.approx(0.002),
            None,
            None,
            pytest.approx(0.002),
            pytest.approx(0.001),
        ),
    ]
    assert [r["calls"] for r in _rows(warehouse, views.cost_daily, ["day"], tenant=OTHER)] == [1]


def test_calls_by_status_lists_every_staged_call_with_its_error(warehouse):
    records = _seed(warehouse)
    rows = {
        r["external_id"]: r
        for r in _rows(warehouse, views.calls_by_status, ["external_id"], tenant=T)
    }
    assert set(rows) == {*CALLS, "s-new", "s-bad", "s-odd"}
    assert {
        k: rows["s-bad"][k] for k in ("status", "error", "failed_stage", "has_analysis", "total")
    } == {
        "status": "failed",
        "error": TRANSCRIPT_ERROR,
        "failed_stage": "transcript",
        "has_analysis": False,
        "total": None,
    }
    assert (rows["s-odd"]["status"], rows["s-odd"]["failed_stage"]) == ("failed", None)
    assert (rows["s-new"]["status"], rows["s-new"]["error"]) == ("staged", None)
    c1 = rows["c1"]
    assert (c1["status"], c1["has_analysis"], c1["total"], c1["operator"], c1["source"]) == (
        "processed",
        True,
        records["c1"]["scores"]["total"],
        "ann",
        "file",
    )
    started = c1["started_at"]  # SQLite hands back naive UTC datetimes
    assert (started if started.tzinfo else started.replace(tzinfo=UTC)) == STARTED
    assert rows["c8"]["operator"] == "unknown"
    with warehouse.engine.connect() as conn:
        counts = conn.execute(
            sa.text(
                "SELECT status, COUNT(*) FROM calls_by_status WHERE tenant = :tenant "
                "GROUP BY status ORDER BY status"
            ),
            {"tenant": T},
        ).all()
    assert [tuple(r) for r in counts] == [("failed", 2), ("processed", 8), ("staged", 1)]


# callqa export -------------------------------------------------------------------------------


def _export(db_url, monkeypatch, *args) -> int:
    monkeypatch.setenv("CALLQA_DATABASE_URL", db_url)
    return main(["export", "--tenant", T, *args])


def _seed_for_export(warehouse) -> None:
    _seed(warehouse)
    # a call scored with another preset: its criteria get their own columns
    other_preset = sample_record(T, "p2-call", {"greeting": 3, "empathy": 2}, operator="cy")
    warehouse.save_analysis(other_preset, MON + timedelta(days=3))


EXPORT_COLUMNS = [c.name for c in views.call_scores.columns] + ["empathy"]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_round_trips_through_pandas(warehouse, db_url, monkeypatch, tmp_path, fmt):
    _seed_for_export(warehouse)
    out = tmp_path / "out" / f"scores.{fmt}"
    args = ["--from", str(MON), "--to", str(MON + timedelta(days=6)), "--format", fmt]
    assert _export(db_url, monkeypatch, *args, "--out", str(out)) == 0
    frame = pd.read_csv(out) if fmt == "csv" else pd.read_parquet(out)
    assert list(frame.columns) == EXPORT_COLUMNS
    # next week's c6 and c8, the other tenant's x1: out of the export
    assert list(frame["external_id"]) == ["c1", "c2", "c3", "c5", "c4", "p2-call", "c7"]
    by_id = frame.set_index("external_id")
    assert list(by_id["closing"].astype("Int64")) == [2, 2, 2, 5, 1, pd.NA, 3]
    assert by_id.loc["p2-call", "greeting"] == 3 and by_id.loc["p2-call", "empathy"] == 2
    assert by_id["empathy"].isna().sum() == 6
    assert by_id.loc["c1", "duration_s"] == 42.5
    assert by_id.loc["c1", "llm_spend_usd"] == pytest.approx(0.003)
    assert by_id.loc["c1", "status"] == "processed"
    expected = {r["external_id"]: r["total"] for r in warehouse.call_scores(T)}
    assert dict(by_id["total"]) == pytest.approx({k: expected[k] for k in by_id.index})
    if fmt == "parquet":  # types survive: integers with gaps, dates, UTC timestamps
        assert str(frame["closing"].dtype) == "Int64"
        assert str(frame["empathy"].dtype) == "Int64"
        assert by_id.loc["c1", "call_day"] == MON
        assert by_id.loc["c1", "started_at"] == pd.Timestamp(STARTED)
        assert str(frame["analysed_at"].dtype).endswith("UTC]")
    else:
        assert by_id.loc["c1", "call_day"] == str(MON)
        assert pd.Timestamp(by_id.loc["c1", "started_at"]) == pd.Timestamp(STARTED)


def test_export_csv_to_stdout_and_default_path(warehouse, db_url, monkeypatch, tmp_path, capsys):
    _seed(warehouse)
    assert _export(db_url, monkeypatch, "--from", str(MON), "--to", str(MON), "--out", "-") == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0].split(",")[:3] == ["tenant", "external_id", "call_day"]
    assert [line.split(",")[1] for line in lines[1:]] == ["c1", "c2", "c3"]
    assert "exported 3 call(s)" in captured.err

    monkeypatch.chdir(tmp_path)
    assert _export(db_url, monkeypatch, "--from", "2024-01-01", "--to", "2024-01-31") == 0
    empty = pd.read_csv(tmp_path / f"call_scores_{T}_2024-01-01_2024-01-31.csv")
    assert empty.empty and list(empty.columns) == [c.name for c in views.call_scores.columns]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "2024-05-07", "--to", "2024-05-06"], "is before --from"),
        (["--from", "May 6", "--to", "2024-05-06"], "expected a day as YYYY-MM-DD"),
        (
            ["--from", "2024-05-06", "--to", "2024-05-06", "--format", "parquet", "--out", "-"],
            "only CSV",
        ),
    ],
)
def test_export_bad_arguments_fail_with_one_line(tmp_path, monkeypatch, capsys, args, message):
    assert _export(f"sqlite:///{tmp_path / 'w.db'}", monkeypatch, *args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_calls_by_status_names_a_failed_crm_pushback(warehouse):
    warehouse.stage_call(tenant=T, external_id="p-1", source="crm", source_uri="https://x/a.mp3")
    warehouse.set_staged_status(
        T, ["p-1"], "failed", "crm_pushback: amocrm acme: POST /api/v4/leads/notes: HTTP 503"
    )
    [row] = [
        r
        for r in _rows(warehouse, views.calls_by_status, ["external_id"], tenant=T)
        if r["external_id"] == "p-1"
    ]
    assert (row["status"], row["failed_stage"]) == ("failed", "crm_pushback")


def test_data_dictionary_documents_every_column():
    """docs/data-dictionary.md has a section per view and table naming each of its columns."""
    import re

    from callqa.storage import tables
    from tests.paths import ROOT

    text = (ROOT / "docs" / "data-dictionary.md").read_text()
    sections = dict(re.findall(r"^### (\w+)\n(.*?)(?=^##)", text, flags=re.M | re.S))
    for table in [*views.ALL, *tables.metadata.sorted_tables]:
        assert table.name in sections, table.name
        documented = set(re.findall(r"`(\w+)`", sections[table.name]))
        # `id`, the surrogate key, is left implicit in most tables
        missing = [c.name for c in table.columns if c.name not in documented | {"id"}]
        assert missing == [], f"{table.name}: {missing}"
