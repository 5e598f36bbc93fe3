"""Bounces and complaints read back from the bounce mailbox or a relay's webhook."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from mailer import clock
from mailer.db import Base


class BounceEvent(Base):
    """One bounce or complaint for a subscriber. Soft bounces are scored from these rows."""

    __tablename__ = "bounce_events"
    __table_args__ = (Index("ix_bounce_events_subscriber", "subscriber_id", "received_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int | None] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    send_id: Mapped[int | None] = mapped_column(ForeignKey("sends.id", ondelete="SET NULL"), index=True)
    kind: Mapped[str] = mapped_column(String(12))  # hard | soft | complaint
    source: Mapped[str] = mapped_column(String(20), default="")  # maildir, imap, ses, postmark
    detail: Mapped[str] = mapped_column(String(500), default="")  # status code and diagnostic, no address
    received_at: Mapped[datetime] = mapped_column(default=clock.now)
