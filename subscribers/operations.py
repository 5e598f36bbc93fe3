"""Verbs that change a subscriber. Each records a consent event and queues its mail in the same transaction."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from email_validator import EmailNotValidError, validate_email
from flask import current_app
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, object_session

from mailer import clock, emails, ratelimits
from mailer.config import Config
from mailer.errors import InvalidToken, SubscriberError
from mailer.links.models import Click
from mailer.outbox.models import OutboxMessage, OutboxState
from mailer.outbox.operations import enqueue
from mailer.privacy import queries as privacy_queries
from mailer.topics.models import Topic
from mailer.topics.operations import SLUG_RE
from mailer.webhooks.models import WebhookDelivery
from mailer.webhooks import operations as webhooks
from subscribers import copy, tokens
from subscribers.models import ConsentAction, ConsentEvent, InboxProof, Subscriber, SubscriberState, Suppression

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


def _secret_key() -> str:
    return current_app.config["SECRET_KEY"]


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
    is_new = subscriber is None
    if is_new:
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
    if subscriber.state == SubscriberState.unsubscribed:
        # Re-subscribing starts afresh: the links in mails of the last subscription stop managing this
        # one (their unsubscribe links still unsubscribe).
        subscriber.token_version += 1
    subscriber.state = SubscriberState.pending
    subscriber.name = name or subscriber.name
    subscriber.topics = topics
    _record(subscriber, ConsentAction.given, meta, consent_text=consent,
            detail=",".join(t.slug for t in topics))
    # A subscriber made a moment ago has had no mail: one query fewer in the signup's write lock.
    replies = 0 if is_new else _replies_today(session, subscriber)
    if replies < config["signup"]["confirmations_per_day"]:
        if is_stranger:
            _count_pending_for_domain(session, config, email)
        # On the web form anyone may type anyone's address, and a name to go with it: until the owner
        # confirms, our mail to them carries none of a stranger's words. A list an editor imports is theirs.
        # The API relays the blog's own public form: a stranger's words too.
        queue_mail(session, subscriber, "confirmation", "confirmation", is_named=meta.source not in ("web", "api"),
                   confirm_url=emails.absolute_url(config, "/confirm/" + tokens.confirm_token(
                       subscriber.id, email, subscriber.token_version)),
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
        Suppression.email.in_(erased_markers(subscriber.email, _secret_key())))))
    event = _record(subscriber, ConsentAction.confirmed, meta)
    webhooks.subscriber_changed(session, webhooks.SUBSCRIBER_CONFIRMED, subscriber, event,
                                include_email=_config()["webhooks"]["include_email"])
    queue_mail(session, subscriber, "welcome", "welcome", topics=[t.title for t in subscriber.topics],
               digest_schedule=_digest_schedule(session))
    return True


def _digest_schedule(session: Session) -> str:
    """When digests come, in the welcome mail's words: the next scheduled one in its own zone ("" when no
    schedule is running: the mail then says a digest comes when there is something new)."""
    from zoneinfo import ZoneInfo

    from mailer.digests.models import DigestSchedule

    schedule = session.scalar(select(DigestSchedule).where(DigestSchedule.is_paused.is_(False))
                              .order_by(DigestSchedule.next_run_at).limit(1))
    if schedule is None:
        return ""
    local = schedule.next_run_at.astimezone(ZoneInfo(schedule.timezone))
    return f"on a schedule: the next one {local:%A} {local.day} {local:%B} at {local:%H:%M} ({schedule.timezone})"


def unsubscribe(session: Session, subscriber: Subscriber, meta: RequestMeta = RequestMeta()) -> bool:
    """Withdraw consent at once. Returns False when already unsubscribed."""
    if subscriber.state == SubscriberState.unsubscribed:
        return False
    subscriber.state = SubscriberState.unsubscribed
    subscriber.unsubscribed_at = clock.now()
    if session.scalar(select(Suppression).where(Suppression.email == subscriber.email)) is None:
        session.add(Suppression(email=subscriber.email, reason="unsubscribed", created_at=clock.now()))
    event = _record(subscriber, ConsentAction.withdrawn, meta)
    webhooks.subscriber_changed(session, webhooks.SUBSCRIBER_UNSUBSCRIBED, subscriber, event,
                                include_email=_config()["webhooks"]["include_email"])
    return True


# Reasons a fresh double opt-in lifts (confirm() deletes them); a bounce or a complaint replaces them,
# so that a later signup cannot bring mail back to an address that bounced or complained.
WEAK_REASONS = ("unsubscribed",)


def suppress(session: Session, email: str, reason: str, detail: str = "") -> bool:
    """Keep bulk mail away from `email` (reason: bounced, complained...). True when the list changed.

    An address already suppressed keeps its row; an `unsubscribed` one takes the new, stronger reason.
    Safe when another process suppresses the same address at the same moment (the address is unique).
    """
    existing = session.scalar(select(Suppression).where(Suppression.email == email))
    if existing is not None:
        if existing.reason in WEAK_REASONS and reason not in WEAK_REASONS:
            existing.reason, existing.detail = reason, detail
            return True
        return False
    try:
        with session.begin_nested():
            session.add(Suppression(email=email, reason=reason, detail=detail, created_at=clock.now()))
    except IntegrityError:  # suppressed by another process since we looked: it is suppressed either way
        return False
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
ERASED_KEY_PURPOSE = b"mailer.erased-address"
LEGACY_ERASED_PREFIX = "sha256:"


def erased_key(secret_key: str) -> bytes:
    """The key of erased-address markers: derived from the instance secret key, stored nowhere.

    A database alone (a backup, a seized server's disk without var/secret_key or the config) cannot
    tell whether an address was erased by hashing guesses; changing the secret key makes every
    marker unrecognisable (and every link in mail already sent stop working).
    """
    return hmac.new(secret_key.encode(), ERASED_KEY_PURPOSE, hashlib.sha256).digest()


def erased_marker(email: str, secret_key: str) -> str:
    """What the suppression list holds for an erased address: a keyed hash (HMAC-SHA256), never the
    address. It lets an import recognise the address again without our keeping it."""
    return "hmac-sha256:" + hmac.new(erased_key(secret_key), email.encode("utf-8"), hashlib.sha256).hexdigest()


def erased_markers(email: str, secret_key: str) -> list[str]:
    """Every marker an erasure of `email` may have left: the keyed one, and the plain SHA-256 that
    erasures before keyed markers wrote (still honoured, so those people are not imported again)."""
    return [erased_marker(email, secret_key),
            LEGACY_ERASED_PREFIX + hashlib.sha256(email.encode("utf-8")).hexdigest()]


@dataclass(frozen=True)
class Erasure:
    """What an erasure removed or blanked, for the person running it."""

    consent_events: int
    topics: int
    messages: int
    clicks: int


def erase(session: Session, subscriber: Subscriber) -> Erasure:
    """Erase a subscriber (GDPR Art. 17): their row, consent history (with its IP addresses and user
    agents), topic choices and inbox links go.

    Their outbox rows stay, so send counts stay right, but lose recipient, content and errors (mail
    not yet sent is failed, never delivered). Their clicks stay as anonymous counts: the foreign key
    sets subscriber_id to NULL. Webhook payloads that name the address are blanked. Any suppression
    of the address is replaced by one `erased` row that holds only `erased_marker(address)`, so the
    person is not imported or mailed again; signing up through the web form and confirming it
    (double opt-in) lifts it. Copies in a Maildir are the caller's to remove: see forget_in_maildir().
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
    naming_them = WebhookDelivery.payload.contains(email, autoescape=True)
    session.execute(update(WebhookDelivery).where(naming_them, WebhookDelivery.state == "queued")
                    .values(state="failed", claimed_at=None))
    session.execute(update(WebhookDelivery).where(naming_them)
                    .values(payload="{}", last_response="subscriber erased"))
    clicks = session.scalar(select(func.count()).select_from(Click).where(Click.subscriber_id == subscriber.id))
    previous = list(session.scalars(select(Suppression).where(Suppression.email == email)))
    for suppression in previous:
        session.delete(suppression)
    marker = erased_marker(email, _secret_key())
    # The marker's detail keeps why the address was suppressed before (e.g. bounced), not who it was.
    if session.scalar(select(Suppression.id).where(Suppression.email == marker)) is None:
        session.add(Suppression(email=marker, reason=ERASED, created_at=clock.now(),
                                detail=",".join(sorted({s.reason for s in previous}))))
    erasure = Erasure(consent_events=len(subscriber.consent_events), topics=len(subscriber.topics),
                      messages=messages, clicks=clicks)
    session.delete(subscriber)  # ids are never reused: every link to this id is dead from now on
    session.flush()
    return erasure


def forget_in_maildir(maildir: str | Path, email: str) -> int:
    """Delete the messages to `email` that the maildir backend wrote; return how many.

    The backend starts each file with `Delivered-To: <address>` on its second line, so only each
    file's first bytes are read. Call it after the erasure is committed.
    """
    needle = f"\nDelivered-To: {email}\n".lower().encode()
    removed = 0
    for folder in ("new", "cur"):
        directory = Path(maildir) / folder
        if not directory.is_dir():
            continue
        for path in directory.iterdir():
            try:
                with path.open("rb") as fh:
                    head = fh.read(len(needle) + 1024)
                if needle in head.lower():
                    path.unlink()
                    removed += 1
            except FileNotFoundError:  # a mail client moved it meanwhile
                continue
    return removed


# ---- links: revoking them, and the inbox proof for data and erasure --------------------------------

INBOX_PROOF_PURPOSES = ("data", "erase")
INBOX_PROOF_LIFETIME = timedelta(hours=1)
# Inbox links per subscriber per hour: a forwarded preferences link must not become a way to flood
# the owner's inbox.
INBOX_PROOFS_PER_HOUR = 3


def revoke_links(session: Session, subscriber: Subscriber) -> None:
    """"Sign out all links in my old mails": bump token_version (every preferences and confirm link
    sent so far stops working; unsubscribe links still unsubscribe), drop unused inbox links, and mail
    fresh links to the address, the only place the owner of the subscription can read them."""
    subscriber.token_version += 1
    session.execute(delete(InboxProof).where(InboxProof.subscriber_id == subscriber.id,
                                             InboxProof.used_at.is_(None)))
    queue_mail(session, subscriber, "new_links", "new_links",
               is_named=subscriber.state == SubscriberState.confirmed)


def proof_hash(nonce: str) -> str:
    """What the database keeps of an inbox link: the SHA-256 of its 256-bit random part (a hash of
    that much randomness cannot be reversed by guessing, so no key is needed)."""
    return hashlib.sha256(nonce.encode("utf-8", "surrogatepass")).hexdigest()


def request_inbox_proof(session: Session, subscriber: Subscriber, purpose: str) -> InboxProof:
    """Mail a single-use link, valid for an hour, to the subscriber's own address: downloading their
    data or erasing them needs it, so a forwarded mail's preferences link can do neither."""
    if purpose not in INBOX_PROOF_PURPOSES:
        raise SubscriberError("Unknown request.")
    now = clock.now()
    recent = session.scalar(select(func.count()).select_from(InboxProof).where(
        InboxProof.subscriber_id == subscriber.id, InboxProof.created_at > now - timedelta(hours=1))) or 0
    if recent >= INBOX_PROOFS_PER_HOUR:
        raise SubscriberError("We have sent several links to your inbox in the last hour. Please use the "
                              "most recent one, or try again in an hour.")
    nonce = secrets.token_urlsafe(32)
    proof = InboxProof(subscriber_id=subscriber.id, purpose=purpose, nonce_hash=proof_hash(nonce),
                       created_at=now, expires_at=now + INBOX_PROOF_LIFETIME)
    session.add(proof)
    session.flush()
    queue_mail(session, subscriber, f"inbox_proof_{purpose}", "inbox_proof",
               is_named=subscriber.state == SubscriberState.confirmed, purpose=purpose,
               proof_url=emails.absolute_url(_config(), f"/inbox/{nonce}"))
    return proof


def use_inbox_proof(session: Session, nonce: str) -> InboxProof:
    """Spend an inbox link: the proof (its subscriber and purpose), or InvalidToken. One atomic UPDATE,
    so two requests racing with the same link cannot both succeed."""
    now = clock.now()
    proof_id = session.scalar(select(InboxProof.id).where(InboxProof.nonce_hash == proof_hash(nonce)))
    spent = session.execute(
        update(InboxProof)
        .where(InboxProof.id == proof_id, InboxProof.used_at.is_(None), InboxProof.expires_at > now)
        .values(used_at=now)
        .execution_options(synchronize_session=False)).rowcount
    if proof_id is None or spent != 1:
        raise InvalidToken(INBOX_LINK_SPENT)
    return session.get(InboxProof, proof_id)


INBOX_LINK_SPENT = ("This link has expired or was already used. Please ask for a new one on your "
                    "preferences page.")
