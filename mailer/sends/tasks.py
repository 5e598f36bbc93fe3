"""Scheduled job of sends: retention of delivered messages (`delivery.keep_days`)."""

from __future__ import annotations

import logging

from flask import current_app

from mailer import clock, db
from mailer.sends import operations

log = logging.getLogger(__name__)


def reduce_old_rows() -> None:
    """Delete finished outbox rows past `delivery.keep_days`, a small batch per transaction."""
    keep_days = current_app.config["MAILER"]["delivery"]["keep_days"]
    total = 0
    while removed := operations.reduce_old_rows(db.session, clock.now(), keep_days):
        db.session.commit()
        total += removed
    db.session.commit()
    if total:
        log.info("retention: %d delivered message(s) older than %d days reduced to their sends' counts",
                 total, keep_days)
