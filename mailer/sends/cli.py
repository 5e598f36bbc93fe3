"""`mailer stats`: how a send went."""

from __future__ import annotations

import click

from mailer import db
from mailer.cli import app_context
from mailer.errors import NotFound
from mailer.links import queries as link_queries
from mailer.sends import queries
from mailer.sends.models import Send


@click.command("stats")
@click.argument("send_id", type=int, required=False)
@app_context
def stats(send_id):
    """Delivery and engagement figures of SEND_ID (or a line per recent send)."""
    session = db.session
    if send_id is None:
        sends = queries.recent_sends(session)
        if not sends:
            click.echo("no sends yet")
        for send in sends:
            counts = queries.delivery_counts(session, send.id)
            click.echo(f"{send.id}\t{send.kind.value}\t{_when(send)}\t{send.subject}\t"
                       f"sent {counts.get('sent', 0)}/{sum(counts.values())}\t"
                       f"clicks {link_queries.clicks_for_send(session, send.id)}")
        return
    send = send_or_fail(send_id)
    click.echo(f"send {send.id} ({send.kind.value}): {send.subject}")
    click.echo(f"queued: {_when(send)}  recipients: {send.recipients_count}")
    counts = queries.delivery_counts(session, send.id)
    click.echo("delivery: " + ", ".join(f"{state} {counts.get(state, 0)}"
                                        for state in ("queued", "sending", "sent", "failed")))
    click.echo(f"clicks: {link_queries.clicks_for_send(session, send.id)}  "
               f"unique clickers: {link_queries.unique_clickers(session, send.id)}  "
               f"scanner fetches (left out): {link_queries.scanner_clicks(session, send.id)}")
    opens, openers = link_queries.opens(session, send.id)
    if opens:
        click.echo(f"opens: {opens}  unique openers: {openers}")
    for link in link_queries.clicks_per_link(session, send.id):
        click.echo(f"  {link.clicks:>6} clicks  {link.unique_clickers:>6} unique  {link.anonymous_clicks:>6} anonymous"
                   f"  [{link.kind}] {link.label}  {link.url}")


def send_or_fail(send_id: int) -> Send:
    send = queries.get_send(db.session, send_id)
    if send is None:
        raise NotFound(f"no send with id {send_id} (`mailer stats` lists them)")
    return send


def _when(send: Send) -> str:
    return f"{send.queued_at:%Y-%m-%d %H:%M} UTC" if send.queued_at else "not queued"
