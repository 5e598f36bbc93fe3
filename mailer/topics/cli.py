"""`mailer topics …`: the topics readers can follow."""

from __future__ import annotations


import click

from mailer import db
from mailer.cli import app_context, echo_rows, minute
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
