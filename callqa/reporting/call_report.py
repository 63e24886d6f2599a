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
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from callqa.calls.keys import make_key
from callqa.calls.record import AnalysisRecord
from callqa.reporting.report import atomic_write, template_environment
from callqa.scoring.evidence import normalize
from callqa.speech.diarization import ConversationMetrics, DiarizedTranscript

TOKEN_HEX = 16  # 64 bits of HMAC: not guessable, short enough for a link in a CRM note
TEMPLATE_NAME = "call_report.html.j2"  # in templates/, next to the tenant report's
# No script, no network: only the inline <style> and inline style attributes may apply.
CSP = (
    "default-src 'none'; script-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "base-uri 'none'; form-action 'none'"
)


def timestamp(seconds: float) -> str:
    """Seconds as mm:ss (h:mm:ss from an hour on), how quotes and turns are timed."""
    whole = int(max(seconds, 0.0))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


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
        template_environment()
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
    atomic_write(folder / name, html)
    return f"{tenant}/{name}"


def report_url(base_url: str, relative_path: str) -> str:
    """`base_url` (http(s)://..., or file:///... for a local store; a trailing slash or
    not) joined with the relative path `write_call_report` returned."""
    if not base_url.strip():
        raise ValueError("the report base URL is empty")
    return f"{base_url.strip().rstrip('/')}/{quote(relative_path.lstrip('/'), safe='/')}"
