"""The tenant report: one self-contained HTML page per tenant, plus a small page per call.

`write_report` reads the warehouse (through `Warehouse` methods only) and writes
`<out>/index.html` and `<out>/calls/<call id>.html`:

- headline figures: calls, mean total, the criterion most often a call's weakest, cost;
- charts (plotly): score trend per ISO week and the criterion x operator heat map
  (call-weighted means of the daily aggregate tables), the distribution of totals, how
  often each criterion is a call's weakest, recurring patterns (objections) by type, and
  the cost per day;
- the ten lowest-scoring calls with the evidence of their weakest criteria.

Offline and self-contained: plotly.js is embedded once, inline, in the index page; the per-call
pages have no script at all. Nothing is loaded from a network. Every string from the
warehouse (customer speech among them) is HTML-escaped by the templates (Jinja2 with
autoescape), and escaped again before it reaches a chart, because plotly.js renders a
subset of HTML tags in labels. A Content-Security-Policy allows only the page's own
scripts, by hash, so markup that slipped through escaping could still not run.

Per-call pages are written for the calls the index links to (the ten lowest and the
example quotes), so a report's size does not grow with the tenant's call count.
"""

from __future__ import annotations

import base64
import hashlib
import html
import os
import re
import shutil
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote as url_quote

from callqa.scoring.evidence import normalize
from callqa.storage.warehouse import ALL_OPERATORS

if TYPE_CHECKING:  # plotly and jinja2 load only when a report is written
    from callqa.storage.warehouse import Warehouse

INDEX = "index.html"
CALLS_DIR = "calls"
LOWEST_CALLS = 10
LOW_CRITERIA_SHOWN = 3  # criteria with evidence per low call in the index
QUOTES_PER_PATTERN = 5
TEAM_LABEL = "All operators"
UNKNOWN_OPERATOR = "unknown"  # what the aggregates call a call without an operator
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,127}$")
_SCRIPT = re.compile(r"<script[^>]*>(.*?)</script>", re.S)

# Chart order and ids (each is a plotly div `chart-<name>` in the index page).
CHARTS = ("trend", "heatmap", "totals", "weakest", "patterns", "cost")


@dataclass(frozen=True)
class Headline:
    """The report's headline figures (also the asset's metadata)."""

    tenant: str
    calls: int
    mean_total: float | None  # mean of the calls' totals, 2 decimals; None without calls
    weakest_criterion: str | None  # name of the criterion most often a call's weakest
    weakest_calls: int  # of how many calls it was the weakest
    cost_usd: float
    date_from: date | None = None
    date_to: date | None = None

    @property
    def period(self) -> str:
        if self.date_from is None and self.date_to is None:
            return "all days"
        start = self.date_from.isoformat() if self.date_from else "the first call"
        end = self.date_to.isoformat() if self.date_to else "the last call"
        return f"{start} to {end}"

    def markdown(self) -> str:
        def cell(value: object) -> str:
            return html.escape(str(value)).replace("|", "\\|")

        mean = "–" if self.mean_total is None else f"{self.mean_total:.1f}"
        weakest = (
            f"{cell(self.weakest_criterion)} ({self.weakest_calls} of {self.calls} calls)"
            if self.weakest_criterion
            else "–"
        )
        return (
            f"**{cell(self.tenant)}**, {cell(self.period)}\n\n"
            "| calls | mean total | weakest criterion | cost |\n"
            "| ---: | ---: | --- | ---: |\n"
            f"| {self.calls} | {mean} | {weakest} | {money(self.cost_usd)} |\n"
        )


@dataclass(frozen=True)
class Report:
    headline: Headline
    index: Path
    call_pages: int
    size_bytes: int  # of index.html


def money(value: float) -> str:
    return f"${value:,.2f}" if value >= 10 else f"${value:,.4f}"


def clock(seconds: float) -> str:
    """Seconds as m:ss (h:mm:ss from an hour on)."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def call_page_name(external_id: str) -> str:
    """File name of a call's page: the call id when it is a safe name, else a hash of it."""
    if _SAFE_ID.match(external_id):
        return f"{external_id}.html"
    return f"call-{hashlib.sha256(external_id.encode()).hexdigest()[:16]}.html"


def _call_href(external_id: str) -> str:
    return f"{CALLS_DIR}/{url_quote(call_page_name(external_id))}"


