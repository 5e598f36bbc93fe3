"""`mailer alerts send`: an urgent advocacy alert, now."""

from __future__ import annotations

import click
from flask import current_app

from mailer import db
from mailer.alerts import operations
from mailer.cli import app_context
from mailer.sends import operations as send_operations


@click.group()
def alerts():
    """Urgent alerts: one article, to the readers of its topics, at once."""


@alerts.command("send")
@click.argument("article_id", type=int)
@click.option("--topics", default=None, metavar="a,b",
              help="Comma-separated topic slugs to alert (default: the article's own topics).")
@click.option("--again", is_flag=True, help="Send even if this article already went out as an alert to these topics.")
@app_context
def send(article_id, topics, again):
    """Send article ARTICLE_ID now to every eligible subscriber who follows one of its topics."""
    session = db.session
    article = operations.article_to_alert(session, article_id)
    slugs = None if topics is None else [s.strip() for s in topics.split(",") if s.strip()]
    chosen = operations.alert_topics(session, article, slugs)
    alert = operations.send_alert(session, article, chosen, again=again)
    if alert is None:
        session.rollback()
        click.echo(f"nothing sent: no confirmed, unpaused, unsuppressed subscriber among "
                   f"{operations.describe(chosen)} who has not had this article as an alert yet")
        return
    session.commit()
    click.echo(f"alert {alert.id}: {alert.subject}")
    click.echo(f"to: {operations.describe(chosen)}")
    click.echo(f"queued to {alert.recipients_count} recipient(s), ahead of any queued digest")
    click.echo(f"web version: {send_operations.archive_url(current_app.config['MAILER'], alert)}")
