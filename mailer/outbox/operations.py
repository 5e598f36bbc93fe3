"""Writes to the outbox. Callers add rows inside their own transaction; the worker delivers after commit."""

from __future__ import annotations

from collections.abc import Sequence
from email.message import EmailMessage
from typing import NamedTuple

from sqlalchemy import insert
from sqlalchemy.orm import Session

from mailer.emails import PreparedMessage, prepared
from mailer.outbox.models import BULK_PRIORITY, PERSONAL_PRIORITY, OutboxMessage


def enqueue(session: Session, *, kind: str, message: EmailMessage | PreparedMessage, dedupe_key: str,
            subscriber_id: int | None = None) -> OutboxMessage:
    """Queue a fully built message. It goes out only if the caller's transaction commits.

    One message to one person (a confirmation, a welcome) goes ahead of bulk mail: someone is
    waiting for it now.
    """
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
        priority=PERSONAL_PRIORITY,
    )
    session.add(row)
    return row


class BulkRecipient(NamedTuple):
    """One message of a bulk send, ready for its outbox row."""

    subscriber_id: int
    dedupe_key: str
    message: PreparedMessage


def enqueue_many(session: Session, *, kind: str, send_id: int, recipients: Sequence[BulkRecipient],
                 priority: int = BULK_PRIORITY) -> None:
    """Queue many prebuilt messages of one send in one INSERT: no ORM objects, so a large send stays
    cheap in time and memory. Like `enqueue`, they go out only if the caller's transaction commits;
    the worker claims higher `priority` first."""
    if not recipients:
        return
    session.execute(insert(OutboxMessage), [
        {"kind": kind, "dedupe_key": r.dedupe_key, "recipient": r.message.recipient, "subscriber_id": r.subscriber_id,
         "send_id": send_id, "message_id": r.message.message_id, "subject": r.message.subject,
         "content": r.message.content, "priority": priority}
        for r in recipients])