def _segment_at(segments: list[dict], start: float) -> int | None:
    """Index of the transcript segment a quote at `start` belongs to."""
    best = None
    for i, seg in enumerate(segments):
        if seg["start"] <= start + 0.05:
            best = i
        else:
            break
    return best if best is not None else (0 if segments else None)


# --- reading the warehouse -------------------------------------------------------------------


@dataclass
class _Collected:
    """What the index needs, gathered in one streamed pass over the analyses."""

    calls: int = 0
    total_sum: float = 0.0
    cost: float = 0.0
    totals: list[float] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)  # criterion id -> name, preset order
    scale: tuple[int, int] | None = None
    weakest: Counter = field(default_factory=Counter)
    score_sums: Counter = field(default_factory=Counter)
    score_counts: Counter = field(default_factory=Counter)
    lowest: list[dict] = field(default_factory=list)  # candidate rows, pruned to LOWEST_CALLS
    pattern_counts: Counter = field(default_factory=Counter)
    pattern_calls: dict[str, set] = field(default_factory=lambda: defaultdict(set))
    quote_counts: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    quote_example: dict[tuple[str, str], dict] = field(default_factory=dict)

    def add(self, row: dict) -> None:
        record = row["record"]
        total = float(row["total"])
        self.calls += 1
        self.total_sum += total
        self.cost += float(row["cost_usd"] or 0.0)
        self.totals.append(total)
        scores = record.get("scores", {})
        scale = scores.get("scale") or {"min": 1, "max": 5}
        self.scale = (
            (scale["min"], scale["max"])
            if self.scale is None
            else (min(self.scale[0], scale["min"]), max(self.scale[1], scale["max"]))
        )
        for criterion in scores.get("criteria", []):
            self.names.setdefault(criterion["id"], criterion.get("name") or criterion["id"])
            self.score_sums[criterion["id"]] += criterion["score"]
            self.score_counts[criterion["id"]] += 1
        self.weakest[row["weakest_criterion"]] += 1
        for pattern in record.get("patterns", []):
            kind, quote = pattern["type"], pattern["quote"]
            self.pattern_counts[kind] += 1
            self.pattern_calls[kind].add(row["external_id"])
            key = normalize(quote) or quote
            self.quote_counts[kind][key] += 1
            self.quote_example.setdefault(
                (kind, key),
                {"quote": quote, "start": pattern["start"], "external_id": row["external_id"]},
            )
        self.lowest.append(row)
        if len(self.lowest) > 20 * LOWEST_CALLS:
            self._prune()

    def _prune(self) -> None:
        self.lowest = sorted(self.lowest, key=_lowest_key)[:LOWEST_CALLS]

    def lowest_calls(self) -> list[dict]:
        self._prune()
        return self.lowest

    def weakest_headline(self) -> tuple[str | None, int]:
        if not self.weakest:
            return None, 0

        def key(cid: str) -> tuple:  # most often weakest, then the lowest mean score
            mean = self.score_sums[cid] / self.score_counts[cid] if self.score_counts[cid] else 0
            return (-self.weakest[cid], mean, cid)

        cid = min(self.weakest, key=key)
        return self.names.get(cid, cid), self.weakest[cid]


def _lowest_key(row: dict) -> tuple:
    return (float(row["total"]), row["call_day"], row["external_id"])


# --- charts ----------------------------------------------------------------------------------


def _text(value: object) -> str:
    """A warehouse string as plotly.js label text: it renders <b>, <a href> and entities, so
    markup is escaped and comes out as the literal characters."""
    return html.escape(str(value))


def _operator_label(operator: str | None) -> str:
    if operator == ALL_OPERATORS:
        return TEAM_LABEL
    return _text(operator if operator else UNKNOWN_OPERATOR)


def _weighted(rows: Iterable[dict], value: str) -> tuple[float, int]:
    rows = list(rows)
    calls = sum(r["calls"] for r in rows)
    return (sum(r[value] * r["calls"] for r in rows) / calls if calls else 0.0), calls


def _layout(**kwargs: Any) -> dict:
    return {
        "template": "plotly_white",
        "height": 340,
        "margin": {"l": 60, "r": 20, "t": 20, "b": 50},
        "font": {"family": "system-ui, sans-serif", "size": 12},
        **kwargs,
    }


