"""Alembic, driven from code: `mailer db upgrade` and the test fixtures call these."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text

from mailer.errors import ConfigError

HERE = Path(__file__).parent / "migrations"


def alembic_config(connection) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(HERE))
    cfg.attributes["connection"] = connection
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply every migration up to `revision`.

    On SQLite, foreign keys are off while migrations run: a batch migration rebuilds a table by
    dropping it, and with them on, the drop would cascade to every row that refers to it (a new
    column on `sends` would delete the outbox and the links). They are checked once it is done.
    """
    if engine.dialect.name != "sqlite":
        with engine.begin() as connection:
            command.upgrade(alembic_config(connection), revision)
        return
    with engine.connect() as connection:
        raw = connection.connection.dbapi_connection  # the PRAGMA is ignored inside a transaction
        raw.execute("PRAGMA foreign_keys=OFF")
        try:
            with connection.begin():
                command.upgrade(alembic_config(connection), revision)
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise ConfigError(f"migrating left {len(broken)} row(s) pointing at missing rows "
                                      f"(first: table {broken[0][0]}); nothing was changed")
        finally:
            raw.execute("PRAGMA foreign_keys=ON")


def revision(engine: Engine, message: str) -> None:
    """Autogenerate a new migration from the models (developers only)."""
    with engine.begin() as connection:
        command.revision(alembic_config(connection), message=message, autogenerate=True)


def require_current(engine: Engine) -> None:
    """Raise a ConfigError naming `mailer db upgrade` when the schema is missing or behind the code.

    Without it, `mailer serve` on a new database answers every page with a 500 ("no such table")
    while /healthz says ok.
    """
    # Read Alembic's table directly: its MigrationContext logs two INFO lines on every command.
    with engine.connect() as connection:
        current = []
        if inspect(connection).has_table("alembic_version"):
            current = list(connection.scalars(text("SELECT version_num FROM alembic_version")))
    heads = ScriptDirectory.from_config(alembic_config(None)).get_heads()
    if set(current) == set(heads):
        return
    url = engine.url.render_as_string(hide_password=True)
    if not current:
        raise ConfigError(f"the database {url} has no tables yet: run `mailer db upgrade`")
    raise ConfigError(f"the database {url} is at revision {', '.join(current)}, the code needs "
                      f"{', '.join(heads)}: run `mailer db upgrade`")
