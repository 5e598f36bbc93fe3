"""The one migration chain builds exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

import mailer.models  # noqa: F401  (registers every table on Base.metadata)
from mailer import migrate
from mailer.db import Base, make_engine

# Tables that are not ours to model: Alembic's bookkeeping and APScheduler's job store,
# which APScheduler creates itself when the scheduler first starts.
NOT_MODELLED = {"alembic_version", "apscheduler_jobs"}


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_engine(request, tmp_path):
    """An engine on a database with no tables at all."""
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
        yield engine
        engine.dispose()
        return
    server_url = request.getfixturevalue("postgres_url")
    name = f"migrations_{uuid.uuid4().hex[:12]}"
    admin = make_engine(server_url).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(server_url.rsplit("/", 1)[0] + f"/{name}")
    yield engine
    engine.dispose()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE "{name}"'))
    admin.dispose()


def _ours(obj, name, type_, reflected, compare_to) -> bool:
    return not (type_ == "table" and name in NOT_MODELLED)


def test_upgrade_from_empty_matches_the_models(empty_engine):
    assert inspect(empty_engine).get_table_names() == []
    migrate.upgrade(empty_engine)

    with empty_engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "include_object": _ours})
        diff = compare_metadata(context, Base.metadata)
    assert diff == [], "models and migrations differ: edit the model and 0001 together"
    assert set(inspect(empty_engine).get_table_names()) - NOT_MODELLED == set(Base.metadata.tables)


def test_upgrade_is_idempotent_and_downgrade_removes_everything(empty_engine):
    migrate.upgrade(empty_engine)
    migrate.upgrade(empty_engine)  # `make run` applies migrations on every start
    with empty_engine.begin() as conn:
        command.downgrade(migrate.alembic_config(conn), "base")
    assert set(inspect(empty_engine).get_table_names()) - NOT_MODELLED == set()
