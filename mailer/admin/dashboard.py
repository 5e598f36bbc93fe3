"""The dashboard: who is subscribed, how signups go, what was sent and how it did, what comes next."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from flask import Blueprint, render_template
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailer import clock, db
from mailer.sends import queries as send_queries
from mailer.digests import schedules
from mailer.links import queries as link_queries
from mailer.outbox.models import OutboxMessage, OutboxState
from mailer.topics.models import SubscriberTopic, Topic
from subscribers.models import Subscriber, SubscriberState

blueprint = Blueprint("dashboard", __name__, url_prefix="/dashboard")

SIGNUP_DAYS = 30
RECENT_SENDS = 10


@dataclass(frozen=True)
class SendRow:
    id: int
    kind: str
    subject: str
    created_at: object
    recipients: int
    delivered: int
    failed: int
    unique_clicks: int


@dataclass(frozen=True)
class Bar:
    day: date
    count: int
    x: float
    height: float


def subscribers_by_state(session: Session) -> dict[str, int]:
    counts = dict(session.execute(select(Subscriber.state, func.count()).group_by(Subscriber.state)).all())
    return {state.value: counts.get(state, 0) for state in SubscriberState}


def followers_by_topic(session: Session) -> list[tuple[Topic, int]]:
    """Each topic with how many confirmed readers follow it."""
    followers = (select(SubscriberTopic.topic_id, func.count().label("n"))
                 .join(Subscriber, Subscriber.id == SubscriberTopic.subscriber_id)
                 .where(Subscriber.state == SubscriberState.confirmed)
                 .group_by(SubscriberTopic.topic_id).subquery())
    rows = session.execute(select(Topic, func.coalesce(followers.c.n, 0))
                           .outerjoin(followers, followers.c.topic_id == Topic.id).order_by(Topic.title))
    return [(topic, count) for topic, count in rows]


def signups_per_day(session: Session, days: int = SIGNUP_DAYS) -> list[tuple[date, int]]:
    """Signups on each of the last `days` days (UTC), oldest first, days without any included."""
    today = clock.now().date()
    first = today - timedelta(days=days - 1)
    per_day = {day: 0 for day in (first + timedelta(n) for n in range(days))}
    since = clock.now() - timedelta(days=days)
    # Counted in Python: a month of signup times is small, and SQLite and PostgreSQL truncate dates differently.
    for created_at in session.scalars(select(Subscriber.created_at).where(Subscriber.created_at >= since)):
        if created_at.date() in per_day:
            per_day[created_at.date()] += 1
    return list(per_day.items())


def chart_bars(days: list[tuple[date, int]], width: float = 600, height: float = 120) -> list[Bar]:
    """Bar geometry for an inline SVG chart (no script, so the page's CSP stays closed)."""
    top = max((count for _, count in days), default=0) or 1
    step = width / max(len(days), 1)
    return [Bar(day, count, round(n * step + 1, 1), round(count / top * (height - 16), 1))
            for n, (day, count) in enumerate(days)]


def recent_sends(session: Session) -> list[SendRow]:
    rows = []
    for send in send_queries.recent_sends(session, RECENT_SENDS):
        counts = send_queries.delivery_counts(session, send.id)
        rows.append(SendRow(send.id, send.kind.value, send.subject, send.created_at, send.recipients_count,
                            counts.get("sent", 0), counts.get("failed", 0),
                            link_queries.unique_clickers(session, send.id)))
    return rows


def outbox_counts(session: Session) -> dict[str, int]:
    counts = dict(session.execute(select(OutboxMessage.state, func.count()).where(
        OutboxMessage.state.in_([OutboxState.queued, OutboxState.sending, OutboxState.failed]))
        .group_by(OutboxMessage.state)).all())
    return {state.value: counts.get(state, 0) for state in (OutboxState.queued, OutboxState.sending,
                                                             OutboxState.failed)}


def index():
    session = db.session
    signups = signups_per_day(session)
    return render_template(
        "admin/dashboard.html", by_state=subscribers_by_state(session), by_topic=followers_by_topic(session),
        signups=signups, bars=chart_bars(signups), signups_total=sum(count for _, count in signups),
        sends=recent_sends(session), schedules=schedules.all_schedules(session), outbox=outbox_counts(session))


blueprint.add_url_rule("/", "index", index, methods=["GET"])
