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


ROWS_OF_THE_PREVIOUS_RELEASE = {
    "topics": "INSERT INTO topics (id, slug, title, description, created_at) VALUES (1, 'climate', 'Climate', '', :t)",
    "articles": "INSERT INTO articles (id, guid, slug, title, summary, body_source, body_html, image_url, author, "
                "published_at, created_at, updated_at) VALUES (1, 'g', 'a', 'A', '', '', '', '', '', :t, :t, :t)",
    "article_topics": "INSERT INTO article_topics (article_id, topic_id) VALUES (1, 1)",
    "action_links": "INSERT INTO action_links (id, article_id, label, url, kind, position) "
                    "VALUES (1, 1, 'Sign', 'https://example.org/p', 'petition', 0)",
    "sends": "INSERT INTO sends (id, kind, slug, subject, preheader, archive_html, archive_text, created_at, "
             "recipients_count) VALUES (1, 'digest', 's', 'S', '', '', '', :t, 1)",
    "send_articles": "INSERT INTO send_articles (send_id, article_id, position) VALUES (1, 1, 0)",
    "links": "INSERT INTO links (id, send_id, url, label, kind) VALUES (1, 1, 'https://example.org/p', 'Sign', 'petition')",
    "subscribers": "INSERT INTO subscribers (id, email, name, state, is_paused, token_version, created_at) "
                   "VALUES (1, 'r@example.org', '', 'confirmed', false, 1, :t)",
    "outbox": "INSERT INTO outbox (id, kind, dedupe_key, recipient, subscriber_id, send_id, message_id, subject, state, "
              "priority, attempts, last_error, created_at, next_attempt_at) VALUES (1, 'digest', 'send:1:1', "
              "'r@example.org', 1, 1, '<m@x>', 'S', 'sent', 0, 1, '', :t, :t)",
}


def test_upgrading_a_database_with_rows_keeps_every_row(empty_engine):
    """0002 rebuilds tables on SQLite; with foreign keys on, dropping `sends` would cascade to the outbox
    and the links of every send (it did, before migrate.upgrade turned them off while migrating)."""
    from datetime import datetime, timezone

    migrate.upgrade(empty_engine, "0001")
    with empty_engine.begin() as conn:
        for statement in ROWS_OF_THE_PREVIOUS_RELEASE.values():
            conn.execute(text(statement), {"t": datetime(2026, 11, 1, tzinfo=timezone.utc)})
    migrate.upgrade(empty_engine)
    with empty_engine.connect() as conn:
        counts = {table: conn.execute(text(f"SELECT count(*) FROM {table}")).scalar()
                  for table in ROWS_OF_THE_PREVIOUS_RELEASE}
        assert counts == dict.fromkeys(ROWS_OF_THE_PREVIOUS_RELEASE, 1)
        assert conn.execute(text("SELECT is_hidden FROM topics")).scalar() in (False, 0)
        assert conn.execute(text("SELECT editor_note FROM sends")).scalar() == ""
    if empty_engine.dialect.name == "sqlite":
        with empty_engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1  # back on for the app