def _trend_figure(team_rows: list[dict]):
    import plotly.graph_objects as go

    weeks: dict[date, list[dict]] = defaultdict(list)
    for r in team_rows:
        weeks[r["day"] - timedelta(days=r["day"].weekday())].append(r)
    labels, means, calls, starts = [], [], [], []
    for monday in sorted(weeks):
        mean, n = _weighted(weeks[monday], "mean_total")
        year, week, _ = monday.isocalendar()
        labels.append(f"{year}-W{week:02d}")
        means.append(round(mean, 2))
        calls.append(n)
        starts.append(monday.isoformat())
    fig = go.Figure(
        go.Scatter(
            x=labels,
            y=means,
            mode="lines+markers+text",
            text=[f"{m:.1f}" for m in means],
            textposition="top center",
            customdata=list(zip(starts, calls, strict=True)),
            hovertemplate=(
                "week of %{customdata[0]}<br>mean total %{y:.2f}<br>"
                "%{customdata[1]} calls<extra></extra>"
            ),
            line={"width": 3},
        )
    )
    fig.update_layout(
        **_layout(
            xaxis={"type": "category", "title": "ISO week"},
            yaxis={"range": [0, 105], "title": "mean total (0-100)"},
        )
    )
    return fig


def _heatmap_figure(criterion_rows: list[dict], names: dict[str, str], scale: tuple[int, int]):
    import plotly.graph_objects as go

    cells: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in criterion_rows:
        cells[(r["criterion"], r["operator"])].append(r)
    criteria = [c for c in names if any(k[0] == c for k in cells)]
    criteria += sorted({k[0] for k in cells} - set(criteria))
    operators = sorted({k[1] for k in cells} - {ALL_OPERATORS})
    if any(k[1] == ALL_OPERATORS for k in cells):
        operators = [ALL_OPERATORS, *operators]
    z, counts = [], []
    for criterion in criteria:
        z_row, n_row = [], []
        for operator in operators:
            rows = cells.get((criterion, operator))
            mean, n = _weighted(rows, "mean_score") if rows else (None, 0)
            z_row.append(None if mean is None else round(mean, 2))
            n_row.append(n)
        z.append(z_row)
        counts.append(n_row)
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=[_operator_label(o) for o in operators],
            y=[_text(names.get(c, c)) for c in criteria],
            customdata=counts,
            zmin=scale[0],
            zmax=scale[1],
            colorscale="RdYlGn",
            texttemplate="%{z:.2f}",
            hovertemplate=(
                "%{y} / %{x}<br>mean score %{z:.2f}<br>%{customdata} calls<extra></extra>"
            ),
            colorbar={"title": {"text": "mean"}},
            xgap=2,
            ygap=2,
        )
    )
    fig.update_layout(
        **_layout(
            height=max(260, 60 + 42 * len(criteria)),
            margin={"l": 150, "r": 20, "t": 20, "b": 60},
            yaxis={"autorange": "reversed"},
        )
    )
    return fig


