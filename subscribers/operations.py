"""Verbs that change a subscriber. Each records a consent event and queues its mail in the same transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from email_validator import EmailNotValidError, validate_email
from flask import current_app
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from mailer import clock, emails
from mailer.config import Config
from mailer.errors import SubscriberError
from mailer.outbox.models import OutboxMessage
from mailer.outbox.operations import enqueue
from mailer.topics.models import Topic
from subscribers import copy, tokens
from subscribers.models import ConsentAction, ConsentEvent, Subscriber, SubscriberState, Suppression

MAX_EMAIL = 254
MAX_NAME = 200
# Mail that answers a signup; capped per address per day so the form cannot be used to flood an inbox.
SIGNUP_REPLY_KINDS = ("confirmation", "already_subscribed")


@dataclass(frozen=True)
class RequestMeta:
    """Where a consent came from: stored with the consent event as proof."""

    source: str = "web"
    form_id: str = ""
    ip_address: str = ""
    user_agent: str = ""


def normalise_email(raw: str) -> str:
    """The address as we store it (email-validator's normalised form); SubscriberError when invalid."""
    raw = (raw or "").strip()
    if not raw:
        raise SubscriberError("Please enter your email address.")
    if len(raw) > MAX_EMAIL:
        raise SubscriberError(f"An email address cannot be longer than {MAX_EMAIL} characters.")
    if "\r" in raw or "\n" in raw:
        raise SubscriberError("An email address cannot contain line breaks.")
    try:
        # IDN domains are fine (sent as xn--); a non-ASCII local part needs SMTPUTF8, which many servers lack.
        return validate_email(raw, check_deliverability=False, allow_smtputf8=False).normalized
    except EmailNotValidError as exc:
        raise SubscriberError(f"That email address is not valid: {exc}") from None


def clean_name(raw: str) -> str:
    name = (raw or "").strip()
    if "\r" in name or "\n" in name:
        raise SubscriberError("Your name cannot contain line breaks.")
    if len(name) > MAX_NAME:
        raise SubscriberError(f"Your name cannot be longer than {MAX_NAME} characters.")
    return name


def _config() -> Config:
    return current_app.config["MAILER"]


def _record(subscriber: Subscriber, action: ConsentAction, meta: RequestMeta, *, consent_text: str = "",
            detail: str = "") -> ConsentEvent:
    event = ConsentEvent(
        action=action,
        consent_text=consent_text,
        privacy_policy_version=_config()["site"]["privacy_policy_version"],
        source=meta.source,
        form_id=meta.form_id[:50],
        ip_address=meta.ip_address[:45],
        user_agent=meta.user_agent[:500],
        detail=detail,
        occurred_at=clock.now(),
    )
    subscriber.consent_events.append(event)
    return event


def _topics(session: Session, slugs: list[str]) -> list[Topic]:
    if not slugs:
        return []
    found = list(session.scalars(select(Topic).where(Topic.slug.in_(slugs)).order_by(Topic.slug)))
    unknown = set(slugs) - {t.slug for t in found}
    if unknown:
        raise SubscriberError(f"Unknown topic: {', '.join(sorted(unknown))}")
    return found


def _replies_today(session: Session, subscriber: Subscriber) -> int:
    since = clock.now() - timedelta(days=1)
    return session.scalar(
        select(func.count()).select_from(OutboxMessage).where(
            OutboxMessage.subscriber_id == subscriber.id,
            OutboxMessage.kind.in_(SIGNUP_REPLY_KINDS),
            OutboxMessage.created_at > since,
        )) or 0


def queue_mail(session: Session, subscriber: Subscriber, kind: str, template: str, **context) -> OutboxMessage:
    """Render a lifecycle mail for one subscriber and put it in the outbox."""
    config = _config()
    links = tokens.links(subscriber)
    rendered = emails.render(template, config, name=subscriber.name, **links, **context)
    message = emails.build(config, to=subscriber.email, to_name=subscriber.name, rendered=rendered,
                           unsubscribe_url=links["unsubscribe_url"], is_bulk=False)
    return enqueue(session, kind=kind, message=message, subscriber_id=subscriber.id,
                   dedupe_key=f"{kind}:{subscriber.id}:{message['Message-ID']}")


def sign_up(session: Session, *, email: str, name: str = "", topic_slugs: list[str] | None = None,
            meta: RequestMeta = RequestMeta()) -> Subscriber:
    """Record a signup with its consent and queue the confirmation mail.

    The same address again never makes a second subscriber; what the person sees does not depend on
    whether the address was known. A confirmed subscriber is not changed by a stranger's signup.
    """
    config = _config()
    email = normalise_email(email)
    name = clean_name(name)
    topics = _topics(session, topic_slugs or [])
    subscriber = session.scalar(select(Subscriber).where(Subscriber.email == email))
    if subscriber is None:
        subscriber = Subscriber(email=email, name=name, created_at=clock.now())
        session.add(subscriber)
        session.flush()
    consent = copy.consent_label(config.site_name)
    if subscriber.state == SubscriberState.confirmed:
        # Someone typed a confirmed address: tell its owner, change nothing else.
        if _replies_today(session, subscriber) < config["signup"]["confirmations_per_day"]:
            queue_mail(session, subscriber, "already_subscribed", "already_subscribed")
        return subscriber
    subscriber.state = SubscriberState.pending
    subscriber.name = name or subscriber.name
    subscriber.topics = topics
    _record(subscriber, ConsentAction.given, meta, consent_text=consent,
            detail=",".join(t.slug for t in topics))
    if _replies_today(session, subscriber) < config["signup"]["confirmations_per_day"]:
        queue_mail(session, subscriber, "confirmation", "confirmation",
                   confirm_url=emails.absolute_url(config, f"/confirm/{tokens.confirm_token(subscriber.id, email)}"),
                   confirm_days=config["signup"]["confirm_days"])
    return subscriber


def confirm(session: Session, subscriber: Subscriber, meta: RequestMeta = RequestMeta()) -> bool:
    """Double opt-in. Returns False when there was nothing to do (already confirmed)."""
    if subscriber.state == SubscriberState.confirmed:
        return False
    if subscriber.state != SubscriberState.pending:
        raise SubscriberError("This confirmation link is no longer valid because you unsubscribed. "
                              "Please sign up again.")
    now = clock.now()
    subscriber.state = SubscriberState.confirmed
    subscriber.confirmed_at = now
    subscriber.unsubscribed_at = None
    session.execute(delete(Suppression).where(Suppression.email == subscriber.email,
                                              Suppression.reason == "unsubscribed"))
    _record(subscriber, ConsentAction.confirmed, meta)
    queue_mail(session, subscriber, "welcome", "welcome", topics=[t.title for t in subscriber.topics])
    return True


def unsubscribe(session: Session, subscriber: Subscriber, meta: RequestMeta = RequestMeta()) -> bool:
    """Withdraw consent at once. Returns False when already unsubscribed."""
    if subscriber.state == SubscriberState.unsubscribed:
        return False
    subscriber.state = SubscriberState.unsubscribed
    subscriber.unsubscribed_at = clock.now()
    if session.scalar(select(Suppression).where(Suppression.email == subscriber.email)) is None:
        session.add(Suppression(email=subscriber.email, reason="unsubscribed", created_at=clock.now()))
    _record(subscriber, ConsentAction.withdrawn, meta)
    return True


def update_preferences(session: Session, subscriber: Subscriber, *, topic_slugs: list[str], is_paused: bool,
                       meta: RequestMeta = RequestMeta()) -> list[ConsentAction]:
    """Change topics and pause; each change is a consent event. Returns the actions recorded."""
    if subscriber.state == SubscriberState.unsubscribed:
        raise SubscriberError("You are unsubscribed. Sign up again to choose topics.")
    recorded = []
    topics = _topics(session, topic_slugs)
    if {t.id for t in topics} != {t.id for t in subscriber.topics}:
        subscriber.topics = topics
        _record(subscriber, ConsentAction.topics_changed, meta, detail=",".join(t.slug for t in topics))
        recorded.append(ConsentAction.topics_changed)
    if is_paused != subscriber.is_paused:
        subscriber.is_paused = is_paused
        action = ConsentAction.paused if is_paused else ConsentAction.resumed
        _record(subscriber, action, meta)
        recorded.append(action)
    return recorded
