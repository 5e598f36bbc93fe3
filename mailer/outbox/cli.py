"""`mailer outbox retry`: after an outage, send again what waited or failed."""

from __future__ import annotations

from datetime import datetime, timezone

import click

from mailer import clock, config as config_module, db
from mailer.cli import app_context
from mailer.errors import MailerError
from mailer.outbox import operations


@click.group()
def outbox():
    """The queue of messages waiting for delivery."""


def _since(value: str | None) -> datetime | None:
    """'2h' (that long ago) or an ISO date/time (UTC unless it says otherwise)."""
    if value is None:
        return None
    ago = config_module.duration(value)
    if ago is not None:
        return clock.now() - ago
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise MailerError(f"--since must be a time ago like '6h' or '2d', or a date like 2026-12-01T09:00, "
                          f"not {value!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


@outbox.command("retry")
@click.option("--failed", is_flag=True, help="Also requeue messages that failed for good (not to suppressed addresses).")
@click.option("--send", "send_id", type=int, metavar="ID", help="Only the messages of send ID.")
@click.option("--since", metavar="WHEN", help="Only messages queued since WHEN: '6h', '2d' or an ISO date.")
@app_context
def retry(failed, send_id, since):
    """Make messages waiting for a retry due now (and with --failed, requeue failed ones)."""
    since_at = _since(since)
    requeued = operations.requeue(db.session, clock.now(), failed=failed, send_id=send_id, since=since_at)
    db.session.commit()
    what = "waiting or failed" if failed else "waiting for a retry"
    click.echo(f"requeued {requeued} message(s) {what}; a running worker sends them now")
