"""Reads of the subscriber domain."""

from __future__ import annotations

from sqlalchemy import select

from mailer import db
from mailer.errors import InvalidToken
from subscribers.models import Subscriber


def subscriber_for_token(subscriber_id: int) -> Subscriber:
    subscriber = db.session.get(Subscriber, subscriber_id)
    if subscriber is None:
        raise InvalidToken("This link is no longer valid: we hold no subscription for it.")
    return subscriber


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
    }
