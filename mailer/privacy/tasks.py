"""Scheduled job of privacy: keep IP addresses, user agents and who-clicked no longer than the notice says."""

from __future__ import annotations

from flask import current_app

from mailer import db
from mailer.privacy import operations


def apply_retention() -> None:
    """Batch after batch, each committed on its own, until nothing older than the periods is left."""
    config = current_app.config["MAILER"]
    while operations.blank_old_request_details(db.session, config["privacy"]["keep_ip_days"]):
        db.session.commit()
    while operations.forget_old_click_readers(db.session, config["tracking"]["keep_days"]):
        db.session.commit()
    db.session.commit()
