"""`mailer webhooks …`: URLs that receive signed events, and delivering what is queued for them."""

from __future__ import annotations

import click

from mailer import db
from mailer.cli import app_context, echo_rows, minute
from mailer.editors import operations as editor_operations
from mailer.webhooks import operations, queries

CLI = editor_operations.Actor(None, "")


@click.group()
def webhooks():
    """URLs that receive signed JSON events (subscriber.confirmed, send.finished…)."""


@webhooks.command("add")
@click.argument("url")
@click.option("--events", default="", metavar="A,B",
              help=f"Events to send (default: all): {', '.join(operations.EVENTS)}.")
@app_context
def add(url, events):
    """Send events to URL, signed with a new secret (printed: give it to the receiver)."""
    webhook = operations.add(db.session, url, operations.parse_events(events))
    editor_operations.record(db.session, CLI, "webhook.add", webhook, webhook.url)
    db.session.commit()
    click.echo(f"webhook {webhook.id}: {webhook.url} ({webhook.events or 'all events'})")
    click.echo(f"signing secret: {webhook.secret}")
    click.echo("the receiver checks X-Mailer-Signature with it (see the README, Webhooks)", err=True)


@webhooks.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@app_context
def list_(as_json):
    """One row per webhook: id, URL, events, and its events queued, sent and failed."""
    def line(row):
        return (f"{row['id']:>4}  {row['url']}  [{row['events']}]  created {minute(row['created_at'])}  "
                f"queued {row['queued']}  sent {row['sent']}  failed {row['failed']}")

    echo_rows([row.as_dict() for row in queries.listing(db.session)], as_json=as_json,
              empty="no webhooks yet: add one with `mailer webhooks add https://…`", line=line)


@webhooks.command("remove")
@click.argument("webhook_id", type=int)
@app_context
def remove(webhook_id):
    """Stop sending events to webhook WEBHOOK_ID (its queue goes with it)."""
    webhook = operations.remove(db.session, webhook_id)
    editor_operations.record(db.session, CLI, "webhook.remove", webhook, webhook.url)
    db.session.commit()
    click.echo(f"webhook {webhook_id} removed")


@webhooks.command("deliver")
@app_context
def deliver():
    """Send the events that are due now (the scheduler does this every minute), then exit."""
    from mailer.webhooks import tasks

    tally = tasks.deliver_events()
    click.echo(f"delivered {tally.sent} event(s); {tally.retrying} to retry later; {tally.failed} failed")
