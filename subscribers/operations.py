"""Verbs that change a subscriber. Each records a consent event and queues its mail in the same transaction."""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass
from datetime import timedelta

from email_validator import EmailNotValidError, validate_email
from flask import current_app
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session, object_session

from mailer import clock, emails, ratelimits
from mailer.config import Config
from mailer.errors import SubscriberError
from mailer.digests.models import Click
from mailer.outbox.models import OutboxMessage, OutboxState
from mailer.outbox.operations import enqueue
from mailer.privacy import queries as privacy_queries
from mailer.topics.models import Topic
from mailer.topics.operations import SLUG_RE
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
        raise SubscriberError("Please enter your email address.", field="email")
    if len(raw) > MAX_EMAIL:
        raise SubscriberError(f"An email address cannot be longer than {MAX_EMAIL} characters.", field="email")
    if "\r" in raw or "\n" in raw:
        raise SubscriberError("An email address cannot contain line breaks.", field="email")
    try:
        # IDN domains are fine (sent as xn--); a non-ASCII local part needs SMTPUTF8, which many servers lack.
        normalized = validate_email(raw, check_deliverability=False, allow_smtputf8=False).normalized
    except EmailNotValidError as exc:
        raise SubscriberError(f"That email address is not valid: {exc}", field="email") from None
    if "=?" in normalized.rpartition("@")[0]:
        # "=?utf-8?q?…?=" is all atext, so the syntax allows it, but it is an RFC 2047 encoded word:
        # Python's header parser (and mail programs) decode it inside To, and our mail to it failed (a 500).
        raise SubscriberError("That email address is not valid: it contains “=?”, so mail programs would "
                              "read it as encoded text.", field="email")
    return normalized


def clean_name(raw: str) -> str:
    name = (raw or "").strip()
    if "\r" in name or "\n" in name:
        raise SubscriberError("Your name cannot contain line breaks.", field="name")
    # NUL and other control characters: PostgreSQL refuses NUL, and none belongs in a mail header.
    if any(unicodedata.category(c) == "Cc" for c in name):
        raise SubscriberError("Your name cannot contain control characters.", field="name")
    if len(name) > MAX_NAME:
        raise SubscriberError(f"Your name cannot be longer than {MAX_NAME} characters.", field="name")
    return name


def _config() -> Config:
    return current_app.config["MAILER"]


def _printable(text: str) -> str:
    # Request headers and hidden fields are the sender's to choose: PostgreSQL refuses NUL in text,
    # and an ESC would reach the terminal of whoever reads the consent history.
    return "".join(c for c in text if unicodedata.category(c) != "Cc")


def _record(subscriber: Subscriber, action: ConsentAction, meta: RequestMeta, *, consent_text: str = "",
            detail: str = "") -> ConsentEvent:
    event = ConsentEvent(
        action=action,
        consent_text=consent_text,
        privacy_policy_version=privacy_queries.current_version(object_session(subscriber),
                                                               _config()["site"]["privacy_policy_version"]),
        source=meta.source,
        form_id=_printable(meta.form_id)[:50],
        ip_address=_printable(meta.ip_address)[:45],
        user_agent=_printable(meta.user_agent)[:500],
        detail=detail,
        occurred_at=clock.now(),
    )
    subscriber.consent_events.append(event)
    return event


def _topics(session: Session, slugs: list[str]) -> list[Topic]:
    if not slugs:
        return []
    malformed = sorted(_printable(slug) for slug in slugs if not SLUG_RE.fullmatch(slug))
    if malformed:  # never a topic, and NUL in a query parameter is an error on PostgreSQL
        raise SubscriberError(f"Unknown topic: {', '.join(malformed)}", field="topics")
    found = list(session.scalars(select(Topic).where(Topic.slug.in_(slugs)).order_by(Topic.slug)))
    unknown = set(slugs) - {t.slug for t in found}
    if unknown:
        raise SubscriberError(f"Unknown topic: {', '.join(sorted(unknown))}", field="topics")
    return found


def _replies_today(session: Session, subscriber: Subscriber) -> int:
    since = clock.now() - timedelta(days=1)
    return session.scalar(
        select(func.count()).select_from(OutboxMessage).where(
            OutboxMessage.subscriber_id == subscriber.id,
            OutboxMessage.kind.in_(SIGNUP_REPLY_KINDS),
            OutboxMessage.created_at > since,
        )) or 0


def queue_mail(session: Session, subscriber: Subscriber, kind: str, template: str, *, is_named: bool = True,
               **context) -> OutboxMessage:
    """Render a lifecycle mail for one subscriber and put it in the outbox.

    `is_named=False` leaves the subscriber's name out (greeting and To), for mail to an address whose
    owner has not confirmed: whoever typed the address also typed the name.
    """
    config = _config()
    links = tokens.links(subscriber)
    name = subscriber.name if is_named else ""
    rendered = emails.render(template, config, name=name, **links, **context)
    # BulkMessage writes the bytes `emails.build` would (tests/test_bulk_message.py), in a quarter of the time.
    message = emails.BulkMessage(config, subject=rendered.subject, text=rendered.text, html=rendered.html,
                                 is_bulk=False).personal(to=subscriber.email, to_name=name,
                                                         unsubscribe_url=links["unsubscribe_url"], values=str)
    return enqueue(session, kind=kind, message=message, subscriber_id=subscriber.id,
                   dedupe_key=f"{kind}:{subscriber.id}:{message.message_id}")


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
    is_stranger = meta.source != "import"  # anyone may type any address; an editor's list is theirs
    if is_stranger:
        _refuse_blocked_domain(config, email)
    # FOR UPDATE: two signups of one address take turns from here to their commit, so each counts
    # the confirmations the other queued (PostgreSQL; SQLite's writers take turns anyway).
    subscriber = session.scalar(select(Subscriber).where(Subscriber.email == email).with_for_update())
    if subscriber is None:
        # Empty collections from the start: after the flush, setting topics and adding the consent
        # load nothing from the database (two queries a signup).
        subscriber = Subscriber(email=email, name=name, created_at=clock.now(), topics=[], consent_events=[])
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
        if is_stranger:
            _count_pending_for_domain(session, config, email)
        # On the web form anyone may type anyone's address, and a name to go with it: until the owner
        # confirms, our mail to them carries none of a stranger's words. A list an editor imports is theirs.
        queue_mail(session, subscriber, "confirmation", "confirmation", is_named=meta.source != "web",
                   confirm_url=emails.absolute_url(config, f"/confirm/{tokens.confirm_token(subscriber.id, email)}"),
                   confirm_days=config["signup"]["confirm_days"])
    return subscriber


