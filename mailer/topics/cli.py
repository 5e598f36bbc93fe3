"""`mailer topics …`: the topics readers can follow."""

from __future__ import annotations


import click

from mailer import db
from mailer.cli import app_context, echo_rows, minute
from mailer.errors import TopicError
from mailer.topics import operations, queries


@click.group()
def topics():
    """Topics readers can follow (feeds and hashtags also create them)."""


@topics.command("add")
@click.argument("slug")
@click.option("--title", help="What readers see; made from the slug when left out.")
@click.option("--description", default="", help="One line on what the topic covers.")
@app_context
def add(slug, title, description):
    """Create the topic SLUG (lower-case letters, digits, hyphens)."""
    topic = operations.add_topic(db.session, slug, title, description)
    db.session.commit()
    click.echo(f"added topic {topic.id} {topic.slug} ({topic.title})")


@topics.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@app_context
def list_(as_json):
    """One row per topic: id, time created, slug, title."""
    echo_rows([queries.as_row(t) for t in queries.all_topics(db.session)], as_json=as_json,
              empty="no topics yet: add one with `mailer topics add SLUG`",
              line=lambda row: f"{row['id']:>5}  {minute(row['created_at'])}  {row['slug']}  {row['title']}")


@topics.command("merge")
@click.argument("source")
@click.argument("target")
@app_context
def merge(source, target):
    """Fold topic SOURCE into TARGET: its followers, articles, feeds and alerts get TARGET; SOURCE goes.

    For two topics that are one idea, such as `chechenantigaypurge` (a feed category before topics had
    one slug function) and `chechen-anti-gay-purge`.
    """
    rows = {slug: operations.find_topic(db.session, slug) for slug in (source, target)}
    missing = [slug for slug, topic in rows.items() if topic is None]
    if missing:
        raise TopicError(f"no topic {missing[0]!r}: see `mailer topics list`")
    followers = operations.follower_count(db.session, rows[source])
    operations.merge_topics(db.session, rows[source], rows[target])
    db.session.commit()
    click.echo(f"merged topic {source} into {target} ({followers} follower(s) moved)")
