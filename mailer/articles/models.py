"""Articles and their calls to act. Stored once per feed GUID or canonical URL; re-import updates."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Enum, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from mailer import clock
from mailer.db import Base
from mailer.topics.models import Topic


class ActionKind(str, enum.Enum):
    petition = "petition"
    donate = "donate"
    letter = "letter"
    call = "call"
    event = "event"
    other = "other"


class ArticleTopic(Base):
    __tablename__ = "article_topics"

    article_id: Mapped[int] = mapped_column(ForeignKey("articles.id", ondelete="CASCADE"), primary_key=True)
    topic_id: Mapped[int] = mapped_column(ForeignKey("topics.id", ondelete="CASCADE"), primary_key=True)


class Article(Base):
    __tablename__ = "articles"

    id: Mapped[int] = mapped_column(primary_key=True)
    guid: Mapped[str] = mapped_column(String(500), unique=True)  # feed GUID, or the canonical URL, or file:<slug>
    canonical_url: Mapped[str | None] = mapped_column(String(2000))
    slug: Mapped[str] = mapped_column(String(200), unique=True)
    title: Mapped[str] = mapped_column(String(500))
    summary: Mapped[str] = mapped_column(Text, default="")
    body_source: Mapped[str] = mapped_column(Text, default="")  # Markdown as written
    body_html: Mapped[str] = mapped_column(Text, default="")    # rendered and sanitised with nh3
    image_url: Mapped[str] = mapped_column(String(2000), default="")
    image_alt: Mapped[str] = mapped_column(String(500), default="")  # from the feed; the title when empty
    author: Mapped[str] = mapped_column(String(200), default="")
    published_at: Mapped[datetime] = mapped_column(index=True)
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    updated_at: Mapped[datetime] = mapped_column(default=clock.now, onupdate=clock.now)
    # Held back by an editor: the next digest leaves it out, a later one carries it once released.
    is_held: Mapped[bool] = mapped_column(default=False)
    # Withdrawn by an editor: no digest or alert carries it (sends that already did keep it).
    unpublished_at: Mapped[datetime | None]
    feed_id: Mapped[int | None] = mapped_column(ForeignKey("feeds.id", ondelete="SET NULL"))
    # An editor changed the action links by hand: later polls of the feed keep them as they are.
    actions_edited: Mapped[bool] = mapped_column(default=False)

    topics: Mapped[list[Topic]] = relationship(secondary=ArticleTopic.__table__, order_by=Topic.slug)
    actions: Mapped[list["ActionLink"]] = relationship(
        back_populates="article", order_by="ActionLink.position", cascade="all, delete-orphan")

    def __repr__(self) -> str:
        return f"<Article {self.id} {self.slug}>"


class ActionLink(Base):
    """A call to act at the end of an article: sign the petition, donate, write to your MP."""

    __tablename__ = "action_links"

    id: Mapped[int] = mapped_column(primary_key=True)
    article_id: Mapped[int] = mapped_column(ForeignKey("articles.id", ondelete="CASCADE"), index=True)
    label: Mapped[str] = mapped_column(String(300))
    url: Mapped[str] = mapped_column(String(2000))
    kind: Mapped[ActionKind] = mapped_column(
        Enum(ActionKind, native_enum=False, length=20, validate_strings=True), default=ActionKind.other)
    position: Mapped[int] = mapped_column(default=0)

    article: Mapped[Article] = relationship(back_populates="actions")
