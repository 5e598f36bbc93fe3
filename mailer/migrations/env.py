"""Alembic environment: runs against the engine mailer.migrate hands over in config.attributes."""

from alembic import context

import mailer.models  # noqa: F401  (registers every table)
from mailer.db import Base

config = context.config
connection = config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite needs table rebuilds for ALTER
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
