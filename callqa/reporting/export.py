"""`callqa export`: a tenant's scored calls as one flat table for BI tools (CSV or Parquet).

One row per analysed call with its call day in the range, the columns of the `call_scores`
view (see docs/data-dictionary.md) in their order: one column per sales-default criterion,
then, after the view's columns, one column per criterion of any other preset the calls were
scored with (named by the criterion id; `criterion_<id>` where an id would clash with a view
column). Column types are stable whatever the rows: integers stay integers with gaps (pandas
`Int64`), days are dates, timestamps are UTC.
"""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from callqa.errors import CallqaError
from callqa.storage import views

if TYPE_CHECKING:  # pandas costs over a second to import; only the export needs it
    import pandas as pd

    from callqa.storage.warehouse import Warehouse

FORMATS = ("csv", "parquet")
STDOUT = "-"


def default_path(tenant: str, date_from: date, date_to: date, fmt: str) -> Path:
    return Path(f"call_scores_{tenant}_{date_from.isoformat()}_{date_to.isoformat()}.{fmt}")


def call_scores_frame(
    warehouse: Warehouse, tenant: str, date_from: date, date_to: date
) -> pd.DataFrame:
    import pandas as pd

    columns = [c.name for c in views.call_scores.columns]
    frame = pd.DataFrame(warehouse.call_scores(tenant, date_from, date_to), columns=columns)
    for column in views.call_scores.columns:
        name = column.name
        if isinstance(column.type, sa.Integer):
            frame[name] = frame[name].astype("Int64")
        elif isinstance(column.type, sa.Float):
            frame[name] = frame[name].astype("float64")
        elif isinstance(column.type, sa.DateTime):
            frame[name] = pd.to_datetime(frame[name], utc=True)
    others = warehouse.other_criterion_scores(tenant, date_from, date_to)
    if others:
        extra = (
            pd.DataFrame(others)
            .pivot(index="external_id", columns="criterion", values="score")
            .astype("Int64")
        )
        extra = extra[sorted(extra.columns)]
        extra.columns = [f"criterion_{c}" if c in columns else c for c in extra.columns]
        frame = frame.join(extra, on="external_id")
        for name in extra.columns:  # calls of other presets have gaps: keep them integers
            frame[name] = frame[name].astype("Int64")
    return frame


def write_frame(frame: pd.DataFrame, fmt: str, out: str | Path) -> None:
    """Write `frame` as CSV or Parquet to `out` (a path; "-" = stdout, CSV only)."""
    if fmt not in FORMATS:
        raise CallqaError(f"unknown export format {fmt!r} (known: {', '.join(FORMATS)})")
    if str(out) == STDOUT:
        if fmt != "csv":
            raise CallqaError("only CSV can be written to standard output; give --out PATH")
        frame.to_csv(sys.stdout, index=False)
        return
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        frame.to_csv(path, index=False)
        return
    try:
        import pyarrow  # noqa: F401  (lazily: only Parquet needs it)
    except ImportError as exc:  # pragma: no cover - a dependency of callqa
        raise CallqaError("Parquet export needs pyarrow (pip install pyarrow)") from exc
    frame.to_parquet(path, engine="pyarrow", index=False)


def export_call_scores(
    warehouse: Warehouse,
    tenant: str,
    date_from: date,
    date_to: date,
    fmt: str,
    out: str | Path,
) -> int:
    """Write the tenant's calls with call day in [date_from, date_to]; return how many."""
    if date_to < date_from:
        raise CallqaError(f"--to {date_to} is before --from {date_from}")
    frame = call_scores_frame(warehouse, tenant, date_from, date_to)
    write_frame(frame, fmt, out)
    return len(frame)
