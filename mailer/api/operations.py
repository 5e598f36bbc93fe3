"""Verbs on API tokens: create one (its secret is shown once), revoke it, and recognise it on a request.

Only the SHA-256 of a secret is stored: a copy of the database does not let anyone call the API.
"""

from __future__ import annotations

import hashlib
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailer import clock
from mailer.api.models import ApiToken
from mailer.errors import ApiTokenError, NotFound

SCOPES = ("read", "write")
# The visible start of every secret: tells a leaked string for what it is (secret scanners look for such).
SECRET_PREFIX = "mlr_"
MAX_NAME = 100
# last_used_at is written at most this often per token: a busy CMS must not turn every GET into a write.
LAST_USED_EVERY = timedelta(minutes=1)


@dataclass(frozen=True)
class NewToken:
    """A token just created, with its secret: the only moment the secret is known."""

    token: ApiToken
    secret: str


def hash_secret(secret: str) -> str:
    """The SHA-256 hex digest stored for a secret (a random 256-bit secret needs no slow hash)."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def create(session: Session, scope: str, name: str = "") -> NewToken:
    """Create a token with `scope` (read: GET routes only; write: every route). The caller commits."""
    if scope not in SCOPES:
        raise ApiTokenError(f"unknown scope {scope!r}: use read or write")
    name = " ".join(name.split())
    if any(unicodedata.category(c) == "Cc" for c in name) or len(name) > MAX_NAME:
        raise ApiTokenError(f"a token's name is one line of at most {MAX_NAME} characters")
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(name=name, scope=scope, token_hash=hash_secret(secret), prefix=secret[:12],
                     created_at=clock.now())
    session.add(token)
    session.flush()
    return NewToken(token, secret)


def revoke(session: Session, token_id: int) -> ApiToken:
    """Revoke a token: requests with it are refused from now on. The caller commits."""
    token = session.get(ApiToken, token_id)
    if token is None:
        raise NotFound(f"no API token with id {token_id} (`mailer tokens list` shows them)")
    if token.revoked_at is not None:
        raise ApiTokenError(f"token {token_id} is already revoked")
    token.revoked_at = clock.now()
    return token


def authenticate(session: Session, secret: str) -> ApiToken | None:
    """The live token whose secret this is, or None (unknown, malformed or revoked)."""
    if not secret.startswith(SECRET_PREFIX) or len(secret) > 200 or not secret.isascii():
        return None
    token = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_secret(secret)))
    if token is None or token.revoked_at is not None:
        return None
    return token


def mark_used(token: ApiToken) -> bool:
    """Note that the token was used now; True when the row changed (at most once a minute)."""
    now = clock.now()
    if token.last_used_at is not None and now - token.last_used_at < LAST_USED_EVERY:
        return False
    token.last_used_at = now
    return True
