"""Reads for sends: who gets one, what was sent, how it went, the archive."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import groupby
from operator import itemgetter

from sqlalchemy import distinct, exists, func, insert, literal, literal_column, select, text
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.orm import Session, aliased

from mailer.db import UTCDateTime
from mailer.sends.models import Send, SendVariant
from mailer.links.models import Link
from mailer.outbox.models import OutboxMessage, OutboxState
from mailer.topics.models import SubscriberTopic, Topic
from subscribers.models import Subscriber, SubscriberState, Suppression

# What operations.slugify makes: lower-case ASCII letters, digits and hyphens.
_SLUG = re.compile(r"[a-z0-9-]+")


def _eligible() -> tuple:
    """Who gets bulk mail: confirmed, not paused, and whose address is not suppressed."""
    return (Subscriber.state == SubscriberState.confirmed, Subscriber.is_paused.is_(False),
            ~exists().where(Suppression.email == Subscriber.email))


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
    rows = session.execute(
        select(Subscriber.id, Subscriber.email, Subscriber.name, Subscriber.token_version, Topic.slug)
        .outerjoin(SubscriberTopic, SubscriberTopic.subscriber_id == Subscriber.id)
        .outerjoin(Topic, Topic.id == SubscriberTopic.topic_id)
        .where(*_eligible())
        .order_by(Subscriber.id))
    recipients: list[Recipient] = []
    for subscriber_id, same_subscriber in groupby(rows, key=itemgetter(0)):
        rows_of_one = list(same_subscriber)
        _, email, name, token_version, _ = rows_of_one[0]
        slugs = frozenset(slug for *_, slug in rows_of_one if slug is not None)
        recipients.append(Recipient(subscriber_id, email, name, token_version, slugs))
    return recipients


def _topic_keys(session: Session):
    """Per subscriber who follows topics: their slugs, sorted and comma-joined ("topic key")."""
    if session.get_bind().dialect.name == "postgresql":
        key = func.string_agg(Topic.slug, aggregate_order_by(literal_column("','"), Topic.slug))
        return (select(SubscriberTopic.subscriber_id.label("subscriber_id"), key.label("topic_key"))
                .join(Topic, Topic.id == SubscriberTopic.topic_id)
                .group_by(SubscriberTopic.subscriber_id).subquery("topic_keys"))
    # SQLite (3.40) has no ORDER BY inside an aggregate; group_concat keeps the order of an ordered
    # subquery. Nothing relies on that for correctness: a key is only ever compared with keys this
    # same query wrote, and queue() finds anyone the join missed.
    ordered = (select(SubscriberTopic.subscriber_id, Topic.slug).join(Topic, Topic.id == SubscriberTopic.topic_id)
               .order_by(SubscriberTopic.subscriber_id, Topic.slug).subquery("ordered_topics"))
    return (select(ordered.c.subscriber_id.label("subscriber_id"),
                   func.group_concat(ordered.c.slug, ",").label("topic_key"))
            .group_by(ordered.c.subscriber_id).subquery("topic_keys"))


# PostgreSQL's statistics are refreshed before a send is planned when more than this share of a
# table's rows changed since its last ANALYZE (autovacuum's own default threshold is 10%).
STALE_STATISTICS = 0.1
_PLANNED_TABLES = ("subscribers", "subscriber_topics", "suppressions")


def _fresh_statistics(session: Session) -> None:
    """ANALYZE the tables a send reads, on PostgreSQL, when they changed much since they were last
    analyzed (a CSV import of the whole list, a bulk insert): autovacuum gets there within a minute or
    so, but a digest sent before then was planned for a table of 23 readers, a nested loop of each
    subscriber over every topic key (100k readers: 195 s to count them, 0.16 s after an ANALYZE)."""
    if session.get_bind().dialect.name != "postgresql":
        return  # SQLite plans these joins well without statistics
    stale = session.scalars(text(
        "SELECT relname FROM pg_stat_user_tables WHERE relname = ANY(:tables) "
        "AND n_mod_since_analyze > greatest(50, :share * n_live_tup)"),
        {"tables": list(_PLANNED_TABLES), "share": STALE_STATISTICS}).all()
    if stale:
        session.execute(text("ANALYZE " + ", ".join(sorted(stale))))


def eligible_keyed(session: Session):
    """Eligible subscribers (as eligible_subscribers) as a subquery: id, email and topic_key ("" = all)."""
    _fresh_statistics(session)
    keys = _topic_keys(session)
    return (select(Subscriber.id.label("id"), Subscriber.email.label("email"),
                   func.coalesce(keys.c.topic_key, "").label("topic_key"))
            .outerjoin(keys, keys.c.subscriber_id == Subscriber.id)
            .where(*_eligible())
            .subquery("eligible"))


def topic_set_of(topic_key: str) -> frozenset[str]:
    return frozenset(slug for slug in topic_key.split(",") if slug)


def topic_keys(session: Session) -> list[str]:
    """The distinct topic keys among eligible subscribers."""
    eligible = eligible_keyed(session)
    return list(session.scalars(select(eligible.c.topic_key).distinct()))


def readers_per_topic_key(session: Session) -> list[tuple[str, int]]:
    """Eligible subscribers counted per topic key."""
    eligible = eligible_keyed(session)
    return [(key, count) for key, count in session.execute(
        select(eligible.c.topic_key, func.count()).group_by(eligible.c.topic_key))]


def fan_out(session: Session, send: Send, *, priority: int, now: datetime, skip=None) -> None:
    """Queue `send` to every eligible subscriber whose topic key has a variant, in one INSERT … SELECT.

    Each row holds ids and state only; readers who already have a row of this send, or whose id
    `skip` (a SELECT of subscriber ids) returns, are left out. (Drivers do not all report how many
    rows an INSERT … SELECT added: count them with variant_counts.)
    """
    eligible = eligible_keyed(session)
    queued = aliased(OutboxMessage)
    rows = (select(literal(send.kind.value), literal(send.id), SendVariant.id, eligible.c.id, eligible.c.email,
                   literal(""), literal(OutboxState.queued.value), literal(priority), literal(0), literal(""),
                   literal(now, UTCDateTime()), literal(now, UTCDateTime()))
            .select_from(eligible)
            .join(SendVariant, (SendVariant.send_id == send.id) & (SendVariant.topic_key == eligible.c.topic_key))
            .where(~exists().where(queued.send_id == send.id, queued.subscriber_id == eligible.c.id)))
    if skip is not None:
        rows = rows.where(eligible.c.id.not_in(skip))
    columns = ["kind", "send_id", "variant_id", "subscriber_id", "recipient", "subject", "state", "priority",
               "attempts", "last_error", "created_at", "next_attempt_at"]
    session.execute(insert(OutboxMessage).from_select(columns, rows))


def unqueued_keys(session: Session, send_id: int, skip=None) -> set[str]:
    """Topic keys of eligible subscribers who have no row of this send (and are not skipped)."""
    eligible = eligible_keyed(session)
    query = (select(eligible.c.topic_key).distinct()
             .where(~exists().where(OutboxMessage.send_id == send_id, OutboxMessage.subscriber_id == eligible.c.id)))
    if skip is not None:
        query = query.where(eligible.c.id.not_in(skip))
    return set(session.scalars(query))


def variant_counts(session: Session, send_id: int) -> dict[int, int]:
    """Outbox rows of a send per variant."""
    return dict(session.execute(select(OutboxMessage.variant_id, func.count())
                                .where(OutboxMessage.send_id == send_id, OutboxMessage.variant_id.is_not(None))
                                .group_by(OutboxMessage.variant_id)).all())


def digest_number(session: Session, send: Send) -> int:
    """How many digests there have been up to this one, this one included: its issue number."""
    return session.scalar(select(func.count()).select_from(Send)
                          .where(Send.kind == send.kind, Send.id <= send.id)) or 0


def variant_of(session: Session, send_id: int, variant_id: int) -> SendVariant | None:
    """A variant of this send (None for another send's, or an id no row could have)."""
    if not 0 < variant_id < 2**31:
        return None
    variant = session.get(SendVariant, variant_id)
    return variant if variant is not None and variant.send_id == send_id else None


def links_of(session: Session, send_id: int) -> list[Link]:
    return list(session.scalars(select(Link).where(Link.send_id == send_id).order_by(Link.id)))


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
    """Readers who were sent this send and unsubscribed within `within` after it was queued (as counted
    when retention deleted its rows, once it has)."""
    if send.queued_at is None:
        return 0
    reduced = json.loads(send.reduced_counts or "{}")
    if "unsubscribed_7d" in reduced and within == timedelta(days=7):
        return reduced["unsubscribed_7d"]
    return session.scalar(
        select(func.count(distinct(Subscriber.id)))
        .join(OutboxMessage, OutboxMessage.subscriber_id == Subscriber.id)
        .where(OutboxMessage.send_id == send.id, OutboxMessage.state == OutboxState.sent,
               Subscriber.unsubscribed_at >= send.queued_at,
               Subscriber.unsubscribed_at <= send.queued_at + within)) or 0


def delivery_counts(session: Session, send_id: int) -> dict[str, int]:
    """Outbox rows of a send by state: queued, sending, sent, failed, cancelled (with the rows
    retention has deleted since)."""
    rows = session.execute(select(OutboxMessage.state, func.count())
                           .where(OutboxMessage.send_id == send_id).group_by(OutboxMessage.state))
    counts = {state.value: count for state, count in rows}
    reduced = json.loads(session.scalar(select(Send.reduced_counts).where(Send.id == send_id)) or "{}")
    for state in OutboxState:
        if reduced.get(state.value):
            counts[state.value] = counts.get(state.value, 0) + reduced[state.value]
    return counts
