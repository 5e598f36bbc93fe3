"""The digest schedule job: every minute, run each schedule whose slot has come, one commit each."""

from __future__ import annotations

import logging

from sqlalchemy.exc import IntegrityError

from mailer import clock, db
from mailer.digests import schedules

log = logging.getLogger(__name__)


def send_due_digests() -> None:
    """The scheduled job: select the schedules that are due, run each slot, commit, log a line each.

    One schedule's failure is logged and rolled back; the others still run, and the failed one is
    tried again at the next minute (its slot was not moved on).
    """
    session = db.session
    due = schedules.due_ids(session, clock.now())
    session.commit()
    for schedule_id in due:
        try:
            run = schedules.run_due(session, schedule_id)
            session.commit()
        except IntegrityError as exc:
            # Most likely a second scheduler queued this slot's digest between our check and our insert.
            session.rollback()
            log.warning("schedule %s: not sent, the database refused it (was a second scheduler running?): %s",
                        schedule_id, exc.orig)
            continue
        except Exception:
            session.rollback()
            log.exception("schedule %s: running its digest failed", schedule_id)
            continue
        if run.slot_at is not None:
            log.info("%s", run.line())
