"""Writes to the outbox. Callers add rows inside their own transaction; the worker delivers after commit."""

from __future__ import annotations

from datetime import datetime
from email.message import EmailMessage

from sqlalchemy import exists, update
from sqlalchemy.orm import Session

from mailer.sends.models import Send
from mailer.emails import PreparedMessage, prepared
from mailer.errors import OutboxError
from mailer.outbox.models import PERSONAL_PRIORITY, OutboxMessage, OutboxState
from subscribers.models import Suppression


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


def retry_failed(session: Session, send: Send, now: datetime, message_id: int | None = None) -> int:
    """Put a send's failed messages (or the one `message_id`) back in the queue, due now, with their
    attempts reset; return how many. A message of another send, or one that did not fail, is refused."""
    if message_id is not None:
        row = session.get(OutboxMessage, message_id)
        if row is None or row.send_id != send.id:
            raise OutboxError(f"Message {message_id} is not one of this send's messages.")
        if row.state != OutboxState.failed:
            raise OutboxError(f"Message {message_id} to {row.recipient} is {row.state.value}, not failed: "
                              "only a failed message can be retried.")
    where = [OutboxMessage.send_id == send.id, OutboxMessage.state == OutboxState.failed]
    if message_id is not None:
        where.append(OutboxMessage.id == message_id)
    # The state stays in the WHERE: a row changed since it was read is left as it is.
    retried = session.execute(update(OutboxMessage).where(*where).values(
        state=OutboxState.queued, next_attempt_at=now, attempts=0, claimed_at=None, claimed_by=None,
        created_at=now)).rowcount
    if not retried:
        raise OutboxError("Nothing to retry: no message of this send has failed.")
    return retried


def cancel_queued(session: Session, send: Send, now: datetime) -> int:
    """Withdraw a send's messages still waiting in the queue; return how many. Messages a worker has
    claimed or already sent go on as they were."""
    # Only `queued` rows: the worker claims nothing else, and a row it has claimed is no longer queued.
    cancelled = session.execute(update(OutboxMessage).where(
        OutboxMessage.send_id == send.id, OutboxMessage.state == OutboxState.queued)
        .values(state=OutboxState.cancelled)).rowcount
    if not cancelled:
        raise OutboxError("Nothing to cancel: every message of this send has already been sent, "
                          "has failed or was cancelled.")
    send.cancelled_at = now
    return cancelled


def requeue(session: Session, now: datetime, *, failed: bool, send_id: int | None = None,
            since: datetime | None = None) -> int:
    """After an outage: make every message waiting for a retry due now, and with `failed` put the ones
    that failed back in the queue too, each with a fresh `delivery.give_up_after`; return how many.

    `send_id` keeps it to one send, `since` to messages last tried (or queued) from then on. A failed
    message to an address suppressed since (a bounce, an unsubscribe) stays failed.
    """
    states = [OutboxState.queued, OutboxState.failed] if failed else [OutboxState.queued]
    where = [OutboxMessage.state.in_(states), OutboxMessage.attempts > 0]
    if send_id is not None:
        where.append(OutboxMessage.send_id == send_id)
    if since is not None:
        where.append(OutboxMessage.created_at >= since)
    suppressed = exists().where(Suppression.email == OutboxMessage.recipient)
    where.append(~(suppressed & (OutboxMessage.send_id.is_not(None))))
    return session.execute(update(OutboxMessage).where(*where).values(
        state=OutboxState.queued, next_attempt_at=now, attempts=0, claimed_at=None, claimed_by=None,
        created_at=now)).rowcount
