"""Writes to the outbox. Callers add rows inside their own transaction; the worker delivers after commit."""

from __future__ import annotations

from email.message import EmailMessage

from sqlalchemy.orm import Session

from mailer.emails import PreparedMessage, prepared
from mailer.outbox.models import OutboxMessage


def enqueue(session: Session, *, kind: str, message: EmailMessage | PreparedMessage, dedupe_key: str,
            subscriber_id: int | None = None) -> OutboxMessage:
    """Queue a fully built message. It goes out only if the caller's transaction commits."""
    if isinstance(message, EmailMessage):
        message = prepared(message)
    row = OutboxMessage(
        kind=kind,
        dedupe_key=dedupe_key,
        recipient=message.recipient,
        subscriber_id=subscriber_id,
        message_id=message.message_id,
        subject=message.subject,
        content=message.content,
    )
    session.add(row)
    return row
