"""Human grades in the warehouse, `callqa grades load`, and the `grader_agreement` asset,
on SQLite and PostgreSQL."""

import argparse
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
import sqlalchemy as sa

from callqa.assets.evaluation import build_grader_agreement
from callqa.cli_eval import add_parsers
from callqa.evaluation.agreement import HUMAN_HUMAN, MODEL_HUMAN, agreement_rows
from callqa.evaluation.labelled import GradesError
from callqa.resources import WarehouseResource
from callqa.storage import tables as t
from callqa.storage.grades import GradeQueries
from callqa.storage.staging import StagingQueries
from callqa.storage.warehouse import Warehouse, make_engine

T0 = datetime(2026, 11, 19, 9, 0, tzinfo=UTC)


class Store(StagingQueries, GradeQueries):
    def __init__(self, engine: sa.Engine):
        self.engine = engine


@pytest.fixture
def store(db_url):
    engine = make_engine(db_url)
    t.metadata.create_all(engine)
    yield Store(engine)
    engine.dispose()


def _stage(store, tenant, *ids, category="sales"):
    store.stage_calls(
        tenant,
        "file",
        [{"external_id": i, "source_uri": f"/calls/{i}.wav", "category": category} for i in ids],
    )


def _version(external_id, prompt_version, scores, *, at, variant="control", model="m1", valid=True):
    return {
        "tenant": "demo",
        "external_id": external_id,
        "preset": "sales-default",
        "prompt_version": prompt_version,
        "variant": variant,
        "scorer": "llm",
        "model": model,
        "valid": valid,
        "total": 50.0 if valid else None,
        "errors": None if valid else "schema: criteria: too short",
        "record": {
            "scores": {
                "scale": {"min": 1, "max": 5},
                "criteria": [{"id": k, "score": v} for k, v in scores.items()],
                "total": 50.0,
            }
        }
        if valid
        else None,
        "evidence_quotes": 2,
        "evidence_verified": 2,
        "attempts": 1,
        "cost_usd": 0.0,
        "latency_ms": 10.0,
        "run_id": None,
        "scored_at": at,
    }


def _insert_versions(engine, rows):
    with engine.begin() as conn:
        conn.execute(t.analysis_versions.insert(), rows)


# Two prompt versions of sales-default; c2's tone is N/A. (Used by the hand-checked
# agreement below and by the asset test.)
VERSIONS = [
    _version("c1", "v1", {"greeting": 5, "tone": 3}, at=T0),
    _version("c2", "v1", {"greeting": 2, "tone": None}, at=T0),
    _version("c1", "v2", {"greeting": 4, "tone": 4}, at=T0 + timedelta(days=1)),
]
GRADES = [
    {"external_id": "c1", "criterion": "greeting", "grader": "lead_a", "score": 5},
    {"external_id": "c1", "criterion": "greeting", "grader": "lead_b", "score": 4},
    {"external_id": "c1", "criterion": "tone", "grader": "lead_a", "score": 4},
    {"external_id": "c2", "criterion": "greeting", "grader": "lead_a", "score": 2},
    {"external_id": "c2", "criterion": "tone", "grader": "lead_a", "score": 3},
]


def test_load_human_grades_upserts_and_keeps_na(store):
    assert store.load_human_grades("demo", GRADES) == 5
    again = [{**GRADES[0], "score": 3}, {**GRADES[4], "score": None}]
    assert store.load_human_grades("demo", again) == 2
    store.load_human_grades("other", [GRADES[0]])
    rows = store.human_grades("demo")
    assert [(r["external_id"], r["criterion"], r["grader"], r["score"]) for r in rows] == [
        ("c1", "greeting", "lead_a", 3),
        ("c1", "greeting", "lead_b", 4),
        ("c1", "tone", "lead_a", 4),
        ("c2", "greeting", "lead_a", 2),
        ("c2", "tone", "lead_a", None),
    ]
    assert all(r["loaded_at"].tzinfo is not None for r in rows)


def test_known_calls_prefer_the_scored_category_and_preset(store):
    _stage(store, "demo", "c1", "c2")
    _stage(store, "other", "c9")
    with store.engine.begin() as conn:
        conn.execute(
            t.analyses.insert(),
            [
                {
                    "tenant": "demo",
                    "external_id": "c2",
                    "call_day": T0.date(),
                    "category": "support",  # classified from the transcript
                    "preset": "support-default",
                    "prompt_version": "v1",
                    "scorer": "rules",
                    "total": 80.0,
                    "weakest_criterion": "tone",
                    "summary": "ok",
                    "cost_usd": 0.0,
                    "record": {},
                    "updated_at": T0,
                }
            ],
        )
    assert store.known_calls("demo") == {
        "c1": {"category": "sales", "preset": None},
        "c2": {"category": "support", "preset": "support-default"},
    }


