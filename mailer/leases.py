"""Named leases in the database: one holder at a time across every process (e.g. "scheduler").

A holder renews its lease while it runs; a lease past its expiry may be taken by anyone. Taking and
renewing are one conditional UPDATE (or the first INSERT), so two processes asking at the same moment
cannot both win.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta

from sqlalchemy import String, case, delete, or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from mailer import clock
from mailer.db import Base


class Lease(Base):
    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))  # host, process id and start time of the holder
    acquired_at: Mapped[datetime] = mapped_column(default=clock.now)
    expires_at: Mapped[datetime]


def holder_name() -> str:
    """This process, as another one's start-up block shows it: host, process id, start time."""
    return f"{socket.gethostname()} pid {os.getpid()} started {clock.now():%Y-%m-%d %H:%M:%S} UTC"


def take(session: Session, name: str, holder: str, seconds: int) -> tuple[bool, Lease | None]:
    """Take or renew the lease `name` for `seconds`; commit. Returns (True, lease) when `holder` has it
    now, else (False, the other holder's lease)."""
    now = clock.now()
    until = now + timedelta(seconds=seconds)
    # Ours (renew, keeping when we took it) or run out (take over): one statement, so one winner.
    taken = session.execute(
        update(Lease)
        .where(Lease.name == name, or_(Lease.holder == holder, Lease.expires_at < now))
        .values(holder=holder, expires_at=until,
                acquired_at=case((Lease.holder == holder, Lease.acquired_at), else_=now))
    ).rowcount
    if not taken and session.get(Lease, name) is None:
        session.add(Lease(name=name, holder=holder, acquired_at=now, expires_at=until))
        try:
            session.commit()
            taken = 1
        except IntegrityError:  # another process inserted it first: it holds the lease
            session.rollback()
    else:
        session.commit()
    session.expire_all()
    lease = session.get(Lease, name)
    session.commit()
    return bool(taken), lease


def release(session: Session, name: str, holder: str) -> None:
    """Give the lease up (a clean stop), so a standby takes over at its next look, not at expiry; commit."""
    session.execute(delete(Lease).where(Lease.name == name, Lease.holder == holder))
    session.commit()
