"""The tenant report: built from known warehouse rows, checked as data, opened in headless
Chromium (no console errors, charts rendered, numbers as in the warehouse, no injection),
and produced by the `tenant_report` asset, the `tenant_aggregates` job and `callqa report`."""

from __future__ import annotations

import html
import re
from collections import Counter, defaultdict
from datetime import date, timedelta

import dagster as dg
import pytest
import sqlalchemy as sa

from callqa.config.registry import default_registry
from callqa.reporting.aggregates import daily_aggregates
from callqa.reporting.report import CHARTS, Headline, call_page_name, write_report
from callqa.scoring.rubric import weighted_total
from callqa.storage import tables as t
from callqa.storage.warehouse import Warehouse
from tests.chromium import Chromium, chromium_binary
from tests.records import sample_record

TENANT = "demo"
PRESET = default_registry().preset("sales-default")
NAMES = {c.id: c.name for c in PRESET.criteria}
FIRST_DAY = date(2026, 3, 2)  # a Monday: the calls span three ISO weeks
# Customer speech and names that would run script or add markup if they were not escaped.
INJECT_QUOTE = (
    '</script><script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
)
INJECT_OPERATOR = "<b onmouseover=alert(1)>eve</b> & co"
INJECT_SUMMARY = "<script>window.__pwned = 3</script> summary"
OPERATORS = ["ann", "bob", INJECT_OPERATOR, None]
OBJECTIONS = ["It's too expensive.", "too expensive!", "We already have a provider.", INJECT_QUOTE]


def _scores(i: int) -> dict[str, int]:
    return {cid: 1 + (i * 7 + j * 3 + i // 3) % 5 for j, cid in enumerate(PRESET.criterion_ids)}


def _record(i: int) -> dict:
    external_id = f"call-{i:03d}"
    operator = OPERATORS[i % len(OPERATORS)]
    record = sample_record(TENANT, external_id, operator=operator, summary=f"{INJECT_SUMMARY} {i}")
    objection = OBJECTIONS[i % len(OBJECTIONS)]
    record["transcript"]["segments"] = [
        {"start": 0.0, "end": 4.0, "speaker": "operator", "text": "Hello, Northwind, Ann here."},
        {"start": 4.5, "end": 8.0, "speaker": "customer", "text": objection},
        {"start": 8.5, "end": 12.0, "speaker": "operator", "text": "I understand, let me explain."},
        {"start": 62.0, "end": 66.0, "speaker": "customer", "text": "Fine, send me the offer."},
    ]
    scores = _scores(i)
    for criterion in record["scores"]["criteria"]:
        criterion["score"] = scores[criterion["id"]]
        criterion["rationale"] = f"{criterion['name']} <i>rated</i> {scores[criterion['id']]}"
        criterion["evidence"] = [{"quote": objection, "start": 4.5}]
    record["scores"]["total"] = weighted_total(scores, PRESET)
    record["patterns"] = [{"type": "objection", "quote": objection, "start": 4.5}]
    if i % 4 == 0:
        record["patterns"].append(
            {"type": "competitor_mention", "quote": "Contoso is cheaper", "start": 62.0}
        )
    record["scoring"]["cost_usd"] = round(0.0015 * (i % 3 + 1), 6)
    return record


def seed(wh: Warehouse, calls: int = 16) -> None:
    """`calls` analyses over three weeks, and the daily aggregates built from them."""
    for i in range(calls):
        wh.save_analysis(_record(i), FIRST_DAY + timedelta(days=(i * 5) % 19))
    call_rows, criterion_rows = daily_aggregates(
        wh.analyses_frame(TENANT), wh.criterion_frame(TENANT)
    )
    wh.replace_daily_aggregates(TENANT, call_rows, criterion_rows)


def expected(wh: Warehouse, date_from: date | None = None, date_to: date | None = None) -> dict:
    """What the report must show, computed from the tables with plain SQL here."""
    a, cs = t.analyses, t.criterion_scores
    where = [a.c.tenant == TENANT]
    if date_from:
        where.append(a.c.call_day >= date_from)
    if date_to:
        where.append(a.c.call_day <= date_to)
    with wh.engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                a.c.external_id,
                a.c.call_day,
                a.c.operator,
                a.c.total,
                a.c.cost_usd,
                a.c.weakest_criterion,
            ).where(*where)
        ).all()
        scores = conn.execute(
            sa.select(cs.c.criterion, cs.c.score, a.c.operator)
            .join(a, sa.and_(a.c.tenant == cs.c.tenant, a.c.external_id == cs.c.external_id))
            .where(*where)
        ).all()
    weeks, days, cells = defaultdict(list), defaultdict(float), defaultdict(list)
    for r in rows:
        weeks[r.call_day - timedelta(days=r.call_day.weekday())].append(r.total)
        days[r.call_day] += r.cost_usd
    for criterion, score, operator in scores:
        cells[(criterion, operator or "unknown")].append(score)
        cells[(criterion, "*")].append(score)
    weakest = Counter(r.weakest_criterion for r in rows)
    lowest = sorted(rows, key=lambda r: (r.total, r.call_day, r.external_id))[:10]
    return {
        "calls": len(rows),
        "mean_total": round(sum(r.total for r in rows) / len(rows), 2) if rows else None,
        "cost": sum(r.cost_usd for r in rows),
        "weakest": weakest,
        "lowest": [(r.external_id, r.total) for r in lowest],
        "weekly_means": [sum(v) / len(v) for _, v in sorted(weeks.items())],
        "daily_cost": [v for _, v in sorted(days.items())],
        "cells": {k: sum(v) / len(v) for k, v in cells.items()},
        "totals": [r.total for r in rows],
    }