def test_scored_versions_take_valid_results_and_the_latest_rescore(store):
    _insert_versions(
        store.engine,
        [
            *VERSIONS,
            # Same call, prompt version and variant, a fallback model a minute later: wins.
            _version(
                "c2", "v1", {"greeting": 3, "tone": 2}, at=T0 + timedelta(minutes=1), model="m2"
            ),
            _version("c3", "v1", {}, at=T0, valid=False),  # invalid: never compared
        ],
    )
    versions = store.scored_versions("demo")
    assert [(v["external_id"], v["prompt_version"], v["model"]) for v in versions] == [
        ("c1", "v1", "m1"),
        ("c2", "v1", "m2"),
        ("c1", "v2", "m1"),
    ]
    c2 = versions[1]
    assert c2["scores"] == {"greeting": 3, "tone": 2}
    assert (c2["scale_min"], c2["scale_max"], c2["variant"]) == (1, 5, "control")
    assert c2["scored_at"] == T0 + timedelta(minutes=1)
    assert store.scored_versions("other") == []


def _row(rows, comparison, prompt_version, criterion):
    return next(
        r
        for r in rows
        if (r["comparison"], r["prompt_version"], r["criterion"])
        == (comparison, prompt_version, criterion)
    )


def _versions_for_rows():
    return [
        {**v, "scores": {c["id"]: c["score"] for c in v["record"]["scores"]["criteria"]}}
        for v in VERSIONS
    ]


def test_agreement_rows_by_hand():
    rows = agreement_rows(
        _versions_for_rows(),
        GRADES,
        {"c1": "sales-default", "c2": "sales-default"},
        {"sales-default": (1, 5)},
    )
    # v1 greeting: pairs (model, human) = (5,5 lead_a) (5,4 lead_b) (2,2): exact 2/3,
    # within_one 1, bias (12 - 11)/3 = 1/3. QWK (w = d^2/16): observed w = 1/16;
    # histograms model {2:1, 5:2}, human {2:1, 4:1, 5:1}, E = hm*hh/3:
    #   row 2: (4/16 + 9/16)/3 = 13/48; row 5: 2*(9/16 + 1/16)/3 = 20/48 -> 33/48;
    #   kappa = 1 - (3/48)/(33/48) = 10/11.
    g = _row(rows, MODEL_HUMAN, "v1", "greeting")
    assert (g["pairs"], g["exact"], g["within_one"]) == (3, pytest.approx(2 / 3, abs=1e-4), 1.0)
    assert g["bias"] == pytest.approx(1 / 3, abs=1e-4)
    assert g["qwk"] == pytest.approx(10 / 11, abs=1e-4)
    # v1 tone: (3,4) kept, c2's (N/A, 3) excluded: one pair, 1 apart, bias -1.
    tone = _row(rows, MODEL_HUMAN, "v1", "tone")
    assert (tone["pairs"], tone["excluded"], tone["exact"], tone["bias"]) == (1, 1, 0.0, -1.0)
    assert tone["spearman"] is None
    # v1 pooled: (5,5) (5,4) (2,2) (3,4): exact 2/4, bias (15 - 15)/4 = 0.
    pooled = _row(rows, MODEL_HUMAN, "v1", "*")
    assert (pooled["pairs"], pooled["exact"], pooled["bias"]) == (4, 0.5, 0.0)
    # v2 scored c1 only: (4,5) (4,4) (4,4): exact 2/3, bias (12 - 13)/3 = -1/3.
    v2 = _row(rows, MODEL_HUMAN, "v2", "*")
    assert (v2["pairs"], v2["exact"]) == (3, pytest.approx(2 / 3, abs=1e-4))
    assert v2["bias"] == pytest.approx(-1 / 3, abs=1e-4)
    # Graders: only c1 greeting was graded twice: lead_a 5 vs lead_b 4 -> bias +1.
    humans = [r for r in rows if r["comparison"] == HUMAN_HUMAN]
    assert [(r["criterion"], r["pairs"], r["exact"], r["bias"]) for r in humans] == [
        ("greeting", 1, 0.0, 1.0),
        ("*", 1, 0.0, 1.0),
    ]
    assert {(r["prompt_version"], r["variant"]) for r in humans} == {("*", "*")}


