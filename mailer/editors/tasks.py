"""Scheduled job of editors: forget sign-in attempts the throttle no longer needs (they hold addresses)."""

from __future__ import annotations

from mailer import db
from mailer.editors import operations


def forget_old_attempts() -> None:
    operations.forget_old_attempts(db.session)
    db.session.commit()