def test_headline_and_pages_match_the_warehouse(tmp_path):
    wh = Warehouse.from_url(f"sqlite:///{tmp_path / 'wh.db'}")
    seed(wh)
    want = expected(wh)
    report = write_report(wh, TENANT, tmp_path / "report", tenant_name="Northwind")
    h = report.headline
    assert (h.calls, h.mean_total) == (want["calls"], want["mean_total"])
    assert h.cost_usd == pytest.approx(want["cost"])
    top = max(want["weakest"].values())
    assert h.weakest_calls == top
    assert h.weakest_criterion in {NAMES[c] for c, n in want["weakest"].items() if n == top}
    page = report.index.read_text()
    assert report.size_bytes == len(page.encode())
    # Every call the index links to has its page; nothing else is in calls/.
    links = set(re.findall(r'href="calls/([^"#]+)', page))
    assert links == {p.name for p in (tmp_path / "report" / "calls").iterdir()}
    assert {call_page_name(i) for i, _ in want["lowest"]} <= links
    assert report.call_pages == len(links)
    # plotly.js is embedded once, and nothing points at a network.
    assert page.count("<script>") == 1 + len(CHARTS)
    assert page.count('class="plotly-graph-div"') == len(CHARTS)
    markup = re.sub(r"<script>.*?</script>", "", page, flags=re.S)  # plotly.js has URLs
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", markup)
    # Warehouse strings are escaped wherever they appear, in the page and the chart data.
    for raw in (INJECT_QUOTE, INJECT_OPERATOR, INJECT_SUMMARY, "<i>rated</i>"):
        assert raw not in page
    assert "&lt;/script&gt;&lt;script&gt;window.__pwned = 1" in page
    call_page = (tmp_path / "report" / "calls" / call_page_name(want["lowest"][0][0])).read_text()
    assert "<script" not in call_page and INJECT_SUMMARY not in call_page
    wh.dispose()