def _totals_figure(totals: list[float]):
    import plotly.graph_objects as go

    counts = [0] * 10
    for total in totals:
        counts[min(int(total // 10), 9)] += 1  # 100 falls into the 90-100 bin
    labels = [f"{lo}-{lo + 10}" for lo in range(0, 100, 10)]
    fig = go.Figure(
        go.Bar(
            x=labels,
            y=counts,
            text=[c or "" for c in counts],
            textposition="outside",
            hovertemplate="total %{x}: %{y} calls<extra></extra>",
            marker={"color": "#4c78a8"},
        )
    )
    fig.update_layout(
        **_layout(
            bargap=0.05,
            xaxis={"type": "category", "title": "total"},
            yaxis={"title": "calls", "rangemode": "tozero"},
        )
    )
    return fig


def _weakest_figure(weakest: Counter, names: dict[str, str], calls: int):
    import plotly.graph_objects as go

    ids = sorted(weakest, key=lambda c: (weakest[c], names.get(c, c)))
    fig = go.Figure(
        go.Bar(
            y=[_text(names.get(c, c)) for c in ids],
            x=[weakest[c] for c in ids],
            orientation="h",
            text=[f"{weakest[c]} ({weakest[c] / calls:.0%})" for c in ids],
            textposition="auto",
            hovertemplate="%{y}: weakest in %{x} calls<extra></extra>",
            marker={"color": "#e45756"},
        )
    )
    fig.update_layout(
        **_layout(
            height=max(220, 60 + 36 * len(ids)),
            margin={"l": 150, "r": 20, "t": 20, "b": 50},
            xaxis={"title": "calls where it is the lowest score", "rangemode": "tozero"},
        )
    )
    return fig


def _patterns_figure(counts: Counter, calls_by_type: dict[str, set]):
    import plotly.graph_objects as go

    kinds = sorted(counts, key=lambda k: (counts[k], k))
    fig = go.Figure(
        go.Bar(
            y=[_text(k) for k in kinds],
            x=[counts[k] for k in kinds],
            orientation="h",
            customdata=[len(calls_by_type[k]) for k in kinds],
            text=[f"{counts[k]} in {len(calls_by_type[k])} calls" for k in kinds],
            textposition="auto",
            hovertemplate="%{y}: %{x} times in %{customdata} calls<extra></extra>",
            marker={"color": "#f58518"},
        )
    )
    fig.update_layout(
        **_layout(
            height=max(200, 60 + 36 * len(kinds)),
            margin={"l": 150, "r": 20, "t": 20, "b": 50},
            xaxis={"title": "occurrences", "rangemode": "tozero"},
        )
    )
    return fig


def _cost_figure(team_rows: list[dict]):
    import plotly.graph_objects as go

    fig = go.Figure(
        go.Bar(
            x=[r["day"].isoformat() for r in team_rows],
            y=[r["cost_usd"] for r in team_rows],
            customdata=[r["calls"] for r in team_rows],
            hovertemplate="%{x}: $%{y:.4f} for %{customdata} calls<extra></extra>",
            marker={"color": "#54a24b"},
        )
    )
    fig.update_layout(
        **_layout(
            xaxis={"type": "category", "title": "day"},
            yaxis={"title": "USD", "rangemode": "tozero", "tickformat": "$.4f"},
        )
    )
    return fig


def _chart_html(fig, name: str) -> str:
    import plotly.io as pio

    # plotly escapes <, > and / inside the JSON it writes into the script.
    return pio.to_html(
        fig,
        full_html=False,
        include_plotlyjs=False,
        div_id=f"chart-{name}",
        config={"displaylogo": False, "responsive": True, "typesetMath": False},
    )


def _script_hashes(fragments: Iterable[str]) -> list[str]:
    """CSP source expressions for every inline script in our own generated fragments."""
    hashes = []
    for fragment in fragments:
        for body in _SCRIPT.findall(fragment):
            digest = hashlib.sha256(body.encode()).digest()
            hashes.append(f"'sha256-{base64.b64encode(digest).decode()}'")
    return hashes


def _csp(script_hashes: list[str]) -> str:
    scripts = " ".join(dict.fromkeys(script_hashes)) or "'none'"
    return (
        f"default-src 'none'; script-src {scripts}; style-src 'unsafe-inline'; "
        "img-src data: blob:; font-src data:; base-uri 'none'; form-action 'none'"
    )


def _charts(
    collected: _Collected, team: list[dict], criterion_rows: list[dict], scale: tuple[int, int]
) -> dict[str, str | None]:
    """Each chart's HTML (a plotly div and its script), None where there is nothing to plot."""
    charts: dict[str, str | None] = dict.fromkeys(CHARTS)
    if collected.calls:
        charts["totals"] = _chart_html(_totals_figure(collected.totals), "totals")
        charts["weakest"] = _chart_html(
            _weakest_figure(collected.weakest, collected.names, collected.calls), "weakest"
        )
    if collected.pattern_counts:
        charts["patterns"] = _chart_html(
            _patterns_figure(collected.pattern_counts, collected.pattern_calls), "patterns"
        )
    if team:
        charts["trend"] = _chart_html(_trend_figure(team), "trend")
        charts["cost"] = _chart_html(_cost_figure(team), "cost")
    if criterion_rows:
        charts["heatmap"] = _chart_html(
            _heatmap_figure(criterion_rows, collected.names, scale), "heatmap"
        )
    return charts


def _pattern_rows(collected: _Collected) -> list[dict]:
    """Pattern types, most frequent first, each with its most recurring quotes."""
    rows = []
    for kind in sorted(collected.pattern_counts, key=lambda k: (-collected.pattern_counts[k], k)):
        quotes = []
        for key, n in collected.quote_counts[kind].most_common(QUOTES_PER_PATTERN):
            example = collected.quote_example[(kind, key)]
            quotes.append(
                {
                    "quote": example["quote"],
                    "count": n,
                    "external_id": example["external_id"],
                    "time": clock(example["start"]),
                    "start": example["start"],
                    "href": _call_href(example["external_id"]),
                }
            )
        rows.append(
            {
                "type": kind,
                "count": collected.pattern_counts[kind],
                "calls": len(collected.pattern_calls[kind]),
                "quotes": quotes,
            }
        )
    return rows


# --- pages -----------------------------------------------------------------------------------


def template_environment():
    """The Jinja2 environment of callqa's HTML pages (templates/): autoescape, strict."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("callqa.reporting", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _evidence(criterion: dict, segments: list[dict], href: str) -> list[dict]:
    out = []
    for ev in criterion.get("evidence", []):
        seg = _segment_at(segments, ev["start"])
        out.append(
            {
                "quote": ev["quote"],
                "time": clock(ev["start"]),
                "href": f"{href}#seg-{seg}" if seg is not None else href,
            }
        )
    return out


def _low_call(row: dict, scale_max: int) -> dict:
    record = row["record"]
    criteria = record["scores"]["criteria"]
    segments = record.get("transcript", {}).get("segments", [])
    href = _call_href(row["external_id"])
    ordered = sorted(criteria, key=lambda c: (c["score"], -c["weight"]))
    shown = [c for c in ordered if c["score"] < scale_max][:LOW_CRITERIA_SHOWN]
    weakest = next((c for c in criteria if c["id"] == row["weakest_criterion"]), None)
    return {
        "external_id": row["external_id"],
        "href": href,
        "day": row["call_day"].isoformat(),
        "operator": row["operator"] or UNKNOWN_OPERATOR,
        "total": float(row["total"]),
        "weakest": weakest["name"] if weakest else row["weakest_criterion"],
        "criteria": [
            {
                "name": c["name"],
                "score": c["score"],
                "rationale": c["rationale"],
                "evidence": _evidence(c, segments, href),
            }
            for c in shown
        ],
    }


def _call_page(env, tenant_name: str, row: dict, generated: str) -> tuple[str, str]:
    """A call's page: its file name and HTML."""
    record = row["record"]
    segments = record.get("transcript", {}).get("segments", [])
    scores = record["scores"]
    call = record.get("call", {})
    criteria = [
        {
            "name": c["name"],
            "id": c["id"],
            "score": c["score"],
            "weight": c["weight"],
            "rationale": c["rationale"],
            "evidence": _evidence(c, segments, ""),
        }
        for c in scores["criteria"]
    ]
    patterns = [
        {
            "type": p["type"],
            "quote": p["quote"],
            "time": clock(p["start"]),
            "href": f"#seg-{_segment_at(segments, p['start'])}",
        }
        for p in record.get("patterns", [])
    ]
    scoring = record.get("scoring", {})
    page = env.get_template("call.html.j2").render(
        csp=_csp([]),
        tenant_name=tenant_name,
        external_id=row["external_id"],
        day=row["call_day"].isoformat(),
        operator=row["operator"] or UNKNOWN_OPERATOR,
        category=row.get("category") or call.get("category") or "–",
        duration=clock(call.get("audio", {}).get("duration_s", 0.0)),
        total=float(row["total"]),
        scale_max=scores["scale"]["max"],
        weakest=next(
            (c["name"] for c in criteria if c["id"] == row["weakest_criterion"]),
            row["weakest_criterion"],
        ),
        summary=row["summary"],
        recommendations=record.get("recommendations", []),
        scorer=scoring.get("scorer", "–"),
        model=scoring.get("model") or "–",
        cost=money(float(row["cost_usd"] or 0.0)),
        criteria=criteria,
        patterns=patterns,
        segments=[
            {
                "id": f"seg-{i}",
                "time": clock(s["start"]),
                "speaker": s["speaker"],
                "text": s["text"],
            }
            for i, s in enumerate(segments)
        ],
        generated=generated,
    )
    return call_page_name(row["external_id"]), page


def _write_call_pages(target: Path, pages: list[tuple[str, str]]) -> None:
    """Write the pages into a new folder, then swap it in for `target` (our calls/ folder),
    so pages of calls no longer linked go and readers never see a half-written folder."""
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    try:
        for name, page in pages:
            (staging / name).write_text(page, encoding="utf-8")
            os.chmod(staging / name, 0o644)
        os.chmod(staging, 0o755)
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old-{staging.name}")
            target.rename(old)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def atomic_write(path: Path, text: str) -> None:
    """Replace `path` with `text` so a reader never sees half a page (mode 0644)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_report(
    warehouse: Warehouse,
    tenant: str,
    out_dir: Path,
    *,
    tenant_name: str | None = None,
    date_from: date | None = None,
    date_to: date | None = None,
    now: datetime | None = None,
) -> Report:
    """Write the tenant's report to `out_dir/index.html` and its call pages to
    `out_dir/calls/`, for calls whose day is within [date_from, date_to] (both optional)."""
    if date_from and date_to and date_from > date_to:
        raise ValueError(f"the report's start {date_from} is after its end {date_to}")
    from markupsafe import Markup  # Jinja2's own: marks our chart HTML as safe
    from plotly.offline import get_plotlyjs

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tenant_name = tenant_name or tenant
    generated = (now or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    env = template_environment()

    collected = _Collected()
    for row in warehouse.report_analyses(tenant, date_from, date_to):
        collected.add(row)
    scale = collected.scale or (1, 5)
    weakest_name, weakest_calls = collected.weakest_headline()
    headline = Headline(
        tenant=tenant,
        calls=collected.calls,
        mean_total=round(collected.total_sum / collected.calls, 2) if collected.calls else None,
        weakest_criterion=weakest_name,
        weakest_calls=weakest_calls,
        cost_usd=round(collected.cost, 6),
        date_from=date_from,
        date_to=date_to,
    )

    daily = warehouse.report_daily_aggregates(tenant, date_from, date_to)
    team = [r for r in daily if r["operator"] == ALL_OPERATORS]
    criterion_rows = warehouse.report_daily_criterion_aggregates(tenant, date_from, date_to)
    aggregates_updated = max((r["updated_at"] for r in daily), default=None)

    charts = _charts(collected, team, criterion_rows, scale)

    # Pages for the calls the index links to: the lowest calls and the example quotes' calls
    # (read now, those not among the lowest).
    lowest_rows = collected.lowest_calls()
    patterns = _pattern_rows(collected)
    rows = {r["external_id"]: r for r in lowest_rows}
    missing = {q["external_id"] for p in patterns for q in p["quotes"]} - set(rows)
    if missing:
        rows.update(
            (r["external_id"], r) for r in warehouse.report_analyses(tenant, external_ids=missing)
        )
    for pattern in patterns:  # link each example quote to its transcript line
        for q in pattern["quotes"]:
            row = rows.get(q["external_id"])
            segments = (row or {}).get("record", {}).get("transcript", {}).get("segments", [])
            seg = _segment_at(segments, q["start"])
            if seg is not None:
                q["href"] = f"{q['href']}#seg-{seg}"
    _write_call_pages(
        out_dir / CALLS_DIR, [_call_page(env, tenant_name, r, generated) for r in rows.values()]
    )

    plotly_script = f"<script>{get_plotlyjs()}</script>" if any(charts.values()) else ""
    fragments = [plotly_script, *(c for c in charts.values() if c)]
    page = (
        env.get_template("report.html.j2")
        .render(
            csp=_csp(_script_hashes(fragments)),
            plotly_script=Markup(plotly_script),
            charts={k: Markup(v) if v else None for k, v in charts.items()},
            tenant=tenant,
            tenant_name=tenant_name,
            period=headline.period,
            generated=generated,
            h=headline,
            mean_total=("–" if headline.mean_total is None else f"{headline.mean_total:.1f}"),
            weakest_share=(
                f"{headline.weakest_calls / headline.calls:.0%}" if headline.calls else ""
            ),
            cost=money(headline.cost_usd),
            lowest=[_low_call(r, scale[1]) for r in lowest_rows],
            patterns=patterns,
            scale=scale,
            aggregates_updated=(
                aggregates_updated.strftime("%Y-%m-%d %H:%M UTC") if aggregates_updated else None
            ),
        )
        .strip()
        + "\n"
    )
    index = out_dir / INDEX
    atomic_write(index, page)
    return Report(
        headline=headline,
        index=index,
        call_pages=len(rows),
        size_bytes=index.stat().st_size,
    )
