"""A send's messages built when they are sent: a variant's render, filled in for one reader.

The outbox holds ids for a send's rows; the worker asks a Builder for the bytes of each row just
before it hands them to the relay. Each reader's tokens are signed then, with their token version of
that moment, and the Message-ID is derived from the send and the reader, so a retry repeats it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailer import emails
from mailer.config import Config
from mailer.digests.compose import Placeholders
from mailer.links import tokens as link_tokens
from mailer.links.models import Link
from mailer.links.queries import OPEN
from mailer.outbox.models import OutboxMessage
from mailer.sends import message_ids
from mailer.sends.models import Send, SendVariant
from mailer.sends.queries import Recipient
from subscribers import tokens as subscriber_tokens
from subscribers.models import Subscriber


def recipient_values(config: Config, send_id: int, subscriber: Recipient,
                     open_link_id: int | None) -> Callable[[str], str]:
    """The per-recipient value of each placeholder; each link token is signed once per recipient."""
    recipient_id = subscriber.id if config["tracking"]["per_recipient"] else None
    values = subscriber_tokens.links(subscriber)
    if open_link_id is not None:
        values["open_pixel_url"] = emails.absolute_url(
            config, f"/o/{link_tokens.make(send_id, open_link_id, recipient_id)}")

    def value_of(name: str) -> str:
        if name not in values:
            values[name] = tracked_url(config, send_id, name, recipient_id)
        return values[name]

    return value_of


def tracked_url(config: Config, send_id: int, name: str, recipient_id: int | None) -> str:
    link_id = int(name.removeprefix("link-"))
    return emails.absolute_url(config, f"/l/{link_tokens.make(send_id, link_id, recipient_id)}")


def message_id(config: Config, secret: str, send_id: int, subscriber_id: int) -> str:
    """The Message-ID of one reader's copy of a send: the same on every attempt, opaque to readers, and
    read back by the bounce reader (`message_ids.read`)."""
    return f"<{message_ids.local_part(secret, send_id, subscriber_id)}@{emails.sender_domain(config)}>"


class Builder:
    """Builds the bytes of a send's outbox rows; keeps each variant's BulkMessage for its lifetime.

    Make one per delivery pass: a BulkMessage carries the Date it was made.
    """

    def __init__(self, config: Config, secret: str):
        self.config, self.secret = config, secret
        self._messages: dict[int, tuple[int, emails.BulkMessage]] = {}  # variant id -> (send id, message)
        self._open_links: dict[int, int | None] = {}  # send id -> its open pixel's link id

    def build(self, session: Session, rows: Iterable[OutboxMessage]) -> dict[int, emails.PreparedMessage | None]:
        """The message for each row of a send (by row id); None for a row whose reader is gone (erased)."""
        rows = [row for row in rows if row.variant_id is not None]
        self._load_variants(session, {row.variant_id for row in rows} - self._messages.keys())
        readers = {subscriber_id: (name, version) for subscriber_id, name, version in session.execute(
            select(Subscriber.id, Subscriber.name, Subscriber.token_version)
            .where(Subscriber.id.in_({row.subscriber_id for row in rows if row.subscriber_id is not None})))}
        built: dict[int, emails.PreparedMessage | None] = {}
        for row in rows:
            reader = readers.get(row.subscriber_id)
            if reader is None:
                built[row.id] = None
                continue
            name, version = reader
            send_id, message = self._messages[row.variant_id]
            fill = recipient_values(self.config, send_id, Recipient(row.subscriber_id, row.recipient, name, version,
                                                                    frozenset()), self._open_link(session, send_id))
            built[row.id] = message.personal(
                to=row.recipient, to_name=name, unsubscribe_url=fill("unsubscribe_url"), values=fill,
                message_id=message_id(self.config, self.secret, send_id, row.subscriber_id))
        return built

    def _load_variants(self, session: Session, variant_ids: set[int]) -> None:
        if not variant_ids:
            return
        rows = session.execute(select(SendVariant, Send.kind).join(Send, Send.id == SendVariant.send_id)
                               .where(SendVariant.id.in_(variant_ids)))
        for variant, kind in rows:
            self._messages[variant.id] = (variant.send_id, emails.BulkMessage(
                self.config, subject=variant.subject, text=variant.text, html=variant.html,
                slot=Placeholders(variant.placeholder).pattern,
                feedback=emails.feedback_id(kind.value, variant.send_id)))

    def _open_link(self, session: Session, send_id: int) -> int | None:
        if send_id not in self._open_links:
            self._open_links[send_id] = None if not self.config["tracking"]["opens"] else session.scalar(
                select(Link.id).where(Link.send_id == send_id, Link.kind == OPEN))
        return self._open_links[send_id]
