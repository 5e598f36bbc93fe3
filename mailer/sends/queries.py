"""Reads for sends: who gets one, what was sent, how it went, the archive."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta
from itertools import groupby
from operator import itemgetter

from sqlalchemy import distinct, exists, func, select
from sqlalchemy.orm import Session

from mailer.sends.models import Send
from mailer.links.models import Link
from mailer.outbox.models import OutboxMessage, OutboxState
from mailer.topics.models import SubscriberTopic, Topic
from subscribers.models import Subscriber, SubscriberState, Suppression

# What operations.slugify makes: lower-case ASCII letters, digits and hyphens.
_SLUG = re.compile(r"[a-z0-9-]+")


@dataclass(frozen=True)
class Recipient:
    """What queueing needs of a subscriber: the address, the name, the link token version, the topics."""

    id: int
    email: str
    name: str
    token_version: int
    topic_slugs: frozenset[str]


def eligible_subscribers(session: Session) -> list[Recipient]:
    """Who gets bulk mail: confirmed, not paused, and whose address is not suppressed.

    One query, subscribers joined to their topics, and plain rows rather than ORM objects: for a
    large list, loading and tracking Subscriber objects cost more than queueing the mail.
    """
    suppressed = exists().where(Suppression.email == Subscriber.email)
    rows = session.execute(
        select(Subscriber.id, Subscriber.email, Subscriber.name, Subscriber.token_version, Topic.slug)
        .outerjoin(SubscriberTopic, SubscriberTopic.subscriber_id == Subscriber.id)
        .outerjoin(Topic, Topic.id == SubscriberTopic.topic_id)
        .where(Subscriber.state == SubscriberState.confirmed, Subscriber.is_paused.is_(False), ~suppressed)
        .order_by(Subscriber.id))
    recipients: list[Recipient] = []
    for subscriber_id, same_subscriber in groupby(rows, key=itemgetter(0)):
        rows_of_one = list(same_subscriber)
        _, email, name, token_version, _ = rows_of_one[0]
        slugs = frozenset(slug for *_, slug in rows_of_one if slug is not None)
        recipients.append(Recipient(subscriber_id, email, name, token_version, slugs))
    return recipients


def by_topic_set(recipients: list[Recipient]) -> dict[frozenset[str], list[Recipient]]:
    """Recipients grouped by the topics they follow (the empty set: everything)."""
    groups: dict[frozenset[str], list[Recipient]] = defaultdict(list)
    for recipient in recipients:
        groups[recipient.topic_slugs].append(recipient)
    return dict(groups)


def links_of(session: Session, send_id: int) -> list[Link]:
    return list(session.scalars(select(Link).where(Link.send_id == send_id).order_by(Link.id)))


def already_queued(session: Session, send_id: int) -> set[int]:
    """Subscriber ids that already have this send in the outbox."""
    return set(session.scalars(select(OutboxMessage.subscriber_id).where(OutboxMessage.send_id == send_id)))


def send_by_form_key(session: Session, form_key: str) -> Send | None:
    """The send a workspace form made, if it made one."""
    return session.scalar(select(Send).where(Send.form_key == form_key))


def get_send(session: Session, send_id: int) -> Send | None:
    return session.get(Send, send_id)


def archived_sends(session: Session, limit: int | None = None) -> list[Send]:
    """Sends that went out (queued), newest first: the public archive."""
    query = select(Send).where(Send.queued_at.is_not(None)).order_by(Send.queued_at.desc(), Send.id.desc())
    if limit:
        query = query.limit(limit)
    return list(session.scalars(query))


def archived_send(session: Session, slug: str) -> Send | None:
    """The sent digest at /archive/<slug>, or None (also for a slug no digest could have, such as one
    holding NUL, which PostgreSQL refuses even to compare)."""
    if not _SLUG.fullmatch(slug):
        return None
    return session.scalar(select(Send).where(Send.slug == slug, Send.queued_at.is_not(None)))


def recent_sends(session: Session, limit: int = 20) -> list[Send]:
    return list(session.scalars(select(Send).order_by(Send.id.desc()).limit(limit)))


def sends_page(session: Session, limit: int, offset: int = 0) -> list[Send]:
    """Digests and alerts, newest first, a page at a time."""
    return list(session.scalars(select(Send).order_by(Send.created_at.desc(), Send.id.desc())
                                .limit(limit).offset(offset)))


def failed_messages(session: Session, send_id: int) -> list[OutboxMessage]:
    """A send's messages that failed, with the relay's last reply, oldest first."""
    return list(session.scalars(select(OutboxMessage).where(
        OutboxMessage.send_id == send_id, OutboxMessage.state == OutboxState.failed).order_by(OutboxMessage.id)))


def unsubscribed_after(session: Session, send: Send, within: timedelta) -> int:
    """Readers who were sent this send and unsubscribed within `within` after it was queued."""
    if send.queued_at is None:
        return 0
    return session.scalar(
        select(func.count(distinct(Subscriber.id)))
        .join(OutboxMessage, OutboxMessage.subscriber_id == Subscriber.id)
        .where(OutboxMessage.send_id == send.id, OutboxMessage.state == OutboxState.sent,
               Subscriber.unsubscribed_at >= send.queued_at,
               Subscriber.unsubscribed_at <= send.queued_at + within)) or 0


def delivery_counts(session: Session, send_id: int) -> dict[str, int]:
    """Outbox rows of a send by state: queued, sending, sent, failed, cancelled."""
    rows = session.execute(select(OutboxMessage.state, func.count())
                           .where(OutboxMessage.send_id == send_id).group_by(OutboxMessage.state))
    return {state.value: count for state, count in rows}
