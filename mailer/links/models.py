"""Tracked links of a send and their clicks."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from mailer import clock
from mailer.db import Base


class Link(Base):
    """A link in a send whose clicks are counted: an action link or a 'Read more'."""

    __tablename__ = "links"

    id: Mapped[int] = mapped_column(primary_key=True)
    send_id: Mapped[int] = mapped_column(ForeignKey("sends.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(String(2000))
    label: Mapped[str] = mapped_column(String(300), default="")
    kind: Mapped[str] = mapped_column(String(20), default="read")  # read, or an ActionKind value
    article_id: Mapped[int | None] = mapped_column(ForeignKey("articles.id", ondelete="SET NULL"))


class Click(Base):
    """One click on a tracked link. subscriber_id is empty when per-recipient tracking is off."""

    __tablename__ = "clicks"

    id: Mapped[int] = mapped_column(primary_key=True)
    link_id: Mapped[int] = mapped_column(ForeignKey("links.id", ondelete="CASCADE"), index=True)
    send_id: Mapped[int] = mapped_column(ForeignKey("sends.id", ondelete="CASCADE"), index=True)
    subscriber_id: Mapped[int | None] = mapped_column(ForeignKey("subscribers.id", ondelete="SET NULL"))
    clicked_at: Mapped[datetime] = mapped_column(default=clock.now)
    # A security scanner's fetch, not a reader (every link of one mail within seconds, or a known
    # scanner): shown apart, left out of unique clicks and action rates.
    is_scanner: Mapped[bool] = mapped_column(default=False)

    link: Mapped[Link] = relationship()
