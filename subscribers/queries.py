"""Reads of the subscriber domain."""

from __future__ import annotations

from collections.abc import Iterator

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from mailer import clock, db
from mailer.links.models import Click
from mailer.errors import InvalidToken
from mailer.outbox.models import OutboxMessage
from subscribers.models import InboxProof, Subscriber, Suppression
from subscribers.operations import INBOX_LINK_SPENT, erased_markers, proof_hash


def subscriber_for_token(subscriber_id: int) -> Subscriber:
    subscriber = db.session.get(Subscriber, subscriber_id)
    if subscriber is None:
        raise InvalidToken("This link is no longer valid: we hold no subscription for it.")
    return subscriber


def by_id(subscriber_id: int) -> Subscriber | None:
    return db.session.get(Subscriber, subscriber_id)


def masked(email: str) -> str:
    """The address as a page reached by a link shows it: `a•••@example.net`. Enough for its owner to
    recognise it, too little for whoever holds a forwarded mail or a screenshot of the page."""
    local, _, domain = email.rpartition("@")
    return f"{local[:1]}\u2022\u2022\u2022@{domain}"


def inbox_proof(nonce: str) -> InboxProof:
    """The unspent, unexpired inbox link whose random part is `nonce`, or InvalidToken."""
    proof = db.session.scalar(select(InboxProof).where(InboxProof.nonce_hash == proof_hash(nonce)))
    if proof is None or proof.used_at is not None or proof.expires_at <= clock.now():
        raise InvalidToken(INBOX_LINK_SPENT)
    return proof


def by_email(email: str) -> Subscriber | None:
    return db.session.scalar(select(Subscriber).where(Subscriber.email == email))


def consent_history(subscriber: Subscriber) -> list[dict]:
    return [
        {
            "action": e.action.value,
            "occurred_at": e.occurred_at.isoformat(),
            "privacy_policy_version": e.privacy_policy_version,
            "source": e.source,
            "form_id": e.form_id,
            "consent_text": e.consent_text,
            "ip_address": e.ip_address,
            "user_agent": e.user_agent,
            "detail": e.detail,
        }
        for e in subscriber.consent_events
    ]


def personal_data(subscriber: Subscriber) -> dict:
    """Everything we hold about one subscriber."""
    return {
        "email": subscriber.email,
        "name": subscriber.name,
        "state": subscriber.state.value,
        "is_paused": subscriber.is_paused,
        "created_at": subscriber.created_at.isoformat(),
        "confirmed_at": subscriber.confirmed_at.isoformat() if subscriber.confirmed_at else None,
        "unsubscribed_at": subscriber.unsubscribed_at.isoformat() if subscriber.unsubscribed_at else None,
        "topics": [t.slug for t in subscriber.topics],
        "consent_history": consent_history(subscriber),
        "mail": mail_history(subscriber),
        "clicks": click_history(subscriber),
    }


def mail_history(subscriber: Subscriber) -> list[dict]:
    """Every message we queued for this subscriber: what, when, and whether it went out."""
    rows = db.session.scalars(select(OutboxMessage).where(OutboxMessage.subscriber_id == subscriber.id)
                              .order_by(OutboxMessage.id))
    return [
        {
            "kind": m.kind,
            "subject": m.subject,
            "state": m.state.value,
            "created_at": m.created_at.isoformat(),
            "sent_at": m.sent_at.isoformat() if m.sent_at else None,
        }
        for m in rows
    ]


def click_history(subscriber: Subscriber) -> list[dict]:
    """Every tracked link this subscriber clicked, with the address it led to."""
    rows = db.session.scalars(select(Click).options(selectinload(Click.link))
                              .where(Click.subscriber_id == subscriber.id).order_by(Click.id))
    return [{"url": c.link.url, "label": c.link.label, "clicked_at": c.clicked_at.isoformat()} for c in rows]


def known_addresses(emails: list[str]) -> set[str]:
    """Which of these normalised addresses already belong to a subscriber."""
    return set(db.session.scalars(select(Subscriber.email).where(Subscriber.email.in_(emails))))


def suppression_reasons(emails: list[str]) -> dict[str, str]:
    """For each of these normalised addresses that is suppressed, why: by the address or its erased hash."""
    secret_key = current_app.config["SECRET_KEY"]
    markers = {marker: e for e in emails for marker in erased_markers(e, secret_key)}
    found = db.session.execute(select(Suppression.email, Suppression.reason)
                               .where(Suppression.email.in_([*emails, *markers])))
    return {markers.get(key, key): reason for key, reason in found}


def every_subscriber(batch: int = 1000) -> Iterator[Subscriber]:
    """All subscribers in id order, streamed `batch` rows at a time, their topics loaded per batch."""
    query = (select(Subscriber).options(selectinload(Subscriber.topics)).order_by(Subscriber.id)
             .execution_options(yield_per=batch))
    yield from db.session.scalars(query)