def test_date_range_limits_every_figure(tmp_path):
    wh = Warehouse.from_url(f"sqlite:///{tmp_path / 'wh.db'}")
    seed(wh)
    start, end = FIRST_DAY + timedelta(days=7), FIRST_DAY + timedelta(days=13)  # week two
    want = expected(wh, start, end)
    assert 0 < want["calls"] < 16
    report = write_report(wh, TENANT, tmp_path / "r", date_from=start, date_to=end)
    assert (report.headline.calls, report.headline.mean_total) == (
        want["calls"],
        want["mean_total"],
    )
    assert report.headline.period == f"{start} to {end}"
    page = report.index.read_text()
    assert '"x":["2026-W11"]' in page  # the trend has week two only
    with pytest.raises(ValueError, match="after its end"):
        write_report(wh, TENANT, tmp_path / "r", date_from=end, date_to=start)
    wh.dispose()


def test_empty_period_gives_a_small_page_without_charts(tmp_path):
    wh = Warehouse.from_url(f"sqlite:///{tmp_path / 'wh.db'}")
    report = write_report(wh, TENANT, tmp_path / "r")
    assert report.headline == Headline(
        tenant=TENANT,
        calls=0,
        mean_total=None,
        weakest_criterion=None,
        weakest_calls=0,
        cost_usd=0.0,
    )
    page = report.index.read_text()
    assert "No scored calls in this period." in page
    assert "<script" not in page and report.size_bytes < 20_000
    assert report.call_pages == 0 and not list((tmp_path / "r" / "calls").iterdir())
    wh.dispose()


def test_rewriting_replaces_the_call_pages(tmp_path):
    wh = Warehouse.from_url(f"sqlite:///{tmp_path / 'wh.db'}")
    seed(wh)
    out = tmp_path / "r"
    first = write_report(wh, TENANT, out)
    week_three = FIRST_DAY + timedelta(days=14)
    second = write_report(wh, TENANT, out, date_from=week_three)
    pages = {p.name for p in (out / "calls").iterdir()}
    linked = set(re.findall(r'href="calls/([^"#]+)', second.index.read_text()))
    assert pages == linked and len(pages) == second.call_pages
    assert {call_page_name(i) for i, _ in expected(wh, week_three)["lowest"]} <= pages
    assert first.call_pages > 0 and pages != {call_page_name(i) for i, _ in expected(wh)["lowest"]}
    assert sorted(p.name for p in out.iterdir()) == ["calls", "index.html"]  # no leftovers
    wh.dispose()


def test_headline_markdown_escapes():
    h = Headline("demo", 3, 61.25, "<b>Close</b> | now", 2, 0.0123)
    md = h.markdown()
    assert "&lt;b&gt;Close&lt;/b&gt; \\| now (2 of 3 calls)" in md
    assert "| 3 | 61.2 |" in md and "$0.0123" in md


def test_reports_dir_setting(monkeypatch, tmp_path):
    from callqa import settings

    assert settings.reports_dir() == (tmp_path / "data" / "reports").resolve()
    monkeypatch.setenv("CALLQA_REPORTS_DIR", str(tmp_path / "elsewhere"))
    assert settings.reports_dir() == (tmp_path / "elsewhere").resolve()


def test_report_on_postgresql_matches_sqlite(pg_url, tmp_path):
    sqlite = Warehouse.from_url(f"sqlite:///{tmp_path / 'wh.db'}")
    pg = Warehouse.from_url(pg_url)
    seed(sqlite)
    seed(pg)
    on_sqlite = write_report(sqlite, TENANT, tmp_path / "sqlite")
    on_pg = write_report(pg, TENANT, tmp_path / "pg")
    assert on_pg.headline == on_sqlite.headline
    assert on_pg.headline.mean_total == expected(pg)["mean_total"]
    strip = re.compile(r"generated [0-9-]+ [0-9:]+ UTC|built [0-9-]+ [0-9:]+ UTC")
    assert strip.sub("", on_pg.index.read_text()) == strip.sub("", on_sqlite.index.read_text())
    sqlite.dispose()
    pg.dispose()


# --- Dagster and the command line ------------------------------------------------------------


