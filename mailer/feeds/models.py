"""RSS/Atom feeds polled for new articles."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from mailer import clock
from mailer.db import Base
from mailer.topics.models import Topic


class FeedTopic(Base):
    """Topics every article of a feed gets, on top of the feed's own categories."""

    __tablename__ = "feed_topics"

    feed_id: Mapped[int] = mapped_column(ForeignKey("feeds.id", ondelete="CASCADE"), primary_key=True)
    topic_id: Mapped[int] = mapped_column(ForeignKey("topics.id", ondelete="CASCADE"), primary_key=True)


class Feed(Base):
    __tablename__ = "feeds"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(2000), unique=True)
    title: Mapped[str] = mapped_column(String(500), default="")
    etag: Mapped[str] = mapped_column(String(500), default="")
    last_modified: Mapped[str] = mapped_column(String(100), default="")
    last_polled_at: Mapped[datetime | None]
    last_error: Mapped[str] = mapped_column(Text, default="")
    reads_actions: Mapped[bool] = mapped_column(default=True)  # calls to act read from entries' links
    full_content: Mapped[bool] = mapped_column(default=False)  # the digest carries whole posts, not summaries
    created_at: Mapped[datetime] = mapped_column(default=clock.now)

    topics: Mapped[list[Topic]] = relationship(secondary=FeedTopic.__table__, order_by=Topic.slug)
