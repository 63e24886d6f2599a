"""Timings of the analyst views (migration 0002) on PostgreSQL with 10,000 analysed calls.

    .venv/bin/python scripts/bench_views.py [--calls 10000] [--repeat 5] [--explain] [--keep]

Creates a throwaway database on the PostgreSQL server (CALLQA_TEST_PG_URL, default
postgresql+psycopg://postgres@127.0.0.1:5432/postgres), migrates it with the Warehouse, fills
it with realistic analysed calls (4 tenants, 8 operators each, 13 weeks, 20-40 transcript
segments, 0-3 evidence quotes per criterion, 0-4 patterns, 1-2 scoring attempts; plus failed
and waiting staged calls), runs ANALYZE, then times the typical analyst query on each view
(and every row of each, every tenant) and prints the figures. The database is dropped at
the end unless --keep. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import copy
import os
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.records builds the template record

from callqa.calls.record import weakest_index  # noqa: E402
from callqa.calls.service import validate_record  # noqa: E402
from callqa.config.registry import default_registry  # noqa: E402
from callqa.scoring.rubric import normalized_weights, weighted_total  # noqa: E402
from callqa.storage import tables as t  # noqa: E402
from callqa.storage.warehouse import Warehouse  # noqa: E402
from tests.records import sample_record  # noqa: E402

ADMIN_URL = os.environ.get(
    "CALLQA_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
TENANTS = ("acme", "globex", "initech", "umbrella")
OPERATORS = ("ann", "bob", "cy", "dee", "eli", "fay", "gus", "hal")
FIRST_DAY = date(2024, 4, 1)  # a Monday; 13 ISO weeks of calls
DAYS = 91
PATTERNS = ("objection", "price_question", "competitor_mention", "timing_concern")
OPERATOR_LINES = (
    "Good morning, thank you for calling Northwind, this is {op}, how can I help you today?",
    "Could you tell me a bit more about how you use the service at the moment?",
    "How many people on your team would need access to it?",
    "Our business plan includes priority support and unlimited storage for the same price.",
    "I understand the price matters, and with the annual plan you save twenty percent.",
    "Many customers who switched from other providers tell us setup took under a day.",
    "Shall I send you the offer by email and call you back on Thursday to confirm?",
    "Great, I have booked the follow-up for Thursday at ten, thank you for your time.",
)
CUSTOMER_LINES = (
    "Hi, I am calling about my contract, it renews next month.",
    "We are about twelve people, mostly working remotely.",
    "Honestly it sounds too expensive compared to what we pay now.",
    "We are also talking to another provider who offered a discount.",
    "I am not sure this is the right time, we have a budget freeze.",
    "Okay, that sounds reasonable, send me the details.",
    "Thursday works for me, thanks.",
)
CUSTOMER_PATTERN = {
    "objection": 2,
    "price_question": 2,
    "competitor_mention": 3,
    "timing_concern": 4,
}


def build_calls(count: int, seed: int = 7) -> tuple[list[dict], dict]:
    """`count` analysed calls: each a dict of the rows save_analysis & co. would write."""
    rng = random.Random(seed)
    preset = default_registry().preset("sales-default")
    weights = normalized_weights(preset)
    template = sample_record("template", "template")
    calls = []
    for i in range(count):
        tenant = TENANTS[i % len(TENANTS)]
        operator = rng.choice(OPERATORS)
        external_id = f"call-{i:06d}"
        day = FIRST_DAY + timedelta(days=rng.randrange(DAYS))
        started = datetime(day.year, day.month, day.day, 8, tzinfo=UTC) + timedelta(
            minutes=rng.randrange(600)
        )
        segments, clock = [], 0.0
        for n in range(rng.randint(20, 40)):
            speaker = "operator" if n % 2 == 0 else "customer"
            lines = OPERATOR_LINES if speaker == "operator" else CUSTOMER_LINES
            text = lines[rng.randrange(len(lines))].format(op=operator.title())
            length = round(rng.uniform(2, 9), 2)
            end = round(clock + length, 2)
            segments.append(
                {"start": round(clock, 2), "end": end, "speaker": speaker, "text": text}
            )
            clock += length + round(rng.uniform(0.2, 1.5), 2)
        bias = OPERATORS.index(operator) % 3 - 1  # some operators are better than others
        scores = {c: max(1, min(5, rng.randint(2, 5) + bias)) for c in preset.criterion_ids}
        criteria = []
        for c in preset.criteria:
            quoted = rng.sample(segments, rng.randint(0, 3))
            criteria.append(
                {
                    "id": c.id,
                    "name": c.name,
                    "score": scores[c.id],
                    "weight": round(weights[c.id], 4),
                    "rationale": f"{c.name}: scored {scores[c.id]} on the quoted lines.",
                    "evidence": [
                        {"quote": " ".join(s["text"].split()[:5]), "start": s["start"]}
                        for s in sorted(quoted, key=lambda s: s["start"])
                    ],
                }
            )
        customer = [s for s in segments if s["speaker"] == "customer"]
        patterns = []
        for kind in rng.sample(PATTERNS, rng.randint(0, 3)):
            line = CUSTOMER_LINES[CUSTOMER_PATTERN[kind]]
            hits = [s for s in customer if s["text"] == line] or customer[:1]
            patterns += [{"type": kind, "quote": s["text"], "start": s["start"]} for s in hits[:2]]
        duration = round(clock + 1.0, 2)
        attempts = [0.0021] if rng.random() < 0.1 else []  # an invalid first reply, retried
        cost = round(rng.uniform(0.0005, 0.003), 6)
        record = copy.deepcopy(template)
        record["call"] |= {
            "tenant": tenant,
            "external_id": external_id,
            "operator": operator,
            "category": "sales",
            "started_at": started.isoformat(),
        }
        record["call"]["audio"]["duration_s"] = duration
        record["transcript"]["segments"] = segments
        record["metrics"]["duration_s"] = duration
        record["scores"] = {
            "scale": {"min": 1, "max": 5},
            "criteria": criteria,
            "total": weighted_total(scores, preset),
        }
        record["patterns"] = patterns
        record["summary"] = f"Call {external_id}: operator {operator}."
        record["scoring"] |= {
            "scorer": "llm",
            "model": "openai/gpt-4o-mini",
            "preset": preset.id,
            "prompt_version": preset.prompt_version,
            "tokens": {"prompt": 2400, "completion": 600, "total": 3000},
            "cost_usd": cost,
            "attempts": 1 + len(attempts),
        }
        calls.append(
            {
                "tenant": tenant,
                "external_id": external_id,
                "operator": operator,
                "day": day,
                "started_at": started,
                "duration": duration,
                "record": record,
                "attempt_costs": [*attempts, cost],
            }
        )
    return calls, {"preset": preset}


def check_realistic(calls: list[dict], preset) -> None:
    """The generated records pass the same schema and business rules as the pipeline's."""
    for call in calls[:50]:
        problems = validate_record(call["record"], preset)
        if problems.schema or problems.rules:
            raise SystemExit(f"generated record is not valid: {problems}")


