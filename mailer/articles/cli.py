"""`mailer articles …`: import articles from files and list them."""

from __future__ import annotations

from pathlib import Path

import click

from mailer import db
from mailer.articles import importer, queries
from mailer.cli import app_context, echo_rows, minute
from mailer.errors import ArticleError, MailerError


@click.group()
def articles():
    """Articles: what digests and alerts are made of."""


@articles.command("import")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@app_context
def import_(paths):
    """Store the articles in PATHS (Markdown/text files, or folders of them); importing again updates.

    A file that cannot be read is reported in one line and the others are still imported; the exit
    status is then 2.
    """
    failed = seen = 0
    for path, refusal in importer.article_files(paths):
        seen += 1
        try:
            if refusal:
                raise ArticleError(f"{path}: {refusal}")
            upserted, warnings = importer.import_file(db.session, path)
            db.session.commit()
        except MailerError as exc:
            db.session.rollback()
            failed += 1
            click.echo(f"mailer: {exc}", err=True)
            continue
        for warning in warnings:
            click.echo(f"warning: {warning}", err=True)
        article = upserted.article
        state = "new" if upserted.is_new else "updated" if upserted.is_changed else "unchanged"
        click.echo(f"{state:9} {article.id:>5}  {article.slug}  ({len(article.actions)} action link(s); "
                   f"topics: {', '.join(t.slug for t in article.topics) or 'none'})")
    if not seen:
        raise ArticleError(f"no {', '.join(importer.ARTICLE_SUFFIXES)} files in {', '.join(map(str, paths))}")
    if failed:
        raise click.exceptions.Exit(2)


@articles.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--limit", type=click.IntRange(min=1), help="Only the newest N.")
@app_context
def list_(as_json, limit):
    """One row per article, newest first: id, published time, slug, topics."""
    echo_rows([queries.as_row(a) for a in queries.latest(db.session, limit)], as_json=as_json,
              empty="no articles yet: `mailer articles import FILE…` or `mailer feeds add URL`",
              line=lambda row: f"{row['id']:>5}  {minute(row['published_at'])}  {row['slug']}  "
                               f"[{', '.join(row['topics'])}]  {row['title']}")
