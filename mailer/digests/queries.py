"""Reads for digests: which articles are new since the last one."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from mailer.articles.models import Article
from mailer.sends.models import Send, SendArticle, SendKind


def new_articles(session: Session, now: datetime, *, include_held: bool = False) -> list[Article]:
    """Articles published by `now`, not unpublished, that no digest has carried yet, newest first.

    "Not carried" rather than "published after the last digest": an article imported late with an
    earlier date still goes out once. An article an editor held back waits, unless `include_held`
    (the workspace lists them, to let them go again).
    """
    carried = (select(SendArticle.article_id)
               .join(Send, Send.id == SendArticle.send_id)
               .where(Send.kind == SendKind.digest))
    query = select(Article).where(Article.published_at <= now, Article.unpublished_at.is_(None),
                                  Article.id.not_in(carried))
    if not include_held:
        query = query.where(Article.is_held.is_(False))
    return list(session.scalars(
        query
        .options(selectinload(Article.topics), selectinload(Article.actions))
        .order_by(Article.published_at.desc(), Article.id.desc())))


def last_digest(session: Session) -> Send | None:
    return session.scalar(select(Send).where(Send.kind == SendKind.digest).order_by(Send.id.desc()).limit(1))