def insert(warehouse: Warehouse, calls: list[dict], failed: int, waiting: int) -> float:
    now = datetime.now(UTC)
    started = time.perf_counter()
    staged, call_rows, analyses, scores, attempts = [], [], [], [], []
    for c in calls:
        key = {"tenant": c["tenant"], "external_id": c["external_id"]}
        record = c["record"]
        staged.append(
            key
            | {
                "source": "file",
                "source_uri": f"/drop/{c['external_id']}.wav",
                "category": "sales",
                "operator": c["operator"],
                "started_at": c["started_at"],
                "status": "processed",
                "error": None,
                "staged_at": now,
                "updated_at": now,
            }
        )
        call_rows.append(
            key
            | {
                "partition_key": f"{c['tenant']}__{c['external_id']}",
                "audio_uri": f"file:///audio/{c['external_id']}.flac",
                "sha256": "0" * 64,
                "size_bytes": int(c["duration"] * 16000),
                "codec": "flac",
                "container": "flac",
                "channels": 2,
                "sample_rate": 8000,
                "duration_s": c["duration"],
                "category": "sales",
                "operator": c["operator"],
                "started_at": c["started_at"],
                "updated_at": now,
            }
        )
        criteria = record["scores"]["criteria"]
        analyses.append(
            key
            | {
                "call_day": c["day"],
                "operator": c["operator"],
                "category": "sales",
                "preset": record["scoring"]["preset"],
                "prompt_version": record["scoring"]["prompt_version"],
                "scorer": record["scoring"]["scorer"],
                "model": record["scoring"]["model"],
                "total": record["scores"]["total"],
                "weakest_criterion": criteria[weakest_index(criteria)]["id"],
                "summary": record["summary"],
                "cost_usd": record["scoring"]["cost_usd"],
                "record": record,
                "updated_at": now,
            }
        )
        scores += [
            key | {"criterion": x["id"], "score": x["score"], "weight": x["weight"]}
            for x in criteria
        ]
        attempts += [
            key
            | {
                "run_id": None,
                "attempt": n,
                "scorer": "llm",
                "model": "openai/gpt-4o-mini",
                "prompt_version": record["scoring"]["prompt_version"],
                "prompt_tokens": 2400,
                "completion_tokens": 600,
                "latency_ms": 1800.0,
                "cost_usd": cost,
                "raw_output": "{}",
                "valid": n == len(c["attempt_costs"]),
                "error": None if n == len(c["attempt_costs"]) else "invalid JSON",
                "created_at": now,
            }
            for n, cost in enumerate(c["attempt_costs"], start=1)
        ]
    for i in range(failed + waiting):
        tenant = TENANTS[i % len(TENANTS)]
        is_failed = i < failed
        staged.append(
            {
                "tenant": tenant,
                "external_id": f"pending-{i:05d}",
                "source": "file",
                "source_uri": f"/drop/pending-{i:05d}.wav",
                "category": "sales",
                "operator": OPERATORS[i % len(OPERATORS)],
                "started_at": None,
                "status": "failed" if is_failed else "staged",
                "error": "transcript: check transcript_covers_speech failed: 41% covered"
                if is_failed
                else None,
                "staged_at": now,
                "updated_at": now,
            }
        )
    with warehouse.engine.begin() as conn:
        for table, rows in (
            (t.staged_calls, staged),
            (t.calls, call_rows),
            (t.analyses, analyses),
            (t.criterion_scores, scores),
            (t.scoring_attempts, attempts),
        ):
            for start in range(0, len(rows), 2000):
                conn.execute(table.insert(), rows[start : start + 2000])
    with warehouse.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("ANALYZE")
    return time.perf_counter() - started


