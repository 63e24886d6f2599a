"""What was written back to each call's CRM card, and whether its low-score alert went out."""

from __future__ import annotations

import sqlalchemy as sa

from callqa.storage import tables as t
from callqa.storage.sql import _as_utc, _upsert, utcnow


class PushbackQueries:
    engine: sa.Engine

    def pushback(self, tenant: str, external_id: str) -> dict | None:
        table = t.crm_pushbacks
        with self.engine.connect() as conn:
            row = (
                conn.execute(
                    sa.select(table).where(
                        table.c.tenant == tenant, table.c.external_id == external_id
                    )
                )
                .mappings()
                .first()
            )
        if row is None:
            return None
        return {**row, "alerted_at": _as_utc(row["alerted_at"])}

    def save_pushback(
        self,
        tenant: str,
        external_id: str,
        *,
        adapter: str,
        note_ids: dict[str, str],
        total: float,
        report_url: str,
    ) -> None:
        """Remember the notes written, so the next push updates them (alert state is kept)."""
        with self.engine.begin() as conn:
            _upsert(
                conn,
                t.crm_pushbacks,
                [
                    {
                        "tenant": tenant,
                        "external_id": external_id,
                        "adapter": adapter,
                        "note_ids": note_ids,
                        "total": total,
                        "report_url": report_url,
                        "pushed_at": utcnow(),
                    }
                ],
                ["tenant", "external_id"],
            )

    def mark_alerted(self, tenant: str, external_id: str, destination: str) -> bool:
        """Record that the call's alert went out; False if it already had (once per call)."""
        table = t.crm_pushbacks
        with self.engine.begin() as conn:
            done = conn.execute(
                table.update()
                .where(
                    table.c.tenant == tenant,
                    table.c.external_id == external_id,
                    table.c.alerted_at.is_(None),
                )
                .values(alerted_at=utcnow(), alert_destination=destination)
            )
        return done.rowcount == 1
