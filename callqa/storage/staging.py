"""The staging table: calls waiting to be processed, and the staging gate.

A call is staged once per (tenant, external id), by `callqa stage add`, a CRM sensor or a
webhook push. Its status moves staged -> queued -> processed | failed; for tenants without
auto_process it waits at 'staged' until an admin approves ('approved') or rejects it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta

import sqlalchemy as sa

from callqa.storage import tables as t
from callqa.storage.sql import _as_utc, _insert_if_absent, insert_many_if_absent, utcnow

# What `stage_calls` takes per call (the rest is set here).
STAGED_FIELDS = (
    "external_id",
    "source_uri",
    "category",
    "operator",
    "started_at",
    "duration_s",
    "direction",
    "links",
)


class StagingQueries:
    engine: sa.Engine

    def stage_calls(self, tenant: str, source: str, calls: Sequence[dict]) -> list[str]:
        """Stage many calls in one statement per chunk; calls already staged keep their
        row and state, and a call given twice is staged once (the first). Returns the
        external ids that were new."""
        now = utcnow()
        unique: dict[str, dict] = {}
        for c in calls:
            unique.setdefault(c["external_id"], c)
        rows = [
            {
                **{f: c.get(f) for f in STAGED_FIELDS},
                "tenant": tenant,
                "source": source,
                "status": "staged",
                "error": None,
                "staged_at": now,
                "updated_at": now,
            }
            for c in unique.values()
        ]
        with self.engine.begin() as conn:
            return insert_many_if_absent(
                conn, t.staged_calls, rows, ["tenant", "external_id"], t.staged_calls.c.external_id
            )

    def gate_list(
        self,
        *,
        tenant: str | None = None,
        statuses: Sequence[str] = ("staged",),
        date_from: date | None = None,
        date_to: date | None = None,
        operator: str | None = None,
        category: str | None = None,
        min_duration_s: float | None = None,
        max_duration_s: float | None = None,
        limit: int | None = None,
    ) -> list[dict]:
        """Staged calls matching the staging gate's filters, oldest call first. Dates are
        inclusive days of `started_at` (UTC)."""
        c = t.staged_calls.c
        query = sa.select(t.staged_calls).where(c.status.in_(list(statuses)))
        if tenant:
            query = query.where(c.tenant == tenant)
        if date_from:
            query = query.where(c.started_at >= datetime.combine(date_from, datetime.min.time()))
        if date_to:
            end = datetime.combine(date_to + timedelta(days=1), datetime.min.time())
            query = query.where(c.started_at < end)
        if operator:
            query = query.where(c.operator == operator)
        if category:
            query = query.where(c.category == category)
        if min_duration_s is not None:
            query = query.where(c.duration_s >= min_duration_s)
        if max_duration_s is not None:
            query = query.where(c.duration_s <= max_duration_s)
        query = query.order_by(c.started_at, c.id)
        if limit:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [
                {**r, "started_at": _as_utc(r["started_at"])}
                for r in conn.execute(query).mappings()
            ]

    def stage_call(
        self,
        *,
        tenant: str,
        external_id: str,
        source: str,
        source_uri: str,
        category: str | None = None,
        operator: str | None = None,
        started_at: datetime | None = None,
        duration_s: float | None = None,
        direction: str | None = None,
        links: dict[str, str] | None = None,
    ) -> bool:
        """Stage a call once; return False if it was already staged (its state is kept)."""
        now = utcnow()
        row = {
            "tenant": tenant,
            "external_id": external_id,
            "source": source,
            "source_uri": source_uri,
            "category": category,
            "operator": operator,
            "started_at": started_at,
            "duration_s": duration_s,
            "direction": direction,
            "links": links,
            "status": "staged",
            "error": None,
            "staged_at": now,
            "updated_at": now,
        }
        # One atomic statement, so concurrent stagers of the same call cannot both insert it.
        with self.engine.begin() as conn:
            return _insert_if_absent(conn, t.staged_calls, row, ["tenant", "external_id"])

    def staged_call(self, tenant: str, external_id: str) -> dict | None:
        with self.engine.connect() as conn:
            row = (
                conn.execute(
                    sa.select(t.staged_calls).where(
                        t.staged_calls.c.tenant == tenant,
                        t.staged_calls.c.external_id == external_id,
                    )
                )
                .mappings()
                .first()
            )
        if row is None:
            return None
        return {**row, "started_at": _as_utc(row["started_at"])}

    def staged_calls(self, tenant: str, statuses: Iterable[str] | None = None) -> list[dict]:
        query = sa.select(t.staged_calls).where(t.staged_calls.c.tenant == tenant)
        if statuses is not None:
            query = query.where(t.staged_calls.c.status.in_(list(statuses)))
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query.order_by(t.staged_calls.c.id)).mappings()]

    def retry_failed(self, tenant: str, external_ids: Iterable[str] | None = None) -> list[str]:
        """Put a tenant's failed calls (all, or those named) back in the queue, under new
        staging ids so the staged-calls sensor picks them up again on its next tick."""
        return self._restage(tenant, ["failed"], external_ids, "staged")

    def approve(self, tenant: str, external_ids: Iterable[str]) -> list[str]:
        """The staging gate: staged (or rejected) calls an admin chose to process. Each gets
        a new staging id and status 'approved', which the staged-calls sensor runs whatever
        the tenant's auto_process says."""
        return self._restage(tenant, ["staged", "rejected"], external_ids, "approved")

    def reject(self, tenant: str, external_ids: Iterable[str]) -> list[str]:
        """The staging gate: staged calls an admin chose not to process (kept, not run)."""
        ids = list(external_ids)
        table = t.staged_calls
        with self.engine.begin() as conn:
            rows = conn.execute(
                table.update()
                .where(
                    table.c.tenant == tenant,
                    table.c.external_id.in_(ids),
                    table.c.status.in_(["staged", "approved"]),
                )
                .values(status="rejected", updated_at=utcnow())
                .returning(table.c.external_id)
            ).all()
        return sorted(r[0] for r in rows)

    def _restage(
        self,
        tenant: str,
        from_statuses: list[str],
        external_ids: Iterable[str] | None,
        status: str,
    ) -> list[str]:
        """Give calls a new staging id (the sensor's cursor is the highest id it has seen)
        and a new status, in one transaction; everything else about them is kept."""
        table = t.staged_calls
        query = sa.select(table).where(table.c.tenant == tenant, table.c.status.in_(from_statuses))
        if external_ids is not None:
            query = query.where(table.c.external_id.in_(list(external_ids)))
        now = utcnow()
        with self.engine.begin() as conn:
            rows = [dict(r) for r in conn.execute(query.order_by(table.c.id)).mappings()]
            if rows:
                old_ids = [r["id"] for r in rows]
                # Insert the new rows before deleting the old ones: SQLite hands out
                # max(id) + 1, which would reuse the old id if it were deleted first. The
                # old rows step out of the (tenant, external_id) key for that moment.
                conn.execute(
                    table.update()
                    .where(table.c.id.in_(old_ids))
                    .values(external_id=sa.literal("#") + sa.cast(table.c.id, sa.String))
                )
                conn.execute(
                    table.insert(),
                    [
                        {
                            **{k: v for k, v in r.items() if k != "id"},
                            "status": status,
                            "error": None,
                            "updated_at": now,
                        }
                        for r in rows
                    ],
                )
                conn.execute(table.delete().where(table.c.id.in_(old_ids)))
        return [r["external_id"] for r in rows]

    def staged_calls_after(self, last_id: int, tenants: list[str], limit: int) -> list[dict]:
        """Calls waiting ('staged', or 'approved' at the gate) with an id above `last_id` (a
        sensor's cursor), for the given tenants, oldest first; each row carries its own
        tenant and status."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(
                    t.staged_calls.c.id,
                    t.staged_calls.c.tenant,
                    t.staged_calls.c.external_id,
                    t.staged_calls.c.status,
                )
                .where(
                    t.staged_calls.c.id > last_id,
                    t.staged_calls.c.tenant.in_(tenants),
                    t.staged_calls.c.status.in_(["staged", "approved"]),
                )
                .order_by(t.staged_calls.c.id)
                .limit(limit)
            ).mappings()
            return [dict(r) for r in rows]

    def set_staged_status(
        self, tenant: str, external_ids: Iterable[str], status: str, error: str | None = None
    ) -> None:
        ids = list(external_ids)
        if not ids:
            return
        with self.engine.begin() as conn:
            conn.execute(
                t.staged_calls.update()
                .where(t.staged_calls.c.tenant == tenant, t.staged_calls.c.external_id.in_(ids))
                .values(status=status, error=error, updated_at=utcnow())
            )
