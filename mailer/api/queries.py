"""Reads of API tokens."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailer.api.models import ApiToken


def all_tokens(session: Session) -> list[ApiToken]:
    """Every token, revoked ones too, oldest first."""
    return list(session.scalars(select(ApiToken).order_by(ApiToken.id)))


def as_row(token: ApiToken) -> dict:
    """A token as plain data (never its hash)."""
    return {
        "id": token.id,
        "name": token.name,
        "scope": token.scope,
        "prefix": token.prefix,
        "created_at": token.created_at.isoformat(),
        "last_used_at": token.last_used_at.isoformat() if token.last_used_at else None,
        "revoked_at": token.revoked_at.isoformat() if token.revoked_at else None,
    }
