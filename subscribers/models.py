"""The subscriber domain: subscribers, their consent history, and suppressed addresses."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Enum, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from mailer import clock
from mailer.db import Base
from mailer.topics.models import SubscriberTopic, Topic


class SubscriberState(str, enum.Enum):
    pending = "pending"            # signed up, not yet confirmed
    confirmed = "confirmed"        # double opt-in done; receives bulk mail unless paused
    unsubscribed = "unsubscribed"  # withdrew consent; never mailed in bulk again


class ConsentAction(str, enum.Enum):
    given = "given"
    confirmed = "confirmed"
    withdrawn = "withdrawn"
    topics_changed = "topics_changed"
    paused = "paused"
    resumed = "resumed"
    imported = "imported"


def _enum(cls):
    return Enum(cls, native_enum=False, length=20, validate_strings=True)


class Subscriber(Base):
    __tablename__ = "subscribers"
    # Links in mail name a subscriber by id, and outlive an erasure: SQLite must never give an erased
    # subscriber's id to the next signup (without AUTOINCREMENT it reuses the highest id), or the old
    # links would open the newcomer's preferences. PostgreSQL sequences never reuse an id anyway.
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)  # normalised by email-validator
    name: Mapped[str] = mapped_column(String(200), default="")
    state: Mapped[SubscriberState] = mapped_column(_enum(SubscriberState), default=SubscriberState.pending)
    is_paused: Mapped[bool] = mapped_column(default=False)
    # Manage links carry it and work while it matches: bumping it revokes every preference and
    # unsubscribe link sent so far. Unsubscribing does not bump it (a repeated one-click POST must still
    # answer 200); erasing deletes the row, and ids are never reused.
    token_version: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    confirmed_at: Mapped[datetime | None]
    unsubscribed_at: Mapped[datetime | None]

    topics: Mapped[list[Topic]] = relationship(secondary=SubscriberTopic.__table__, order_by=Topic.slug)
    consent_events: Mapped[list["ConsentEvent"]] = relationship(
        back_populates="subscriber", order_by="ConsentEvent.id", cascade="all, delete-orphan")

    def __repr__(self) -> str:
        return f"<Subscriber {self.id} {self.state.value}>"


class ConsentEvent(Base):
    """One row per change of consent: the proof GDPR Art. 7 asks for. Never updated, only appended."""

    __tablename__ = "consent_events"
    __table_args__ = (Index("ix_consent_events_subscriber", "subscriber_id", "occurred_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    action: Mapped[ConsentAction] = mapped_column(_enum(ConsentAction))
    consent_text: Mapped[str] = mapped_column(Text, default="")
    privacy_policy_version: Mapped[str] = mapped_column(String(50))
    source: Mapped[str] = mapped_column(String(50), default="web")  # web, cli, import, api, one-click
    form_id: Mapped[str] = mapped_column(String(50), default="")
    ip_address: Mapped[str] = mapped_column(String(45), default="")
    user_agent: Mapped[str] = mapped_column(String(500), default="")
    detail: Mapped[str] = mapped_column(Text, default="")  # e.g. the topic slugs chosen
    occurred_at: Mapped[datetime] = mapped_column(default=clock.now)

    subscriber: Mapped[Subscriber] = relationship(back_populates="consent_events")


class Suppression(Base):
    """An address that must not get bulk mail: unsubscribed, hard-bounced or complained."""

    __tablename__ = "suppressions"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    reason: Mapped[str] = mapped_column(String(30))  # unsubscribed, bounced, complained, erased
    detail: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=clock.now)


class InboxProof(Base):
    """A single-use link mailed to a subscriber's own address before their data is shown or erased.

    Only the hash of the link's random part is kept; it works once, within its hour.
    """

    __tablename__ = "inbox_proofs"

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[str] = mapped_column(String(10))  # data | erase
    nonce_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class RateHit(Base):
    """One counted request for a limit shared by every process (signups per address, per domain...)."""

    __tablename__ = "rate_hits"
    __table_args__ = (Index("ix_rate_hits_key", "scope", "key", "hit_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    scope: Mapped[str] = mapped_column(String(40))  # e.g. signup-ip, signup-domain
    key: Mapped[str] = mapped_column(String(128))   # a keyed hash of the address or domain, not the address
    hit_at: Mapped[datetime] = mapped_column(default=clock.now)
