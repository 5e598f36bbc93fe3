"""`mailer topics …`: the topics readers can follow."""

from __future__ import annotations

import json

import click

from mailer import db
from mailer.cli import app_context
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
    rows = [queries.as_row(t) for t in queries.all_topics(db.session)]
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        click.echo("no topics yet: add one with `mailer topics add SLUG`", err=True)
    for row in rows:
        click.echo(f"{row['id']:>5}  {row['created_at'][:16].replace('T', ' ')}  {row['slug']}  {row['title']}")
