"""Reads of articles."""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, selectinload

from mailer.articles.models import Article, ArticleTopic
from mailer.feeds.models import Feed
from mailer.topics.models import Topic


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


def search(session: Session, *, text: str = "", topic_slug: str = "", limit: int = 50,
           offset: int = 0) -> list[Article]:
    """Articles whose title or summary contains `text` (any case), in topic `topic_slug` when given;
    newest published first, with their topics and action links loaded."""
    query = select(Article).options(selectinload(Article.topics), selectinload(Article.actions))
    if text:
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(or_(Article.title.ilike(pattern, escape="\\"),
                                Article.summary.ilike(pattern, escape="\\")))
    if topic_slug:
        query = query.where(Article.id.in_(select(ArticleTopic.article_id).join(
            Topic, Topic.id == ArticleTopic.topic_id).where(Topic.slug == topic_slug)))
    query = query.order_by(Article.published_at.desc(), Article.id.desc()).limit(limit).offset(offset)
    return list(session.scalars(query))


def source_of(article: Article) -> str:
    """Where an article came from, as an editor says it: feed, file or workspace."""
    if article.guid.startswith("admin:"):
        return "workspace"
    if article.feed_id is not None:
        return "feed"
    return "file"


def full_content_ids(session: Session, article_ids: list[int]) -> set[int]:
    """Those of `article_ids` whose feed sends whole posts (`feeds add --content full`): a digest carries
    their body instead of their summary. Read when composing, so changing the feed changes the next digest."""
    if not article_ids:
        return set()
    return set(session.scalars(select(Article.id).join(Feed, Feed.id == Article.feed_id)
                               .where(Article.id.in_(article_ids), Feed.full_content.is_(True))))
