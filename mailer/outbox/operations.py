"""Writes to the outbox. Callers add rows inside their own transaction; the worker delivers after commit."""

from __future__ import annotations

from email.message import EmailMessage

from sqlalchemy.orm import Session

from mailer.outbox.models import OutboxMessage


def enqueue(session: Session, *, kind: str, message: EmailMessage, dedupe_key: str,
            subscriber_id: int | None = None) -> OutboxMessage:
    """Queue a fully built message. It goes out only if the caller's transaction commits."""
    recipient = message["To"].addresses[0].addr_spec
    row = OutboxMessage(
        kind=kind,
        dedupe_key=dedupe_key,
        recipient=recipient,
        subscriber_id=subscriber_id,
        message_id=str(message["Message-ID"]),
        subject=str(message["Subject"]),
        content=message.as_bytes(),
    )
    session.add(row)
    return row
