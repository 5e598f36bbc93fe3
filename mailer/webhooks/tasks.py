"""The scheduler's one-minute webhook job: notice finished sends, then send what is due."""

from __future__ import annotations

import logging

from flask import current_app

from mailer import db
from mailer.webhooks import delivery, operations

log = logging.getLogger(__name__)


def deliver_events() -> delivery.Tally:
    """Queue send.finished for sends that have just finished, then deliver every due event once."""
    config = current_app.config["MAILER"]
    operations.announce_finished_sends(db.session, config)
    db.session.commit()
    db.session.remove()  # the deliverer uses short transactions of its own
    tally = delivery.deliver_due(config)
    if tally.sent or tally.retrying or tally.failed:
        log.info("webhooks: %d delivered, %d to retry, %d failed", tally.sent, tally.retrying, tally.failed)
    return tally
