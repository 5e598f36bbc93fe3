"""Named leases in the database: one holder at a time across every process (e.g. "scheduler").

A holder renews its lease while it runs; a lease past its expiry may be taken by anyone.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from mailer import clock
from mailer.db import Base


class Lease(Base):
    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))  # host, process id and start time of the holder
    acquired_at: Mapped[datetime] = mapped_column(default=clock.now)
    expires_at: Mapped[datetime]
