"""Reads of topics."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailer.topics.models import SubscriberTopic, Topic


def all_topics(session: Session) -> list[Topic]:
    """Every topic, by slug."""
    return list(session.scalars(select(Topic).order_by(Topic.slug)))


def by_title(session: Session) -> list[Topic]:
    """Every topic by title, as the workspace's pickers list them."""
    return list(session.scalars(select(Topic).order_by(Topic.title, Topic.slug)))


def with_follower_counts(session: Session) -> list[tuple[Topic, int]]:
    """Every topic by title, with how many subscribers (in any state) follow it."""
    followers = (select(SubscriberTopic.topic_id, func.count().label("n"))
                 .group_by(SubscriberTopic.topic_id).subquery())
    rows = session.execute(select(Topic, func.coalesce(followers.c.n, 0))
                           .outerjoin(followers, followers.c.topic_id == Topic.id).order_by(Topic.title, Topic.slug))
    return [(topic, count) for topic, count in rows]


def public_topics(session: Session, also: list[Topic] = ()) -> list[Topic]:
    """Topics the public form offers (those not hidden), by title, with `also` (a reader's own) added."""
    shown = list(session.scalars(select(Topic).where(Topic.is_hidden.is_(False))))
    extra = [topic for topic in also if topic.is_hidden]
    return sorted({topic.id: topic for topic in shown + extra}.values(), key=lambda t: (t.title, t.slug))


def as_row(topic: Topic) -> dict:
    """A topic as plain data (for `--json` and the API)."""
    return {
        "id": topic.id,
        "slug": topic.slug,
        "title": topic.title,
        "description": topic.description,
        "created_at": topic.created_at.isoformat(),
    }
