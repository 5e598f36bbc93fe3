"""Verbs on webhooks: add and remove them, and queue an event for each webhook that listens to it.

An event is queued in the same transaction as its cause (a confirmation, a click), as a row per event per
webhook with a unique dedupe key, so it is sent once and lost by no crash. `delivery` sends the rows.
"""

from __future__ import annotations

import json
import secrets
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mailer import clock
from mailer.errors import NotFound, WebhookError
from mailer.webhooks.models import Webhook, WebhookDelivery

SUBSCRIBER_CONFIRMED = "subscriber.confirmed"
SUBSCRIBER_UNSUBSCRIBED = "subscriber.unsubscribed"
SEND_FINISHED = "send.finished"
ACTION_CLICKED = "action.clicked"
EVENTS = (SUBSCRIBER_CONFIRMED, SUBSCRIBER_UNSUBSCRIBED, SEND_FINISHED, ACTION_CLICKED)
MAX_URL = 2000


def parse_events(text: str) -> list[str]:
    """Event names from "a,b" (empty: every event); WebhookError naming any we do not send."""
    events = [name.strip() for name in (text or "").split(",") if name.strip()]
    unknown = [name for name in events if name not in EVENTS]
    if unknown:
        raise WebhookError(f"unknown event {', '.join(unknown)!s}: use {', '.join(EVENTS)}")
    return list(dict.fromkeys(events))


def check_url(url: str) -> str:
    url = (url or "").strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or not url.isprintable() or " " in url:
        raise WebhookError(f"a webhook URL must be an http or https address, not {url[:80]!r}")
    if len(url) > MAX_URL:
        raise WebhookError(f"a webhook URL can be at most {MAX_URL} characters")
    return url


def add(session: Session, url: str, events: list[str]) -> Webhook:
    """Add a webhook with a new signing secret; `events` empty means every event. The caller commits."""
    webhook = Webhook(url=check_url(url), secret="whsec_" + secrets.token_urlsafe(32),
                      events=",".join(parse_events(",".join(events))), created_at=clock.now())
    session.add(webhook)
    session.flush()
    return webhook


def remove(session: Session, webhook_id: int) -> Webhook:
    """Remove a webhook and its queue (delivered or not). The caller commits."""
    webhook = session.get(Webhook, webhook_id)
    if webhook is None:
        raise NotFound(f"no webhook with id {webhook_id} (`mailer webhooks list` shows them)")
    session.delete(webhook)
    return webhook


def listens_to(webhook: Webhook, event: str) -> bool:
    return not webhook.events or event in webhook.events.split(",")


def listeners(session: Session, event: str) -> list[Webhook]:
    """The active webhooks that want `event`."""
    webhooks = session.scalars(select(Webhook).where(Webhook.is_active.is_(True)).order_by(Webhook.id))
    return [w for w in webhooks if listens_to(w, event)]


def emit(session: Session, event: str, occurrence: str, data: dict, webhooks: list[Webhook] | None = None) -> int:
    """Queue `event` for every active webhook that listens to it (or for `webhooks`); return how many
    rows were queued.

    `occurrence` names what happened once (e.g. "consent-812"): the event's id is "<event>:<occurrence>",
    the same for every webhook, and a row's dedupe key adds the webhook, so the same occurrence emitted
    twice is queued once.
    """
    return _queue(session, listeners(session, event) if webhooks is None else webhooks, event, occurrence, data)


def _queue(session: Session, webhooks: list[Webhook], event: str, occurrence: str, data: dict) -> int:
    if not webhooks:
        return 0
    now = clock.now()
    event_id = f"{event}:{occurrence}"
    payload = json.dumps({"id": event_id, "event": event, "created_at": _iso(now), "data": data},
                         ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    queued = 0
    for webhook in webhooks:
        try:
            with session.begin_nested():
                session.add(WebhookDelivery(webhook_id=webhook.id, event=event, payload=payload,
                                            dedupe_key=f"{event_id}:{webhook.id}", created_at=now,
                                            next_attempt_at=now))
            queued += 1
        except IntegrityError:  # already queued: this occurrence was emitted before (another scheduler, a retry)
            continue
    return queued


def subscriber_changed(session: Session, event: str, subscriber, consent_event, *, include_email: bool) -> int:
    """Queue subscriber.confirmed / subscriber.unsubscribed: the subscriber's id (and address only when
    webhooks.include_email is on), never their topics, name or where they signed up."""
    webhooks = listeners(session, event)
    if not webhooks:
        return 0
    session.flush()  # the consent event's id names this occurrence
    data = {"subscriber": {"id": subscriber.id}, "occurred_at": _iso(consent_event.occurred_at)}
    if include_email:
        data["subscriber"]["email"] = subscriber.email
    return emit(session, event, f"consent-{consent_event.id}", data, webhooks)


def action_clicked(session: Session, click, link) -> int:
    """Queue action.clicked for a reader's click on an action link: which button of which send, not who."""
    webhooks = listeners(session, ACTION_CLICKED)
    if not webhooks:
        return 0
    session.flush()  # the click's id names this occurrence
    data = {"send_id": link.send_id, "article_id": link.article_id,
            "link": {"id": link.id, "label": link.label, "kind": link.kind, "url": link.url},
            "clicked_at": _iso(click.clicked_at)}
    return emit(session, ACTION_CLICKED, f"click-{click.id}", data, webhooks)


def send_finished(session: Session, send, counts: dict[str, int], archive_url: str, webhook: Webhook) -> bool:
    """Queue send.finished for one webhook once every message of the send is sent, failed or cancelled:
    figures only, nobody's address."""
    if not (webhook.is_active and listens_to(webhook, SEND_FINISHED)):
        return False
    data = {"send": {"id": send.id, "kind": send.kind.value, "subject": send.subject, "archive_url": archive_url,
                     "queued_at": _iso(send.queued_at), "recipients": send.recipients_count},
            "delivery": {state: counts.get(state, 0) for state in ("sent", "failed", "cancelled")}}
    return emit(session, SEND_FINISHED, f"send-{send.id}", data, [webhook]) == 1


def _iso(moment) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment is not None else None


def announce_finished_sends(session: Session, config) -> int:
    """Queue send.finished for each send whose outbox rows are all in a final state, once per webhook.

    Read from the outbox as it stands, so the delivery worker knows nothing of webhooks. The caller commits.
    """
    from mailer.sends import operations as send_operations
    from mailer.sends import queries as send_queries
    from mailer.webhooks import queries

    queued = 0
    for webhook in queries.all_webhooks(session):
        if not (webhook.is_active and listens_to(webhook, SEND_FINISHED)):
            continue
        for send in queries.finished_sends_not_announced(session, webhook):
            counts = send_queries.delivery_counts(session, send.id)
            queued += send_finished(session, send, counts, send_operations.archive_url(config, send), webhook)
    return queued
