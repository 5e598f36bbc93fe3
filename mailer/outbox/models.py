"""The outbox: one row per message, written in the same transaction as its cause, delivered after commit."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Enum, ForeignKey, Index, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from mailer import clock
from mailer.db import Base


class OutboxState(str, enum.Enum):
    queued = "queued"    # waiting for its next_attempt_at
    sending = "sending"  # claimed by a worker (claimed_at); reclaimed after the lease if that worker died
    sent = "sent"        # accepted by the relay (or written to the Maildir)
    failed = "failed"    # permanent failure, or out of attempts; last_error says why
    cancelled = "cancelled"  # withdrawn by an editor before it was sent


# Claim order, higher first (then oldest due first): mail a person is waiting for, then an urgent
# alert, then digests. An alert queued while a large digest drains overtakes the digest's rows.
PERSONAL_PRIORITY = 20
URGENT_PRIORITY = 10
BULK_PRIORITY = 0


class OutboxMessage(Base):
    __tablename__ = "outbox"
    # The worker's claim reads this index in its order: due rows of a state, highest priority first.
    __table_args__ = (Index("ix_outbox_due", "state", "priority", "next_attempt_at"),
                      # One message of a send per reader (bulk rows have no dedupe key).
                      UniqueConstraint("send_id", "subscriber_id", name="uq_outbox_send_subscriber"))

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(30))  # confirmation, welcome, digest, alert
    # Makes "nothing doubled" a constraint for one-off mail, e.g. confirm:<subscriber id>:<n>. A send's
    # rows have none: (send_id, subscriber_id) is unique instead.
    dedupe_key: Mapped[str | None] = mapped_column(String(120), unique=True)
    recipient: Mapped[str] = mapped_column(String(254))
    subscriber_id: Mapped[int | None] = mapped_column(ForeignKey("subscribers.id", ondelete="SET NULL"), index=True)
    send_id: Mapped[int | None] = mapped_column(ForeignKey("sends.id", ondelete="CASCADE"))
    # A send's rows: the variant the worker builds the message from when it sends (no bytes kept here).
    variant_id: Mapped[int | None] = mapped_column(ForeignKey("send_variants.id", ondelete="CASCADE"))
    # One-off mail's Message-ID; a send's rows derive theirs from the ids, so a retry repeats it.
    message_id: Mapped[str | None] = mapped_column(String(250), unique=True)
    subject: Mapped[str] = mapped_column(String(500), default="")
    # One-off mail as it goes on the wire (confirmation, welcome, test); None for a send's rows.
    content: Mapped[bytes | None] = mapped_column(LargeBinary)
    state: Mapped[OutboxState] = mapped_column(
        Enum(OutboxState, native_enum=False, length=10, validate_strings=True), default=OutboxState.queued)
    priority: Mapped[int] = mapped_column(default=BULK_PRIORITY)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    next_attempt_at: Mapped[datetime] = mapped_column(default=clock.now)
    claimed_at: Mapped[datetime | None]
    # The worker pass holding the claim: results are written only under it, so a row another worker
    # took over is never recorded (or sent) by both.
    claimed_by: Mapped[str | None] = mapped_column(String(40))
    sent_at: Mapped[datetime | None]

    def __repr__(self) -> str:
        return f"<OutboxMessage {self.id} {self.kind} {self.state.value}>"
