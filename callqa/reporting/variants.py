"""A/B variants of a preset side by side: score distribution, validity, latency, cost.

Computed from `analysis_versions` rows (every result a call was scored to, valid or not),
one output row per (preset, prompt version, variant). A variant scores with its own prompt
or model, so its prompt version differs from the control's of the same preset revision.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from callqa.config.models import CONTROL

GROUP_KEY = ("preset", "prompt_version", "variant")
# Columns of `variant_comparison` that compare_variants fills, in table order.
COLUMNS = (
    "preset",
    "prompt_version",
    "variant",
    "calls",
    "valid_rate",
    "mean_total",
    "std_total",
    "p10_total",
    "p90_total",
    "mean_latency_ms",
    "mean_cost_usd",
    "evidence_rate",
)


def compare_variants(versions: Iterable[Mapping]) -> list[dict]:
    """Per (preset, prompt version, variant): `calls` scored (valid or not), `valid_rate`,
    the valid totals' mean, sample standard deviation (None below two) and 10th/90th
    percentiles (None without a valid result), mean latency and mean cost over every result
    (an invalid one cost as much), and the share of the valid results' evidence quotes that
    were verified (None if none was cited). Ordered by preset, prompt version, control
    first."""
    import numpy as np

    groups: dict[tuple, list[Mapping]] = {}
    for row in versions:
        groups.setdefault(tuple(row[k] for k in GROUP_KEY), []).append(row)
    out = []
    for key in sorted(groups, key=lambda k: (k[0], k[1], k[2] != CONTROL, k[2])):
        rows = groups[key]
        valid = [r for r in rows if r["valid"]]
        totals = np.array([float(r["total"]) for r in valid])
        quotes = sum(int(r["evidence_quotes"]) for r in valid)
        verified = sum(int(r["evidence_verified"]) for r in valid)
        p10, p90 = np.percentile(totals, [10, 90]) if len(totals) else (None, None)
        out.append(
            {
                **dict(zip(GROUP_KEY, key, strict=True)),
                "calls": len(rows),
                "valid_rate": round(len(valid) / len(rows), 4),
                "mean_total": _round(totals.mean()) if len(totals) else None,
                "std_total": _round(totals.std(ddof=1)) if len(totals) > 1 else None,
                "p10_total": _round(p10),
                "p90_total": _round(p90),
                "mean_latency_ms": _round(np.mean([float(r["latency_ms"]) for r in rows]), 1),
                "mean_cost_usd": _round(np.mean([float(r["cost_usd"]) for r in rows]), 6),
                "evidence_rate": round(verified / quotes, 4) if quotes else None,
            }
        )
    return out


def _round(value, digits: int = 2) -> float | None:
    return None if value is None else round(float(value), digits)


def comparison_markdown(rows: list[dict]) -> str:
    """The comparison as a Markdown table, one line per variant."""
    if not rows:
        return "_no scored calls yet_"
    header = (
        "| preset | prompt version | variant | calls | valid | mean total | std | p10-p90 "
        "| latency ms | cost $/call | evidence verified |\n" + "|---" * 11 + "|"
    )
    lines = [
        "| "
        + " | ".join(
            [
                r["preset"],
                f"`{r['prompt_version']}`",
                r["variant"],
                str(r["calls"]),
                _percent(r["valid_rate"]),
                _number(r["mean_total"]),
                _number(r["std_total"]),
                f"{_number(r['p10_total'])}-{_number(r['p90_total'])}"
                if r["p10_total"] is not None
                else "-",
                f"{r['mean_latency_ms']:.0f}",
                f"{r['mean_cost_usd']:.6f}",
                _percent(r["evidence_rate"]),
            ]
        )
        + " |"
        for r in rows
    ]
    return "\n".join([header, *lines])


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"
