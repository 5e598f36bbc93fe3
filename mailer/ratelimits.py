"""Rate limits whose counts every process shares: rows in `rate_hits`, counted and added in one step.

Flask-Limiter keeps its counts wherever `site.rate_limit_storage` says; "" (the default) is this
module's `DatabaseStorage`, registered with the `limits` library under the scheme `mailer-db://`, so
`mailer serve`, every gunicorn worker and every host behind one database count together. `take()` is
the same step for counts of our own (pending signups per domain).

A view marked `counted_in_the_request` (the signup) has its counts made in its own transaction, which
it commits on every path: one transaction a signup instead of two (on SQLite one turn of the write
lock and one fsync; on PostgreSQL one connection and five round trips fewer). Other counts are
committed at once; on SQLite on the request's own connection (`db.session`), because every SQLite
transaction holds the write lock (mailer.db) and a second connection in the same thread would wait on
any read the request had begun.

The key of a row is an HMAC of what is counted (an IP address, a domain) under the site's secret: the
table never holds an address, and a seized database cannot be tested against a list of them.
"""

from __future__ import annotations

import hashlib
import hmac
import functools
import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from flask import current_app, has_request_context, request
from limits.storage import MovingWindowSupport, Storage
from sqlalchemy import Connection, delete, func, insert, select, text
from sqlalchemy.exc import SQLAlchemyError

from mailer import clock, db
from subscribers.models import RateHit

SCHEME = "mailer-db"
LIMITER_SCOPE = "limiter"
# Rows older than this are of no limit's concern; every PRUNE_EVERY-th step of a process clears them.
KEEP = timedelta(days=1)
PRUNE_EVERY = 500
_steps = itertools.count(1)
IN_THE_REQUEST = "mailer.ratelimits.in_the_request"  # a WSGI environ key


def counted_in_the_request(view):
    """Put this outside `@limiter.limit` on a view that commits its session on every path it answers
    (a refusal included): its limits are then counted in that same transaction.

    A count the view's transaction rolls back is lost, so the view rolls back only to savepoints.
    """

    @functools.wraps(view)
    def counted(*args, **kwargs):
        request.environ[IN_THE_REQUEST] = True
        return view(*args, **kwargs)

    return counted


def hashed_key(secret: str, key: str) -> str:
    """What a row stores for `key`: an HMAC-SHA256 under the site's secret, never the key itself."""
    return hmac.new(secret.encode(), key.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


def take(conn: Connection, scope: str, key: str, *, limit: int, per: timedelta, amount: int = 1) -> bool:
    """Count `amount` hits of `key` within the last `per` unless that would pass `limit`.

    Call it in a transaction that commits (or rolls back) right after: the count and the insert are one
    step for every process (or in the transaction of a signup, which commits soon). PostgreSQL takes a
    transaction-scoped advisory lock on the key (two transactions counting the same key wait for each
    other); SQLite's transactions begin IMMEDIATE
    (mailer.db), so writers run one at a time anyway.
    """
    now = clock.now()
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"), {"k": f"{scope}:{key}"})
    if next(_steps) % PRUNE_EVERY == 0:
        conn.execute(delete(RateHit).where(RateHit.hit_at < now - KEEP))
    used = conn.scalar(select(func.count()).select_from(RateHit).where(
        RateHit.scope == scope, RateHit.key == key, RateHit.hit_at > now - per)) or 0
    if used + amount > limit:
        return False
    conn.execute(insert(RateHit), [{"scope": scope, "key": key, "hit_at": now}] * amount)
    return True


class DatabaseStorage(Storage, MovingWindowSupport):
    """A `limits` storage over the app's database (moving windows only: the strategy the app sets).

    It reads the engine and the secret from the current app, so one storage serves whichever app
    is handling the request (the factory runs once per app, tests build many).
    """

    STORAGE_SCHEME = [SCHEME]

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options):
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)

    @property
    def base_exceptions(self):
        return SQLAlchemyError

    @staticmethod
    def _key(key: str) -> str:
        return hashed_key(current_app.config["SECRET_KEY"], key)

    @staticmethod
    @contextmanager
    def _transaction() -> Iterator[Connection]:
        """The request's own transaction, left to the view to commit, when it is `counted_in_the_request`;
        else a transaction committed when the step ends, whatever the request does next (on SQLite in
        the request's own session: what it read, or wrote, before its limit was checked is committed
        with the count; limits are checked before a view writes anything).
        """
        engine = current_app.extensions["engine"]
        is_requests_engine = db.session.get_bind() is engine
        if is_requests_engine and has_request_context() and request.environ.get(IN_THE_REQUEST):
            yield db.session.connection()
            return
        if engine.dialect.name != "sqlite" or not is_requests_engine:
            with engine.begin() as conn:
                yield conn
            return
        try:
            yield db.session.connection()
        except BaseException:
            db.session.rollback()
            raise
        db.session.commit()

    def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        with self._transaction() as conn:
            return take(conn, LIMITER_SCOPE, self._key(key), limit=limit, per=timedelta(seconds=expiry),
                        amount=amount)

    def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        since = clock.now() - timedelta(seconds=expiry)
        with self._transaction() as conn:
            oldest, count = conn.execute(
                select(func.min(RateHit.hit_at), func.count()).where(
                    RateHit.scope == LIMITER_SCOPE, RateHit.key == self._key(key), RateHit.hit_at > since)).one()
        if not count:
            return clock.now().timestamp(), 0
        if oldest.tzinfo is None:  # SQLite hands back a naive UTC time from an aggregate
            oldest = oldest.replace(tzinfo=clock.now().tzinfo)
        return oldest.timestamp(), count

    def clear(self, key: str) -> None:
        with self._transaction() as conn:
            conn.execute(delete(RateHit).where(RateHit.scope == LIMITER_SCOPE, RateHit.key == self._key(key)))

    def reset(self) -> int | None:
        with self._transaction() as conn:
            return conn.execute(delete(RateHit).where(RateHit.scope == LIMITER_SCOPE)).rowcount

    def check(self) -> bool:
        return True  # the database's health is /healthz's to tell

    # Fixed windows are not offered: the factory sets the moving-window strategy.
    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        raise NotImplementedError("mailer-db:// supports the moving-window strategy only")

    def get(self, key: str) -> int:
        raise NotImplementedError("mailer-db:// supports the moving-window strategy only")

    def get_expiry(self, key: str) -> float:
        raise NotImplementedError("mailer-db:// supports the moving-window strategy only")
