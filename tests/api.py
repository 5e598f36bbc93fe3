"""Helpers for JSON API tests: tokens and authorised requests."""

from __future__ import annotations

from mailer import db
from mailer.api import operations


def token(scope: str = "write", name: str = "blog CMS") -> str:
    """A new token's secret, committed."""
    new = operations.create(db.session, scope, name)
    db.session.commit()
    return new.secret


def auth(secret: str) -> dict:
    return {"Authorization": f"Bearer {secret}"}


def call(client, method: str, path: str, secret: str | None, **kwargs):
    """One API request, as a client on another machine makes it: the test's own read has ended first,
    so the request sees the database as a client would, not through the test's transaction."""
    session = db.session()
    if session.in_transaction() and not (session.new or session.dirty or session.deleted):
        session.rollback()
    headers = kwargs.pop("headers", {})
    if secret is not None:
        headers = {**auth(secret), **headers}
    return client.open(path, method=method, headers=headers, **kwargs)