def test_asset_writes_the_report_with_metadata(tmp_path, monkeypatch):
    from callqa.assets.report import build_tenant_report
    from callqa.resources import WarehouseResource

    db_url = f"sqlite:///{tmp_path / 'wh.db'}"
    wh = Warehouse.from_url(db_url)
    seed(wh)
    monkeypatch.setenv("CALLQA_REPORTS_DIR", str(tmp_path / "reports"))
    result = dg.materialize(
        [build_tenant_report(sorted(default_registry().tenants))],
        partition_key=TENANT,
        instance=dg.DagsterInstance.ephemeral(),
        resources={"warehouse": WarehouseResource(database_url=db_url)},
    )
    assert result.success
    index = tmp_path / "reports" / TENANT / "index.html"
    assert index.is_file()
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    want = expected(wh)
    assert meta["calls"].value == want["calls"]
    assert meta["mean_total"].value == want["mean_total"]
    assert meta["path"].value == str(index)
    assert meta["report"].value == index.as_uri()
    assert f"| {want['calls']} | {want['mean_total']:.1f} |" in meta["preview"].value
    assert "Northwind Telecom (demo)" in index.read_text()
    wh.dispose()


@pytest.mark.slow
def test_tenant_aggregates_job_rebuilds_aggregates_then_report(tmp_path, monkeypatch):
    """The sensor's job, from the code location's own definitions and resources."""
    from callqa.definitions import defs as load_defs

    db_url = f"sqlite:///{tmp_path / 'wh.db'}"
    monkeypatch.setenv("CALLQA_DATABASE_URL", db_url)
    monkeypatch.setenv("CALLQA_REPORTS_DIR", str(tmp_path / "reports"))
    wh = Warehouse.from_url(db_url)
    for i in range(5):  # analyses only: the job must build the aggregates the report reads
        wh.save_analysis(_record(i), FIRST_DAY + timedelta(days=i))
    job = load_defs().resolve_job_def("tenant_aggregates")
    result = job.execute_in_process(partition_key=TENANT, instance=dg.DagsterInstance.ephemeral())
    assert result.success
    done = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert done == {
        "tenant_daily_aggregates",
        "tenant_report",
        "grader_agreement",
        "variant_comparison",
    }
    page = (tmp_path / "reports" / TENANT / "index.html").read_text()
    assert 'id="chart-trend"' in page and "not built yet" not in page
    wh.dispose()