def queries(week: date) -> list[tuple[str, str, dict]]:
    """(label, SQL, parameters): what an analyst asks each view."""
    tenant = TENANTS[0]
    month = {"tenant": tenant, "first": week - timedelta(days=27), "last": week + timedelta(days=6)}
    last_week = {"tenant": tenant, "first": week, "last": week + timedelta(days=6)}
    return [
        (
            "call_scores: a tenant's calls of one week, all columns",
            "SELECT * FROM call_scores WHERE tenant = :tenant "
            "AND call_day BETWEEN :first AND :last ORDER BY call_day, external_id",
            last_week,
        ),
        (
            "call_scores: a tenant's calls of four weeks (what `callqa export` reads)",
            "SELECT * FROM call_scores WHERE tenant = :tenant "
            "AND call_day BETWEEN :first AND :last ORDER BY call_day, external_id",
            month,
        ),
        (
            "criterion_evidence: quotes behind closing scores <= 2, one week",
            "SELECT external_id, operator, score, quote, speaker, start_s "
            "FROM criterion_evidence WHERE tenant = :tenant AND criterion = 'closing' "
            "AND score <= 2 AND call_day BETWEEN :first AND :last",
            last_week,
        ),
        (
            "operator_criterion_weekly: mean per operator and criterion, last week",
            "SELECT operator, criterion, mean_score, calls FROM operator_criterion_weekly "
            "WHERE tenant = :tenant AND week_start = :week ORDER BY operator, criterion",
            {"tenant": tenant, "week": week},
        ),
        (
            "pattern_weekly: objections per operator, last four weeks",
            "SELECT week_start, operator, occurrences, call_share FROM pattern_weekly "
            "WHERE tenant = :tenant AND pattern = 'objection' AND week_start >= :first "
            "ORDER BY week_start, operator",
            {"tenant": tenant, "first": week - timedelta(days=21)},
        ),
        (
            "cost_daily: cost per day, four weeks",
            "SELECT day, calls, llm_cost_usd, llm_spend_usd, cost_per_call_usd FROM cost_daily "
            "WHERE tenant = :tenant AND day BETWEEN :first AND :last ORDER BY day",
            month,
        ),
        (
            "calls_by_status: calls per status",
            "SELECT status, COUNT(*) FROM calls_by_status WHERE tenant = :tenant GROUP BY status",
            {"tenant": tenant},
        ),
        (
            "calls_by_status: failed calls and their errors",
            "SELECT external_id, failed_stage, error FROM calls_by_status "
            "WHERE tenant = :tenant AND status = 'failed' ORDER BY updated_at DESC",
            {"tenant": tenant},
        ),
    ] + [
        (f"{view}: every row of every tenant, fetched", f"SELECT * FROM {view}", {})
        for view in (
            "call_scores",
            "criterion_evidence",
            "operator_criterion_weekly",
            "pattern_weekly",
            "cost_daily",
            "calls_by_status",
        )
    ]


