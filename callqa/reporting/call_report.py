"""The per-call report: one self-contained HTML page per scored call, linked from its CRM card.

`render_call_report` turns an analysis record (`callqa.calls.record.AnalysisRecord`, as
stored) and the call's diarized transcript into a page with the call's details, the total,
each criterion's score, weight and evidence (verbatim quote, who said it, mm:ss), the
summary, recommendations and patterns, the conversation metrics and the transcript by role.

Same conventions as the tenant report (`callqa.reporting.report`): Jinja2 with autoescape,
so every string from the record (customer speech among them) is rendered as text; inline
CSS only; no script at all, and a Content-Security-Policy that allows none, so markup that
slipped through escaping still could not run; nothing is loaded from a network.

`write_call_report` stores the page at `<store_root>/<tenant>/<name>.html`. The report
store must be served behind access control per tenant (each tenant's folder readable by
that tenant's users only): the pages hold customer speech. With a `link_key`, `name` also
carries a 16-hex HMAC-SHA256 token of `tenant/external_id`, so a link cannot be guessed
from a call id; that is defence in depth, not the access control itself.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from callqa.calls.keys import make_key
from callqa.calls.record import AnalysisRecord
from callqa.scoring.evidence import normalize
from callqa.speech.diarization import ConversationMetrics, DiarizedTranscript

TOKEN_HEX = 16  # 64 bits of HMAC: not guessable, short enough for a link in a CRM note
TEMPLATE_NAME = "call_report.html.j2"
# No script, no network: only the inline <style> and inline style attributes may apply.
CSP = (
    "default-src 'none'; script-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "base-uri 'none'; form-action 'none'"
)

_TEMPLATE = """\
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{{ csp }}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<meta name="generator" content="callqa call report">
<title>Call {{ call.external_id }}: {{ tenant_name }}</title>
<style>
{% include "style.css" %}
.share { display: flex; height: 10px; border-radius: 5px; overflow: hidden; background: var(--line); margin: 6px 0 10px; }
.share .operator { background: var(--accent); }
.share .customer { background: #b5651d; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 8px 0 0; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
.role { font-size: 12px; color: var(--muted); margin-right: 6px; }
tr.speaker-customer td.text { padding-left: 32px; }
</style>
</head>
<body>
<header>
  <h1>Call <span id="call-id">{{ call.external_id }}</span></h1>
  <p class="meta">{{ tenant_name }} &middot; {{ call.day }} &middot; operator {{ call.operator }}</p>
</header>
<main>
<div class="cards">
  <div class="card"><div class="label">Total</div><div class="value" id="total">{{ "%.1f"|format(total) }}</div><div class="note">out of 100</div></div>
  <div class="card"><div class="label">Weakest criterion</div><div class="value" id="weakest">{{ weakest }}</div></div>
  <div class="card"><div class="label">Duration</div><div class="value" id="duration">{{ call.duration }}</div></div>
</div>
<section class="panel" id="call">
  <h2>Call</h2>
  <dl class="facts">
  {% for label, value in facts %}
    <dt>{{ label }}</dt><dd data-fact="{{ label }}">{{ value }}</dd>
  {% endfor %}
  </dl>
</section>
<section class="panel" id="summary">
  <h2>Summary</h2>
  <p>{{ summary }}</p>
  {% if recommendations %}
  <h2>Recommendations</h2>
  <ul id="recommendations">{% for r in recommendations %}<li>{{ r }}</li>{% endfor %}</ul>
  {% endif %}
</section>
<section class="panel" id="scores">
  <h2>Scores and evidence</h2>
  <table>
    <thead><tr><th>Criterion</th><th class="num">Score</th><th class="num">Weight</th><th>Rationale and evidence</th></tr></thead>
    <tbody>
    {% for c in criteria %}
      <tr class="criterion-row" data-criterion="{{ c.id }}">
        <td>{{ c.name }}</td><td class="num">{{ c.score }}/{{ scale_max }}</td><td class="num">{{ "%.0f"|format(c.weight * 100) }}%</td>
        <td>{{ c.rationale }}{% for ev in c.evidence %}<blockquote class="evidence"><a class="time" href="#{{ ev.anchor }}">{{ ev.time }}</a><span class="role">{{ ev.speaker }}</span>&ldquo;{{ ev.quote }}&rdquo;</blockquote>{% endfor %}</td>
      </tr>
    {% endfor %}
    </tbody>
  </table>
</section>
{% if patterns %}
<section class="panel" id="patterns">
  <h2>Patterns</h2>
  <table>
    <thead><tr><th>Type</th><th>Quote</th></tr></thead>
    <tbody>
    {% for p in patterns %}<tr><td>{{ p.type }}</td><td><a class="time" href="#{{ p.anchor }}">{{ p.time }}</a><span class="role">{{ p.speaker }}</span>&ldquo;{{ p.quote }}&rdquo;</td></tr>{% endfor %}
    </tbody>
  </table>
</section>
{% endif %}
<section class="panel" id="metrics">
  <h2>Conversation</h2>
  <div class="share" title="talk share">{% for r in roles %}<div class="{{ r.role }}" style="width: {{ "%.1f"|format(r.share_pct) }}%"></div>{% endfor %}</div>
  <dl class="facts">
  {% for label, value in metrics %}
    <dt>{{ label }}</dt><dd data-metric="{{ label }}">{{ value }}</dd>
  {% endfor %}
  </dl>
  <table>
    <thead><tr><th>Role</th><th class="num">Talk time</th><th class="num">Talk share</th><th class="num">Words</th><th class="num">Words/min</th><th class="num">Interruptions</th></tr></thead>
    <tbody>
    {% for r in roles %}<tr class="role-row" data-role="{{ r.role }}"><td>{{ r.role }}</td><td class="num">{{ r.talk }}</td><td class="num">{{ "%.0f"|format(r.share_pct) }}%</td><td class="num">{{ r.words }}</td><td class="num">{{ "%.0f"|format(r.wpm) }}</td><td class="num">{{ r.interruptions }}</td></tr>{% endfor %}
    </tbody>
  </table>
</section>
<section class="panel" id="transcript">
  <h2>Transcript</h2>
  <table>
    <thead><tr><th>Time</th><th>Speaker</th><th>Text</th></tr></thead>
    <tbody>
    {% for s in segments %}<tr id="{{ s.anchor }}" class="turn speaker-{{ s.speaker }}"><td class="num">{{ s.time }}</td><td class="speaker">{{ s.speaker }}</td><td class="text">{{ s.text }}</td></tr>{% endfor %}
    </tbody>
  </table>
</section>
</main>
<footer>No scripts; nothing is loaded from a network.</footer>
</body>
</html>
"""


def timestamp(seconds: float) -> str:
    """Seconds as mm:ss (h:mm:ss from an hour on), how quotes and turns are timed."""
    whole = int(max(seconds, 0.0))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def _environment():
    import jinja2

    return jinja2.Environment(
        # Our one template, plus the tenant report's stylesheet, so both look alike.
        loader=jinja2.ChoiceLoader(
            [
                jinja2.DictLoader({TEMPLATE_NAME: _TEMPLATE}),
                jinja2.PackageLoader("callqa.reporting", "templates"),
            ]
        ),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _segment_for(segments: list[dict], quote: str, start: float) -> int | None:
    """The transcript turn a quote comes from: the turn holding its words nearest its time,
    else the last turn that began by then (LLM timestamps can be a little off)."""
    needle = normalize(quote)
    holding = [i for i, s in enumerate(segments) if needle and needle in normalize(s["text"])]
    if holding:
        return min(holding, key=lambda i: abs(segments[i]["start"] - start))
    before = [i for i, s in enumerate(segments) if s["start"] <= start + 0.05]
    if before:
        return before[-1]
    return 0 if segments else None


def _located(segments: list[dict], quote: str, start: float) -> dict:
    index = _segment_for(segments, quote, start)
    return {
        "quote": quote,
        "time": timestamp(start),
        "speaker": segments[index]["speaker"] if index is not None else "unknown",
        "anchor": f"turn-{index}" if index is not None else "transcript",
    }


def _percent(share: float) -> str:
    return f"{share * 100:.0f}%"


def _metric_rows(metrics: ConversationMetrics) -> list[tuple[str, str]]:
    longest = timestamp(metrics.longest_monologue_s)
    if metrics.longest_monologue_speaker:
        longest += f" ({metrics.longest_monologue_speaker})"
    return [
        ("Duration", timestamp(metrics.duration_s)),
        ("Silence", _percent(metrics.silence_ratio)),
        ("Turns", str(metrics.turns)),
        ("Interruptions", str(metrics.interruption_count)),
        ("Overlapping speech", f"{metrics.overlap_s:.1f} s in {metrics.overlap_count} overlaps"),
        ("Longest monologue", longest),
    ]


def _role_rows(metrics: ConversationMetrics) -> list[dict]:
    return [
        {
            "role": role,
            "talk": timestamp(m.talk_time_s),
            "share_pct": m.talk_share * 100,
            "words": m.words,
            "wpm": m.words_per_minute,
            "interruptions": m.interruptions,
        }
        for role, m in metrics.roles.items()
    ]


def _day(started_at: datetime | None) -> str:
    """When the call began, in UTC (the record's times are aware)."""
    if started_at is None:
        return "date unknown"
    return started_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def render_call_report(record: dict, diarized: dict | None, *, tenant_name: str) -> str:
    """The call's page. `record` is the stored analysis record; `diarized` the call's
    diarized transcript (`warehouse.transcript(tenant, id, "diarized")`), whose turns and
    metrics are shown when given (else the record's own copy of them)."""
    rec = AnalysisRecord.model_validate(record)
    if diarized is not None:
        transcript = DiarizedTranscript.model_validate(diarized)
        segments = [s.model_dump() for s in transcript.segments]
        metrics = transcript.metrics
        language, method = transcript.language, transcript.method
    else:
        segments = [s.model_dump() for s in rec.transcript.segments]
        metrics = rec.metrics
        language, method = rec.transcript.language, rec.transcript.diarization
    call, scoring = rec.call, rec.scoring
    operator = call.operator or "unknown"
    facts = [
        ("Call id", call.external_id),
        ("Tenant", f"{tenant_name} ({call.tenant})"),
        ("Operator", operator),
        ("Date", _day(call.started_at)),
        ("Duration", timestamp(call.audio.duration_s)),
        ("Category", call.category or "–"),
        ("Preset", scoring.preset),
        ("Prompt version", scoring.prompt_version),
        ("Scorer", f"{scoring.scorer} ({scoring.model})" if scoring.model else scoring.scorer),
        ("Language", language or "–"),
        ("Speaker roles", method),
    ]
    criteria = [
        {
            "id": c.id,
            "name": c.name,
            "score": c.score,
            "weight": c.weight,
            "rationale": c.rationale,
            "evidence": [_located(segments, ev.quote, ev.start) for ev in c.evidence],
        }
        for c in rec.scores.criteria
    ]
    patterns = [{"type": p.type, **_located(segments, p.quote, p.start)} for p in rec.patterns]
    return (
        _environment()
        .get_template(TEMPLATE_NAME)
        .render(
            csp=CSP,
            tenant_name=tenant_name,
            call={
                "external_id": call.external_id,
                "day": _day(call.started_at),
                "operator": operator,
                "duration": timestamp(call.audio.duration_s),
            },
            facts=facts,
            total=rec.scores.total,
            scale_max=rec.scores.scale.max,
            weakest=rec.weakest.name,
            summary=rec.summary,
            recommendations=rec.recommendations,
            criteria=criteria,
            patterns=patterns,
            metrics=_metric_rows(metrics),
            roles=_role_rows(metrics),
            segments=[
                {
                    "anchor": f"turn-{i}",
                    "time": timestamp(s["start"]),
                    "speaker": s["speaker"],
                    "text": s["text"],
                }
                for i, s in enumerate(segments)
            ],
        )
    )


def link_token(link_key: str, tenant: str, external_id: str) -> str:
    """16 hex of HMAC-SHA256(link_key, "tenant/external_id"): stable for a call, different
    per tenant, and not computable from the call id without the key."""
    if not link_key:
        raise ValueError("the report link key is empty; unset it or give a real key")
    message = f"{tenant}/{external_id}".encode()
    return hmac.new(link_key.encode(), message, hashlib.sha256).hexdigest()[:TOKEN_HEX]


def report_name(tenant: str, external_id: str, link_key: str | None) -> str:
    """The page's file name: `<external id>.html`, or `<external id>-<token>.html`."""
    key = make_key(tenant, external_id)  # both halves are safe in paths (no '/', no '..')
    if link_key is None:
        return f"{key.external_id}.html"
    return f"{key.external_id}-{link_token(link_key, key.tenant, key.external_id)}.html"


def write_call_report(
    html: str, store_root: str | Path, tenant: str, external_id: str, link_key: str | None
) -> str:
    """Write the page to `<store_root>/<tenant>/<name>.html` (folders created, the file
    replaced atomically so a reader never sees half a page); return `<tenant>/<name>.html`."""
    name = report_name(tenant, external_id, link_key)
    folder = Path(store_root) / tenant
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(html)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return f"{tenant}/{name}"


def report_url(base_url: str, relative_path: str) -> str:
    """`base_url` (http(s)://..., or file:///... for a local store; a trailing slash or
    not) joined with the relative path `write_call_report` returned."""
    if not base_url.strip():
        raise ValueError("the report base URL is empty")
    return f"{base_url.strip().rstrip('/')}/{quote(relative_path.lstrip('/'), safe='/')}"