def test_cli_report(tmp_path, monkeypatch, capsys):
    from callqa.cli import main

    db_url = f"sqlite:///{tmp_path / 'wh.db'}"
    wh = Warehouse.from_url(db_url)
    seed(wh)
    monkeypatch.setenv("CALLQA_DATABASE_URL", db_url)
    monkeypatch.setenv("CALLQA_REPORTS_DIR", str(tmp_path / "reports"))

    assert main(["report", "--tenant", TENANT]) == 0
    out, err = capsys.readouterr()
    default = tmp_path / "reports" / TENANT / "index.html"
    assert out.strip() == str(default) and default.is_file()
    want = expected(wh)
    assert f"{want['calls']} call(s), mean total {want['mean_total']:.1f}" in err

    start, end = FIRST_DAY, FIRST_DAY + timedelta(days=6)
    args = ["report", "--tenant", TENANT, "--from", str(start), "--to", str(end)]
    assert main([*args, "--out", str(tmp_path / "week")]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == str(tmp_path / "week" / "index.html")
    assert f"{expected(wh, start, end)['calls']} call(s)" in err and f"({start} to {end})" in err

    assert main(["report", "--tenant", TENANT, "--from", "2026-13-01"]) == 2
    assert "--from '2026-13-01': expected a day" in capsys.readouterr().err
    assert main(["report", "--tenant", TENANT, "--from", str(end), "--to", str(start)]) == 2
    assert main(["report", "--tenant", "nobody"]) == 2
    wh.dispose()


# --- in a real browser -----------------------------------------------------------------------

CHARTS_READY = " && ".join(
    f"document.querySelector('#chart-{name} svg.main-svg')" for name in CHARTS
)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if chromium_binary() is None:
        pytest.fail(
            "chromium is not installed: `./dev test` installs Debian's chromium as root; "
            "or set CALLQA_TEST_CHROMIUM"
        )
    with Chromium(tmp_path_factory.mktemp("chromium")) as chromium:
        yield chromium


def _no_network(requests: list[str]) -> None:
    assert requests, "the page requested nothing?"
    assert all(u.split(":", 1)[0] in ("file", "data", "blob") for u in requests), requests


@pytest.mark.slow
def test_report_in_chromium(browser, db_url, tmp_path):
    wh = Warehouse.from_url(db_url)
    seed(wh)
    want = expected(wh)
    report = write_report(wh, TENANT, tmp_path / "report", tenant_name="Northwind <Demo>")

    load = browser.load(report.index.as_uri(), ready=CHARTS_READY)
    assert load.errors == []
    _no_network(load.requests)
    # Every chart rendered into SVG, inside its own panel.
    for name in CHARTS:
        assert browser.evaluate(f"document.querySelectorAll('#chart-{name} svg').length") > 0
        svg_width, panel_width = browser.evaluate(
            f"(s => [s.getBoundingClientRect().width, s.closest('section').clientWidth])"
            f"(document.querySelector('#chart-{name} svg.main-svg'))"
        )
        assert 200 < svg_width <= panel_width

    # The headline figures are the warehouse's.
    def text(selector: str) -> str:
        return browser.evaluate(f"document.querySelector({selector!r}).textContent.trim()")

    assert text("#headline-calls") == str(want["calls"])
    assert text("#headline-mean-total") == f"{want['mean_total']:.1f}"
    assert text("#headline-cost") == f"${want['cost']:.4f}"
    assert text("#headline-weakest") == report.headline.weakest_criterion
    assert text("title") == "Call quality: Northwind <Demo>"

    # The ten lowest calls, in order, with their totals, each with evidence quotes.
    rows = browser.evaluate(
        "[...document.querySelectorAll('tr.low-call')].map(r => "
        "[r.dataset.call, r.querySelector('.total').textContent, "
        "r.querySelectorAll('blockquote.evidence').length])"
    )
    assert [(c, float(total)) for c, total, _ in rows] == want["lowest"]
    assert all(n > 0 for *_, n in rows)

    # The charts plot the warehouse's numbers (weekly and per-cell means weighted by calls).
    trend = browser.evaluate("document.getElementById('chart-trend').data[0].y")
    assert trend == pytest.approx(want["weekly_means"], abs=0.01)
    cost = browser.evaluate("document.getElementById('chart-cost').data[0].y")
    assert cost == pytest.approx(want["daily_cost"], abs=1e-6)
    bins = browser.evaluate("document.getElementById('chart-totals').data[0].y")
    assert sum(bins) == want["calls"]
    heat = browser.evaluate(
        "(d => ({x: d.x, y: d.y, z: d.z}))(document.getElementById('chart-heatmap').data[0])"
    )
    assert heat["x"][0] == "All operators" and heat["y"][0] == "Greeting"
    by_name = {n: c for c, n in NAMES.items()}
    for yi, name in enumerate(heat["y"]):
        for xi, operator in enumerate(heat["x"]):
            key = "*" if operator == "All operators" else html.unescape(operator)
            assert heat["z"][yi][xi] == pytest.approx(want["cells"][(by_name[name], key)], abs=0.01)

    # Nothing from the warehouse ran as script or became markup; it shows as text.
    assert browser.evaluate("typeof window.__pwned") == "undefined"
    assert browser.evaluate("document.scripts.length") == 1 + len(CHARTS)
    assert browser.evaluate("document.querySelectorAll('img, b[onmouseover]').length") == 0
    body = browser.evaluate("document.body.textContent")
    assert INJECT_QUOTE in body and "Objection handling <i>rated</i>" in body
    heatmap_text = browser.evaluate("document.getElementById('chart-heatmap').textContent")
    assert INJECT_OPERATOR in heatmap_text

    shot = browser.screenshot(tmp_path / "report.png")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
    wh.dispose()


@pytest.mark.slow
def test_call_page_in_chromium(browser, tmp_path):
    wh = Warehouse.from_url(f"sqlite:///{tmp_path / 'wh.db'}")
    seed(wh)
    report = write_report(wh, TENANT, tmp_path / "report")
    browser.load(report.index.as_uri(), ready=CHARTS_READY)
    # Follow the lowest call's link, as a reader would.
    href = browser.evaluate("document.querySelector('tr.low-call a.call-link').href")
    external_id, total = expected(wh)["lowest"][0]
    assert href.endswith(f"/calls/{external_id}.html")
    load = browser.load(href)
    assert load.errors == []
    _no_network(load.requests)
    assert browser.evaluate("document.scripts.length") == 0
    assert browser.evaluate("document.getElementById('call-id').textContent") == external_id
    assert browser.evaluate("document.getElementById('call-total').textContent") == f"{total:.1f}"
    assert browser.evaluate("document.querySelectorAll('#transcript tbody tr').length") == 4
    assert browser.evaluate("document.querySelectorAll('tr.criterion-row').length") == 6
    criteria = wh.analysis(TENANT, external_id)["scores"]["criteria"]
    weakest_name = next(c["name"] for c in criteria if c["id"] == _weakest_id(wh, external_id))
    assert browser.evaluate("document.getElementById('call-weakest').textContent") == weakest_name
    # Evidence links point at transcript lines that exist.
    targets = browser.evaluate(
        "[...document.querySelectorAll('blockquote.evidence a')].map(a => a.hash)"
    )
    assert targets and all(
        browser.evaluate(f"!!document.querySelector({target!r})") for target in set(targets)
    )
    assert browser.evaluate("typeof window.__pwned") == "undefined"
    assert INJECT_SUMMARY in browser.evaluate("document.getElementById('summary').textContent")
    back = browser.evaluate("document.querySelector('a[href=\"../index.html\"]').href")
    assert back == report.index.as_uri()
    wh.dispose()


def _weakest_id(wh: Warehouse, external_id: str) -> str:
    with wh.engine.connect() as conn:
        return conn.execute(
            sa.select(t.analyses.c.weakest_criterion).where(
                t.analyses.c.tenant == TENANT, t.analyses.c.external_id == external_id
            )
        ).scalar_one()


@pytest.mark.slow
def test_empty_report_in_chromium(browser, tmp_path):
    wh = Warehouse.from_url(f"sqlite:///{tmp_path / 'wh.db'}")
    report = write_report(wh, TENANT, tmp_path / "report")
    load = browser.load(report.index.as_uri())
    assert load.errors == []
    assert browser.evaluate("document.getElementById('headline-calls').textContent") == "0"
    assert browser.evaluate("!!document.getElementById('no-calls')")
    wh.dispose()


@pytest.mark.slow
def test_chromium_harness_sees_what_it_must_not_find(browser, tmp_path):
    """The checks above are not vacuous: console errors, exceptions, CSP violations, network
    requests and dialogs of a page are all reported."""
    page = tmp_path / "bad.html"
    page.write_text(
        "<!doctype html><html><head>"
        '<meta http-equiv="Content-Security-Policy" content="script-src \'sha256-'
        "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='\">"
        "</head><body><img src='http://127.0.0.1:9/x.png'>"
        "<script>console.error('boom')</script></body></html>"
    )
    load = browser.load(page.as_uri())
    assert any("Content Security Policy" in e for e in load.log_errors), load.log_errors
    assert any(u.startswith("http://127.0.0.1:9/") for u in load.requests)
    assert load.failed_requests

    page.write_text(
        "<!doctype html><html><body><script>console.error('boom'); alert('hi');"
        "throw new Error('bad')</script></body></html>"
    )
    load = browser.load(page.as_uri())
    assert load.console_errors == ["boom"] and load.dialogs == ["hi"]
    assert any("bad" in e for e in load.exceptions)
