"""The bounce mailbox job: every bounces.interval_minutes, read what came in (when bounces.is_scheduled)."""

from __future__ import annotations

import logging

from flask import current_app

from mailer.bounces import mailboxes
from mailer.errors import BounceError

log = logging.getLogger(__name__)


def read_bounce_mailbox() -> None:
    """The scheduled job: read the configured bounce mailbox once; one line of what it did or why not."""
    config = current_app.config["MAILER"]
    if not config["bounces"]["is_scheduled"]:
        return
    try:
        where, tally = mailboxes.process_configured(config)
    except BounceError as exc:
        log.warning("bounce mailbox not read: %s", exc)
        return
    if tally.read:
        log.info("bounce mailbox %s: %s", where, tally.line())
