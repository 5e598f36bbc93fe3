"""Reads for alerts: who an alert reaches, and whether the same alert already went out."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from mailer.alerts.compose import reaches
from mailer.articles.models import Article
from mailer.sends import queries as send_queries
from mailer.sends.models import Send, SendArticle, SendKind
from mailer.outbox.models import OutboxMessage
from mailer.topics.models import Topic


def article_with_links(session: Session, article_id: int) -> Article | None:
    return session.scalar(select(Article).where(Article.id == article_id)
                          .options(selectinload(Article.topics), selectinload(Article.actions)))


def topics_by_slug(session: Session, slugs: list[str]) -> dict[str, Topic]:
    return {t.slug: t for t in session.scalars(select(Topic).where(Topic.slug.in_(slugs)))}


def audience(session: Session, topic_slugs: frozenset[str]) -> list[send_queries.Recipient]:
    """Eligible subscribers (confirmed, unpaused, unsuppressed) an alert to `topic_slugs` reaches."""
    return [r for r in send_queries.eligible_subscribers(session) if reaches(r.topic_slugs, topic_slugs)]


def same_alert(session: Session, article_id: int, topic_slugs: frozenset[str]) -> Send | None:
    """The latest alert of this article to exactly these topics, or None."""
    alerts = session.scalars(
        select(Send).join(SendArticle, SendArticle.send_id == Send.id)
        .where(Send.kind == SendKind.alert, SendArticle.article_id == article_id)
        .options(selectinload(Send.topics)).order_by(Send.id.desc()))
    return next((send for send in alerts if frozenset(t.slug for t in send.topics) == topic_slugs), None)


def already_alerted(session: Session, article_id: int) -> set[int]:
    """Subscribers who were queued an earlier alert of this article (to any topics)."""
    return set(session.scalars(
        select(OutboxMessage.subscriber_id).distinct()
        .join(Send, Send.id == OutboxMessage.send_id)
        .join(SendArticle, SendArticle.send_id == Send.id)
        .where(Send.kind == SendKind.alert, SendArticle.article_id == article_id,
               OutboxMessage.subscriber_id.is_not(None))))