def test_replace_grader_agreement_swaps_the_tenants_rows(store):
    rows = agreement_rows(
        _versions_for_rows(), GRADES, {"c1": "sales-default"}, {"sales-default": (1, 5)}
    )
    store.replace_grader_agreement("demo", rows)
    store.replace_grader_agreement("other", rows[:1])
    stored = store.grader_agreement("demo")
    assert len(stored) == len(rows)
    # Ordered by comparison, preset, version, variant; the pooled row after its criteria.
    assert [(r["comparison"], r["prompt_version"], r["criterion"]) for r in stored][:4] == [
        (HUMAN_HUMAN, "*", "greeting"),
        (HUMAN_HUMAN, "*", "*"),
        (MODEL_HUMAN, "v1", "greeting"),
        (MODEL_HUMAN, "v1", "tone"),
    ]
    tone = next(r for r in stored if r["prompt_version"] == "v1" and r["criterion"] == "tone")
    assert tone["spearman"] is None  # undefined for one pair: stored as NULL, not NaN
    assert tone["qwk"] == 0.0  # one pair: expected = observed, so kappa 1 - x/x = 0
    store.replace_grader_agreement("demo", [])
    assert store.grader_agreement("demo") == []
    assert len(store.grader_agreement("other")) == 1


# ---- through the Warehouse: `callqa grades load` and the asset ----------------------------


@pytest.fixture
def warehouse_url(db_url, monkeypatch):
    monkeypatch.setenv("CALLQA_DATABASE_URL", db_url)
    wh = Warehouse.from_url(db_url)
    _stage(wh, "demo", "c1", "c2")
    wh.dispose()
    return db_url


def _cli(*argv):
    parser = argparse.ArgumentParser(prog="callqa")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return args.func(args)


def test_grades_load_cli(warehouse_url, tmp_path, capsys):
    csv = tmp_path / "grades.csv"
    csv.write_text(
        "call_id,criterion,score,grader\n"
        "c1,greeting,5,lead_a\n"
        "c1,objection_handling,,lead_a\n"
        "c404,greeting,4,lead_a\n"
        "c2,tone,3,lead_b\n"
        "c404,tone,4,lead_a\n"
    )
    assert _cli("grades", "load", str(csv), "--tenant", "demo") == 0
    out, err = capsys.readouterr()
    assert "not loaded: call c404 (lines 4, 6): tenant demo has no such call" in out
    assert "loaded 3 grade(s) for 2 call(s) by 2 grader(s)" in err
    assert "2 row(s) for 1 unknown call(s) skipped" in err
    wh = Warehouse.from_url(warehouse_url)
    assert [(r["external_id"], r["criterion"], r["score"]) for r in wh.human_grades("demo")] == [
        ("c1", "greeting", 5),
        ("c1", "objection_handling", None),
        ("c2", "tone", 3),
    ]
    # A file with errors loads nothing, and says which lines to fix.
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "call_id,criterion,score,grader\nc1,greeting,2,lead_a\nc1,empathy,4,lead_a\nc2,tone,9,x\n"
    )
    with pytest.raises(GradesError) as raised:
        _cli("grades", "load", str(bad), "--tenant", "demo")
    message = str(raised.value)
    assert "2 problem(s), nothing loaded" in message
    assert "line 3: unknown criterion 'empathy' for call c1 (preset sales-default" in message
    assert "line 4: score 9 for tone of call c2 is outside the scale 1-5" in message
    assert wh.human_grades("demo")[0]["score"] == 5
    # Only calls the tenant does not have: nothing loaded, exit status 1.
    stray = tmp_path / "stray.csv"
    stray.write_text("call_id,criterion,score,grader\nzz,greeting,2,lead_a\n")
    assert _cli("grades", "load", str(stray), "--tenant", "demo") == 1
    wh.dispose()


def test_grader_agreement_asset(warehouse_url):
    wh = Warehouse.from_url(warehouse_url)
    _insert_versions(wh.engine, VERSIONS)
    wh.load_human_grades("demo", GRADES)
    asset = build_grader_agreement(["demo"])
    result = dg.materialize(
        [asset],
        partition_key="demo",
        resources={"warehouse": WarehouseResource(database_url=warehouse_url)},
    )
    assert result.success
    stored = wh.grader_agreement("demo")
    expected = agreement_rows(
        _versions_for_rows(),
        GRADES,
        {"c1": "sales-default", "c2": "sales-default"},
        {"sales-default": (1, 5)},
    )
    key = ("comparison", "preset", "prompt_version", "variant", "criterion")
    assert {tuple(r[k] for k in key): r["pairs"] for r in stored} == {
        tuple(r[k] for k in key): r["pairs"] for r in expected
    }
    pooled = next(r for r in stored if r["prompt_version"] == "v1" and r["criterion"] == "*")
    assert (pooled["exact"], pooled["bias"]) == (0.5, 0.0)
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    assert meta["dagster/row_count"].value == len(expected)
    assert meta["graded_calls"].value == 2 and meta["graders"].value == 2
    assert meta["model_human_pairs"].value == 4 + 3
    assert meta["human_human_pairs"].value == 1
    markdown = meta["agreement"].value
    assert "| model-human | sales-default | v1 | control | * | 4 | 0.50 | 1.00 |" in markdown
    wh.dispose()
