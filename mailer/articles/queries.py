"""Reads of articles."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailer.articles.models import Article


def latest(session: Session, limit: int | None = None) -> list[Article]:
    """Articles, newest published first (future-dated ones included: they are stored, just not sent yet)."""
    query = select(Article).order_by(Article.published_at.desc(), Article.id.desc())
    if limit:
        query = query.limit(limit)
    return list(session.scalars(query))


def by_slug(session: Session, slug: str) -> Article | None:
    """The article at /archive-style slug `slug`, or None."""
    return session.scalar(select(Article).where(Article.slug == slug))


def as_row(article: Article) -> dict:
    """An article as plain data (for `--json` and the API)."""
    return {
        "id": article.id,
        "slug": article.slug,
        "title": article.title,
        "published_at": article.published_at.isoformat(),
        "canonical_url": article.canonical_url,
        "guid": article.guid,
        "summary": article.summary,
        "image_url": article.image_url,
        "author": article.author,
        "feed_id": article.feed_id,
        "topics": [t.slug for t in article.topics],
        "actions": [{"label": a.label, "url": a.url, "kind": a.kind.value} for a in article.actions],
    }
