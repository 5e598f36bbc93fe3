"""Reads of topics."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailer.topics.models import Topic


def all_topics(session: Session) -> list[Topic]:
    """Every topic, by slug."""
    return list(session.scalars(select(Topic).order_by(Topic.slug)))


def as_row(topic: Topic) -> dict:
    """A topic as plain data (for `--json` and the API)."""
    return {
        "id": topic.id,
        "slug": topic.slug,
        "title": topic.title,
        "description": topic.description,
        "created_at": topic.created_at.isoformat(),
    }
