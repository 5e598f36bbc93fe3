"""Sends: one row per digest or alert that goes out, with the articles it carried."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Enum, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from mailer import clock
from mailer.articles.models import Article
from mailer.db import Base
from mailer.topics.models import Topic


class SendKind(str, enum.Enum):
    digest = "digest"
    alert = "alert"


class SendArticle(Base):
    """An article carried by a send. A digest never carries an article a previous digest carried."""

    __tablename__ = "send_articles"

    send_id: Mapped[int] = mapped_column(ForeignKey("sends.id", ondelete="CASCADE"), primary_key=True)
    article_id: Mapped[int] = mapped_column(ForeignKey("articles.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(default=0)


class SendTopic(Base):
    """A topic an alert was addressed to: its followers, and readers who follow every topic, got it."""

    __tablename__ = "send_topics"

    send_id: Mapped[int] = mapped_column(ForeignKey("sends.id", ondelete="CASCADE"), primary_key=True)
    topic_id: Mapped[int] = mapped_column(ForeignKey("topics.id", ondelete="CASCADE"), primary_key=True)


class Send(Base):
    __tablename__ = "sends"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[SendKind] = mapped_column(Enum(SendKind, native_enum=False, length=10, validate_strings=True))
    slug: Mapped[str] = mapped_column(String(200), unique=True)  # /archive/<slug>
    # Makes "one digest per schedule slot" a constraint, e.g. schedule:3:2026-11-23T09:00Z.
    slot_key: Mapped[str | None] = mapped_column(String(120), unique=True)
    subject: Mapped[str] = mapped_column(String(500))
    preheader: Mapped[str] = mapped_column(String(500), default="")
    archive_html: Mapped[str] = mapped_column(Text, default="")  # the web version, without personal tokens
    archive_text: Mapped[str] = mapped_column(Text, default="")
    window_start_at: Mapped[datetime | None]
    window_end_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    queued_at: Mapped[datetime | None]
    recipients_count: Mapped[int] = mapped_column(default=0)
    editor_note: Mapped[str] = mapped_column(Text, default="")  # shown at the top of a digest
    # One send per submitted workspace form: a double click or a resubmitted "send now" finds this row.
    form_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("editors.id", ondelete="SET NULL"))
    cancelled_at: Mapped[datetime | None]  # its rows not yet sent were withdrawn
    # Outbox rows past `delivery.keep_days` are deleted and counted here (JSON: state -> rows, and the
    # readers who unsubscribed within a week), so the send's figures stay as they were.
    reduced_counts: Mapped[str] = mapped_column(Text, default="")

    articles: Mapped[list[Article]] = relationship(secondary=SendArticle.__table__, order_by=SendArticle.position)
    # An alert's audience (a digest has none: each reader gets the articles in the topics they follow).
    topics: Mapped[list[Topic]] = relationship(secondary=SendTopic.__table__, order_by=Topic.slug)


class SendVariant(Base):
    """A send rendered once for the readers of one topic set: subject, text and HTML with placeholders.

    The outbox rows of a send hold ids only; the worker fills a variant's placeholders (each reader's
    links and tokens) when it sends. `topic_key` is the followed topics' slugs as the fan-out query
    writes them (comma-separated, "" = every topic): that query joins readers to variants by it.
    """

    __tablename__ = "send_variants"

    id: Mapped[int] = mapped_column(primary_key=True)
    send_id: Mapped[int] = mapped_column(ForeignKey("sends.id", ondelete="CASCADE"), index=True)
    topic_key: Mapped[str] = mapped_column(Text, default="")
    subject: Mapped[str] = mapped_column(String(500))
    text: Mapped[str] = mapped_column(Text)
    html: Mapped[str] = mapped_column(Text)
    placeholder: Mapped[str] = mapped_column(String(40))  # the token of the slots in text and html
    recipients_count: Mapped[int] = mapped_column(default=0)