def _domain(email: str) -> str:
    return email.rsplit("@", 1)[1].lower()


def blocked_domains(config: Config) -> set[str]:
    """`signup.blocked_domains` as a set of lower-case domains."""
    return {d.strip().lower().rstrip(".") for d in config["signup"]["blocked_domains"].replace(",", " ").split()}


def _refuse_blocked_domain(config: Config, email: str) -> None:
    domain = _domain(email)
    parts = domain.split(".")
    if blocked_domains(config) & {".".join(parts[i:]) for i in range(len(parts))}:  # or a subdomain of one
        raise SubscriberError("We cannot sign up addresses at this domain. Please use another address.",
                              field="email")


def _count_pending_for_domain(session: Session, config: Config, email: str) -> None:
    """Count one confirmation to `email`'s domain against `signup.pending_per_domain_per_hour`."""
    cap = config["signup"]["pending_per_domain_per_hour"]
    if not cap:
        return
    key = ratelimits.hashed_key(current_app.config["SECRET_KEY"], _domain(email))
    if not ratelimits.take(session.connection(), "signup-domain", key, limit=cap, per=timedelta(hours=1)):
        raise SubscriberError("Too many people signed up with addresses at this domain in the last hour. "
                              "Please try again later.", field="email")


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
    # A fresh double opt-in lifts an unsubscribe, and the hashed marker left by an earlier erasure.
    session.execute(delete(Suppression).where(or_(
        (Suppression.email == subscriber.email) & (Suppression.reason == "unsubscribed"),
        Suppression.email == erased_marker(subscriber.email))))
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


def import_confirmed(session: Session, *, email: str, name: str = "", topic_slugs: list[str] | None = None,
                     source_name: str) -> Subscriber:
    """Add a subscriber from a list whose consent was given elsewhere: confirmed at once, no mail sent.

    The caller has checked that the address is new and not suppressed. The consent event `imported`
    names the list (`source_name`), so the history shows where this consent came from.
    """
    now = clock.now()
    topics = _topics(session, topic_slugs or [])
    subscriber = Subscriber(email=normalise_email(email), name=clean_name(name), state=SubscriberState.confirmed,
                            created_at=now, confirmed_at=now, topics=topics)
    session.add(subscriber)
    detail = f"imported from {source_name}"
    if topics:
        detail += f"; topics: {','.join(t.slug for t in topics)}"
    _record(subscriber, ConsentAction.imported, RequestMeta(source="import"), detail=detail)
    return subscriber


ERASED = "erased"


def erased_marker(email: str) -> str:
    """What the suppression list holds for an erased address: its SHA-256 hash, never the address.

    It lets an import or a bulk send recognise the address again without our keeping it.
    """
    return "sha256:" + hashlib.sha256(email.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Erasure:
    """What an erasure removed or blanked, for the person running it."""

    consent_events: int
    topics: int
    messages: int
    clicks: int


def erase(session: Session, subscriber: Subscriber) -> Erasure:
    """Erase a subscriber (GDPR Art. 17): their row, consent history and topic choices go.

    Their outbox rows stay, so send counts stay right, but lose recipient, content and errors (mail
    not yet sent is failed, never delivered). Their clicks stay as anonymous counts: the foreign key
    sets subscriber_id to NULL. Any suppression of the address is replaced by one `erased` row that
    holds only `erased_marker(address)`, so the person is not imported or mailed again; signing up
    through the web form and confirming it (double opt-in) lifts it.
    """
    email = subscriber.email
    mail_to_them = or_(OutboxMessage.subscriber_id == subscriber.id, OutboxMessage.recipient == email)
    session.execute(
        update(OutboxMessage)
        .where(mail_to_them, OutboxMessage.state.in_([OutboxState.queued, OutboxState.sending]))
        .values(state=OutboxState.failed, claimed_at=None)
    )
    messages = session.execute(
        update(OutboxMessage).where(mail_to_them)
        .values(recipient="", content=None, last_error="recipient erased", subscriber_id=None)
    ).rowcount
    clicks = session.scalar(select(func.count()).select_from(Click).where(Click.subscriber_id == subscriber.id))
    previous = list(session.scalars(select(Suppression).where(Suppression.email == email)))
    for suppression in previous:
        session.delete(suppression)
    marker = erased_marker(email)
    # The marker's detail keeps why the address was suppressed before (e.g. bounced), not who it was.
    if session.scalar(select(Suppression.id).where(Suppression.email == marker)) is None:
        session.add(Suppression(email=marker, reason=ERASED, created_at=clock.now(),
                                detail=",".join(sorted({s.reason for s in previous}))))
    erasure = Erasure(consent_events=len(subscriber.consent_events), topics=len(subscriber.topics),
                      messages=messages, clicks=clicks)
    session.delete(subscriber)
    session.flush()
    return erasure
