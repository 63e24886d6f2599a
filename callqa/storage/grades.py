"""Human graders' scores, the calls they may grade, the model scores to compare them with,
and the agreement computed between them (`grader_agreement`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import sqlalchemy as sa

from callqa.storage import tables as t
from callqa.storage.sql import _as_utc, _upsert, utcnow

GRADE_KEYS = ("tenant", "external_id", "criterion", "grader")
AGREEMENT_FIELDS = (
    "comparison",
    "preset",
    "prompt_version",
    "variant",
    "criterion",
    "pairs",
    "exact",
    "within_one",
    "qwk",
    "spearman",
    "bias",
)


class GradeQueries:
    engine: sa.Engine

    def load_human_grades(self, tenant: str, rows: Iterable[Mapping]) -> int:
        """Upsert grades (`external_id`, `criterion`, `grader`, `score`; score None = the
        grader marked it N/A): a grader's new score for a call and criterion replaces the
        old one. Returns the number of rows written."""
        now = utcnow()
        values = [
            {
                "tenant": tenant,
                "external_id": r["external_id"],
                "criterion": r["criterion"],
                "grader": r["grader"],
                "score": r["score"],
                "loaded_at": now,
            }
            for r in rows
        ]
        with self.engine.begin() as conn:
            for start in range(0, len(values), 500):  # under SQLite's parameter limit
                _upsert(conn, t.human_grades, values[start : start + 500], GRADE_KEYS)
        return len(values)

    def human_grades(self, tenant: str) -> list[dict]:
        table = t.human_grades
        query = (
            sa.select(
                table.c.external_id,
                table.c.criterion,
                table.c.grader,
                table.c.score,
                table.c.loaded_at,
            )
            .where(table.c.tenant == tenant)
            .order_by(table.c.external_id, table.c.criterion, table.c.grader)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [{**r, "loaded_at": _as_utc(r["loaded_at"])} for r in rows]

    def known_calls(self, tenant: str) -> dict[str, dict]:
        """Every call the tenant has (staged, read or scored): external id -> its
        `category` and the `preset` it was scored with (None until it is scored)."""
        known: dict[str, dict] = {}
        with self.engine.connect() as conn:
            for table in (t.staged_calls, t.calls):
                for external_id, category in conn.execute(
                    sa.select(table.c.external_id, table.c.category).where(table.c.tenant == tenant)
                ):
                    entry = known.setdefault(external_id, {"category": None, "preset": None})
                    entry["category"] = category or entry["category"]
            # The analysis knows the category the call was really scored under (it may
            # have been classified from the transcript) and its preset.
            for external_id, category, preset in conn.execute(
                sa.select(
                    t.analyses.c.external_id, t.analyses.c.category, t.analyses.c.preset
                ).where(t.analyses.c.tenant == tenant)
            ):
                entry = known.setdefault(external_id, {"category": None, "preset": None})
                entry.update(category=category or entry["category"], preset=preset)
        return known

    def scored_versions(self, tenant: str) -> list[dict]:
        """Valid results of every scoring version, with their criterion scores (None = N/A)
        and scale: one per call, prompt version and variant (the latest, if the call was
        scored again under them, e.g. by a fallback model)."""
        table = t.analysis_versions
        query = (
            sa.select(
                table.c.external_id,
                table.c.preset,
                table.c.prompt_version,
                table.c.variant,
                table.c.scorer,
                table.c.model,
                table.c.scored_at,
                # Only the scores, not the whole record with its transcript.
                table.c.record["scores"].label("scores"),
            )
            .where(table.c.tenant == tenant, table.c.valid.is_(True))
            .order_by(table.c.scored_at, table.c.id)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        latest: dict[tuple, dict] = {}
        for r in rows:  # ordered by time: later rows replace earlier ones
            scores = r["scores"] or {}
            latest[(r["external_id"], r["prompt_version"], r["variant"])] = {
                "external_id": r["external_id"],
                "preset": r["preset"],
                "prompt_version": r["prompt_version"],
                "variant": r["variant"],
                "scorer": r["scorer"],
                "model": r["model"],
                "scored_at": _as_utc(r["scored_at"]),
                "scale_min": scores.get("scale", {}).get("min"),
                "scale_max": scores.get("scale", {}).get("max"),
                "scores": {c["id"]: c["score"] for c in scores.get("criteria", [])},
            }
        return sorted(
            latest.values(), key=lambda v: (v["preset"], v["prompt_version"], v["external_id"])
        )

    def replace_grader_agreement(self, tenant: str, rows: Sequence[Mapping]) -> None:
        """Swap in the tenant's agreement rows in one transaction (readers never see a
        half-written table)."""
        now = utcnow()
        values = [
            {"tenant": tenant, **{f: r[f] for f in AGREEMENT_FIELDS}, "computed_at": now}
            for r in rows
        ]
        table = t.grader_agreement
        with self.engine.begin() as conn:
            conn.execute(table.delete().where(table.c.tenant == tenant))
            if values:
                conn.execute(table.insert(), values)

    def grader_agreement(self, tenant: str) -> list[dict]:
        table = t.grader_agreement
        query = (
            sa.select(*(table.c[f] for f in AGREEMENT_FIELDS), table.c.computed_at)
            .where(table.c.tenant == tenant)
            .order_by(
                table.c.comparison,
                table.c.preset,
                table.c.prompt_version,
                table.c.variant,
                # The pooled row ('*') after the criteria it pools.
                sa.case((table.c.criterion == "*", 1), else_=0),
                table.c.criterion,
            )
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [{**r, "computed_at": _as_utc(r["computed_at"])} for r in rows]
