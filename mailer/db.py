"""The database: one engine per app, a thread-scoped session, and the declarative base.

Timestamps are stored as UTC and always come back aware, on SQLite as on PostgreSQL.
"""

from __future__ import annotations

import fcntl
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TypeVar

from sqlalchemy import DateTime, Engine, MetaData, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, NoSuchModuleError
from sqlalchemy.orm import DeclarativeBase, Session, scoped_session, sessionmaker
from sqlalchemy.types import TypeDecorator

from mailer.errors import ConfigError

T = TypeVar("T")

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator):
    """An aware UTC datetime in, an aware UTC datetime out (SQLite drops the zone otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use mailer.clock.now()")
        return value.astimezone(timezone.utc)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime}


# One session per thread; web requests, the worker thread and the scheduler each get their own.
session = scoped_session(sessionmaker(expire_on_commit=False))


def make_engine(url: str) -> Engine:
    """Create the engine; on SQLite turn on WAL, foreign keys and a busy timeout for the worker thread.

    A URL that names no database we can drive is a ConfigError; one that names a server that is down
    fails later, at the first query, where the CLI reports it in one line.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        # Not echoed: a mistyped URL may still hold a password.
        raise ConfigError("database.url is not a database URL; use sqlite:///var/mailer.db or "
                          "postgresql+psycopg://user@host/dbname") from None
    shown = parsed.render_as_string(hide_password=True)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        folder = Path(parsed.database).parent
        try:
            # A folder we create for the database is its owner's only: it holds every subscriber's address.
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"database.url {shown}: cannot create the folder {folder}: "
                              f"{exc.strerror or exc}") from None
    try:
        return _create_engine(url)
    except (NoSuchModuleError, ImportError):
        raise ConfigError(f"database.url {shown}: no driver for {parsed.drivername!r} is installed; "
                          "use sqlite:/// or postgresql+psycopg://") from None


def _create_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            dbapi_conn.isolation_level = None  # let SQLAlchemy's BEGIN below take over
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            if ":memory:" not in url:
                cur.execute("PRAGMA journal_mode=WAL")
            cur.close()

        writers = SQLiteWriters(make_url(url).database)

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):
            if conn.get_execution_options().get(READS_ONLY):  # see reading(): no write lock to wait for
                conn.exec_driver_sql("BEGIN")
                return
            # BEGIN IMMEDIATE: take the write lock up front so two writers wait instead of failing.
            writers.take(conn.connection.dbapi_connection)
            try:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            except BaseException:
                writers.give_back(conn.connection.dbapi_connection)
                raise

        @event.listens_for(engine, "commit")
        @event.listens_for(engine, "rollback")
        def _sqlite_end(conn):
            writers.give_back(conn.connection.dbapi_connection)

        @event.listens_for(engine, "checkin")
        def _sqlite_checkin(dbapi_connection, _record):
            writers.give_back(dbapi_connection)  # a connection returned mid-transaction is rolled back

        return engine
    return create_engine(url, pool_pre_ping=True)


class SQLiteWriters:
    """SQLite's writers one at a time, handed over the moment one ends.

    SQLite lets one transaction write at a time; the others wait in its busy handler, which sleeps
    and polls (every 100 ms after the first tries). Under a signup storm that left readers waiting
    seconds (p99 5.8 s for 8 threads, and past a minute across gunicorn's processes) while the lock
    was free most of the time. Here a writer first waits for a lock of this process (threads are
    woken at once), then for an exclusive lock on `<database>.lock` shared by every process (polled
    every millisecond). A lock not given back within SQLite's own busy timeout is taken anyway, so
    a leak can only slow writers down, never stop them.
    """

    TIMEOUT = 30  # seconds, as the busy timeout above
    POLL = 0.001

    def __init__(self, database: str | None):
        self._lock = threading.Lock()
        self._holder: object | None = None
        self._file = None
        if database and database != ":memory:":
            try:
                self._file = open(f"{database}.lock", "a")  # noqa: SIM115 (held for the engine's life)
            except OSError:
                pass  # a read-only folder: SQLite itself says so at the first write, in one line

    def take(self, connection) -> None:
        if not self._lock.acquire(timeout=self.TIMEOUT):
            return  # leaked: let SQLite's busy handler decide, as before
        self._holder = connection
        if self._file is None:
            return
        deadline = time.monotonic() + self.TIMEOUT
        while True:
            try:
                fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return
                time.sleep(self.POLL)

    def give_back(self, connection) -> None:
        if self._holder is not connection:
            return
        self._holder = None
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
        self._lock.release()


READS_ONLY = "mailer_reads_only"


def reading(on: Session | None = None) -> None:
    """Begin the session's transaction as one that only reads (call it before its first query).

    On SQLite every other transaction takes the write lock when it begins (see above), so a page that
    only reads (`/healthz`, the signup form shown) or the delivery worker looking readers up would
    queue behind every writer and hold up the next. A reader in WAL mode needs no lock: it begins
    deferred and reads its snapshot. It must not write: a write in it could fail at once with
    "database is locked" when another writer committed since it began. PostgreSQL: no difference.
    """
    on = on or session()
    if not on.in_transaction():  # one begun already (a test's, say) stays what it is
        on.connection(execution_options={READS_ONLY: True})


def commit_retrying_once(work: Callable[[], T]) -> T:
    """Run `work` and commit. If a concurrent writer took the same unique key first, roll back and run
    it once more: this time it finds the other writer's row instead of inserting its own."""
    try:
        result = work()
        session.commit()
        return result
    except IntegrityError:
        session.rollback()
    result = work()
    session.commit()
    return result


def bind(engine: Engine) -> None:
    session.remove()
    session.configure(bind=engine)


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"
