"""Alembic environment: the connection is handed in by `callqa.storage.migrate`."""

from alembic import context

from callqa.storage.tables import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite needs batch ALTERs
)
with context.begin_transaction():
    context.run_migrations()
