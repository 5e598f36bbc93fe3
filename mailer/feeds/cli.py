"""`mailer feeds …`: the RSS/Atom feeds new articles come from."""

from __future__ import annotations


import click
from sqlalchemy import select

from mailer import db
from mailer.cli import app_context, echo_rows, minute
from mailer.feeds import operations, tasks
from mailer.feeds.models import Feed


@click.group()
def feeds():
    """RSS and Atom feeds polled for new articles."""


@feeds.command("add")
@click.argument("url")
@click.option("--topics", default="", metavar="a,b", help="Comma-separated topic slugs every article from this feed gets.")
@click.option("--actions", "actions", type=click.Choice(["on", "off"]), default="on", show_default=True,
              help="Read calls to act (sign, donate… links) from entries into action buttons.")
@click.option("--content", type=click.Choice(["summary", "full"]), default="summary", show_default=True,
              help="What digests carry of each post: its summary, or the whole post.")
@app_context
def add(url, topics, actions, content):
    """Poll the feed at URL (http or https) from now on."""
    slugs = [s.strip() for s in topics.split(",") if s.strip()]
    feed = operations.add_feed(db.session, url, slugs, reads_actions=actions == "on",
                               full_content=content == "full")
    db.session.commit()
    click.echo(f"added feed {feed.id} {feed.url} (topics: {', '.join(t.slug for t in feed.topics) or 'none'}; "
               f"calls to act: {actions}; digests carry: {content})")


@feeds.command("poll")
@app_context
def poll():
    """Fetch every feed now and store new and changed entries.

    One line per feed; a broken feed is reported (and kept in its last_error) without stopping the
    others. Exit status 1 only when every feed failed: one broken blog is the blog's problem, all of
    them failing is probably ours (network, DNS).
    """
    reports = tasks.poll_feeds()
    if not reports:
        click.echo("no feeds yet: add one with `mailer feeds add URL`")
        return
    for report in reports:
        click.echo(report.line(), err=report.is_failed)
        for skipped in report.skipped:
            click.echo(f"warning: {skipped}", err=True)
    if all(report.is_failed for report in reports):
        raise click.exceptions.Exit(1)


@feeds.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@app_context
def list_(as_json):
    """One row per feed: id, last poll, URL, topics, last error."""
    rows = [{
        "id": f.id,
        "url": f.url,
        "title": f.title,
        "topics": [t.slug for t in f.topics],
        "last_polled_at": f.last_polled_at.isoformat() if f.last_polled_at else None,
        "last_error": f.last_error,
        "reads_actions": f.reads_actions,
        "content": "full" if f.full_content else "summary",
    } for f in db.session.scalars(select(Feed).order_by(Feed.id))]
    echo_rows(rows, as_json=as_json, empty="no feeds yet: add one with `mailer feeds add URL`",
              line=lambda row: f"{row['id']:>5}  {minute(row['last_polled_at']):16}  {row['url']}  "
                               f"[{', '.join(row['topics'])}]"
                               + ("" if row["reads_actions"] else "  calls to act: off")
                               + ("  full posts" if row["content"] == "full" else "")
                               + (f"  failed: {row['last_error']}" if row["last_error"] else ""))
