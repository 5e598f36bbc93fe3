"""Digest schedules: when the next digest of new articles goes out."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from mailer import clock
from mailer.db import Base


class DigestSchedule(Base):
    """A recurring digest: a cron expression read in a time zone.

    The scheduler's one-minute job runs every schedule whose next_run_at has come; the slot it ran is
    also the Send's slot_key, so a slot run twice still sends one digest.
    """

    __tablename__ = "digest_schedules"

    id: Mapped[int] = mapped_column(primary_key=True)
    cron: Mapped[str] = mapped_column(String(100))  # as the editor typed it, e.g. "0 9 * * MON"
    timezone: Mapped[str] = mapped_column(String(64))  # an IANA name, e.g. "Europe/London"
    next_run_at: Mapped[datetime] = mapped_column(index=True)  # the next slot, in UTC
    last_run_at: Mapped[datetime | None]  # the last slot run (a digest sent, or nothing new)
    is_paused: Mapped[bool] = mapped_column(default=False)  # skipped until resumed; no slot is made up
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
