"""Paging a CRM adapter until it is caught up, for the adapter tests."""

from __future__ import annotations

from callqa.crm.base import CrmAdapter, CrmPage


def drain(
    adapter: CrmAdapter, cursor: str | None, limit: int, max_pages: int = 10_000
) -> tuple[list[CrmPage], str | None]:
    """Every page from `cursor` until the adapter says it is caught up, and the cursor then;
    an adapter that never catches up fails the test."""
    pages: list[CrmPage] = []
    for _ in range(max_pages):
        page = adapter.list_calls(cursor, limit)
        pages.append(page)
        cursor = page.cursor
        if not page.more:
            return pages, cursor
    raise AssertionError(f"list_calls never caught up in {max_pages} pages")


def listed_ids(pages: list[CrmPage]) -> list[str]:
    return [c.external_id for p in pages for c in p.calls]