def time_query(conn, sql: str, params: dict, repeat: int) -> tuple[list[float], int]:
    timings, rows = [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        rows = len(conn.execute(sa.text(sql), params).all())
        timings.append(time.perf_counter() - started)
    return timings, rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5, help="runs per query (median shown)")
    parser.add_argument("--explain", action="store_true", help="print EXPLAIN ANALYZE plans")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()

    name = f"callqa_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    warehouse = None
    try:
        started = time.perf_counter()
        calls, info = build_calls(args.calls)
        check_realistic(calls, info["preset"])
        built = time.perf_counter() - started
        warehouse = Warehouse.from_url(url)
        failed, waiting = args.calls // 20, args.calls // 50
        inserted = insert(warehouse, calls, failed, waiting)
        with warehouse.engine.connect() as conn:
            size = conn.execute(sa.text("SELECT pg_database_size(current_database())")).scalar()
            server = conn.execute(sa.text("SHOW server_version")).scalar()
        print(
            f"PostgreSQL {server}, database {name}: {args.calls} analysed calls "
            f"({len(TENANTS)} tenants x {len(OPERATORS)} operators, {DAYS} days), "
            f"{failed} failed + {waiting} waiting staged calls; {size / 2**20:.0f} MiB"
        )
        print(f"built the records in {built:.1f} s, inserted them (+ ANALYZE) in {inserted:.1f} s")
        print(f"each query run {args.repeat} times; median and first run, in milliseconds\n")
        last_week = FIRST_DAY + timedelta(days=7 * (DAYS // 7 - 1))
        print(f"{'query':<76} {'rows':>6} {'median':>8} {'first':>8}")
        with warehouse.engine.connect() as conn:
            for label, sql, params in queries(last_week):
                timings, rows = time_query(conn, sql, params, args.repeat)
                print(
                    f"{label:<76} {rows:>6} {statistics.median(timings) * 1000:>8.1f} "
                    f"{timings[0] * 1000:>8.1f}"
                )
                if args.explain:
                    plan = conn.execute(sa.text(f"EXPLAIN ANALYZE {sql}"), params).scalars()
                    print("    " + "\n    ".join(plan) + "\n")
        import pandas  # noqa: F401  (imported before the clock starts)

        from callqa.reporting.export import call_scores_frame

        started = time.perf_counter()
        frame = call_scores_frame(
            warehouse, TENANTS[0], last_week - timedelta(days=27), last_week + timedelta(days=6)
        )
        print(
            f"\nexport frame (Warehouse.call_scores + other criteria, pandas types): "
            f"{len(frame)} calls in {(time.perf_counter() - started) * 1000:.0f} ms"
        )
        if args.keep:
            print(f"kept {url}")
    finally:
        if warehouse is not None:
            warehouse.dispose()
        if not args.keep:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
