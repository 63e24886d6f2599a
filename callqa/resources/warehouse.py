from __future__ import annotations

import dagster as dg
from pydantic import Field, PrivateAttr

from callqa import settings
from callqa.storage.warehouse import Warehouse


class WarehouseResource(dg.ConfigurableResource):
    """The callqa warehouse (SQLite file by default, PostgreSQL in production)."""

    database_url: str | None = Field(
        default=None,
        description=(
            "SQLAlchemy URL. Leave unset to use CALLQA_DATABASE_URL, or the SQLite file under "
            "CALLQA_DATA_DIR. Set it with dg.EnvVar so the password never shows in the UI."
        ),
    )
    _warehouse: Warehouse | None = PrivateAttr(default=None)

    def get(self) -> Warehouse:
        if self._warehouse is None:
            self._warehouse = Warehouse.from_url(self.database_url or settings.database_url())
        return self._warehouse

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._warehouse is not None:
            self._warehouse.dispose()
