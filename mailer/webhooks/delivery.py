"""Sending queued webhook events: claim due rows, POST each signed, record the answer; retry with back-off
like mail, and mark an event failed after its last attempt.

Claiming and recording are short transactions of their own, as in the mail worker: a deliverer that dies
leaves its rows claimed until the lease runs out, then another takes them; a result is written only while
the row is still under this deliverer's claim, so two deliverers never both send an event.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update

from mailer import clock, db
from mailer.config import Config
from mailer.webhooks import signing
from mailer.webhooks.models import Webhook, WebhookDelivery

log = logging.getLogger(__name__)

QUEUED, SENT, FAILED = "queued", "sent", "failed"
BATCH = 100
MAX_RESPONSE = 1000
USER_AGENT = "mailer-webhooks/1"


@dataclass
class Tally:
    sent: int = 0
    retrying: int = 0
    failed: int = 0


@dataclass(frozen=True)
class Answer:
    """What the receiver said: its HTTP status (None when it did not answer) and the start of its reply."""

    status: int | None
    text: str

    @property
    def is_ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def retry_delay(attempts: int) -> timedelta:
    """Back off 1, 2, 4 … minutes after each failed attempt, capped at 4 hours (as mail does)."""
    return timedelta(minutes=min(2 ** max(attempts - 1, 0), 240))


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # A redirect is an answer, not a new address to post events to: configure the final URL.
    def redirect_request(self, *args, **kwargs):
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> Answer:
    """POST `body` to `url`; the receiver's answer, or why there was none."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with _opener.open(request, timeout=timeout) as response:
            return Answer(response.status, _text(response.read(MAX_RESPONSE)))
    except urllib.error.HTTPError as exc:  # 3xx, 4xx and 5xx all come here
        with exc:
            return Answer(exc.code, _text(exc.read(MAX_RESPONSE)))
    except (TimeoutError, socket.timeout):
        return Answer(None, f"no answer within {timeout:g} s")
    except urllib.error.URLError as exc:
        return Answer(None, f"could not connect: {exc.reason}")
    except (OSError, http.client.HTTPException) as exc:
        return Answer(None, f"connection failed: {exc.__class__.__name__} {exc}".strip())


def _text(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace")
    return "".join(c if c.isprintable() or c in "\n\t" else " " for c in text)[:MAX_RESPONSE]


def claim_due(config: Config, limit: int = BATCH) -> list[tuple[WebhookDelivery, Webhook]]:
    """Mark up to `limit` due events of active webhooks as ours (claimed_at = now) and return them with
    their webhook, oldest first. A claim older than webhooks.lease_seconds is a dead deliverer's: taken."""
    now = clock.now()
    lease = timedelta(seconds=config["webhooks"]["lease_seconds"])
    with db.session.session_factory.begin() as session:
        due = (select(WebhookDelivery.id).join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
               .where(WebhookDelivery.state == QUEUED, WebhookDelivery.next_attempt_at <= now,
                      or_(WebhookDelivery.claimed_at.is_(None), WebhookDelivery.claimed_at < now - lease),
                      Webhook.is_active.is_(True))
               .order_by(WebhookDelivery.id).limit(limit))
        if session.get_bind().dialect.name == "postgresql":
            due = due.with_for_update(of=WebhookDelivery, skip_locked=True)
        ids = list(session.scalars(due))
        if not ids:
            return []
        session.execute(update(WebhookDelivery).where(WebhookDelivery.id.in_(ids)).values(claimed_at=now))
        rows = session.execute(select(WebhookDelivery, Webhook).join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
                               .where(WebhookDelivery.id.in_(ids)).order_by(WebhookDelivery.id)).all()
    return [(row, webhook) for row, webhook in rows]


def attempt(config: Config, row: WebhookDelivery, webhook: Webhook) -> Answer:
    """POST one event, signed now."""
    body = row.payload.encode("utf-8")
    timestamp = int(clock.now().timestamp())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        signing.HEADER: signing.sign(webhook.secret, body, timestamp),
        "X-Mailer-Event": row.event,
        "X-Mailer-Event-Id": json.loads(row.payload)["id"],
        "X-Mailer-Delivery": str(row.id),
    }
    return post(webhook.url, body, headers, config["webhooks"]["timeout_seconds"])


def record(config: Config, row_id: int, claimed_at: datetime, answer: Answer) -> str | None:
    """Write one attempt's result, if the row is still under our claim; return its new state."""
    now = clock.now()
    with db.session.session_factory.begin() as session:
        row = session.scalar(select(WebhookDelivery).where(WebhookDelivery.id == row_id,
                                                           WebhookDelivery.claimed_at == claimed_at))
        if row is None:  # our lease ran out and another deliverer took it: theirs to record
            return None
        row.attempts += 1
        row.claimed_at = None
        row.last_status = answer.status
        row.last_response = answer.text
        if answer.is_ok:
            row.state, row.delivered_at = SENT, now
        elif row.attempts >= config["webhooks"]["max_attempts"]:
            row.state = FAILED
        else:
            row.next_attempt_at = now + retry_delay(row.attempts)
        return row.state


def release(row_ids: list[int], claimed_at: datetime) -> None:
    """Give rows back untried (their receiver is down this pass): no attempt is counted."""
    if not row_ids:
        return
    with db.session.session_factory.begin() as session:
        session.execute(update(WebhookDelivery).where(WebhookDelivery.id.in_(row_ids),
                                                      WebhookDelivery.claimed_at == claimed_at)
                        .values(claimed_at=None))


def deliver_due(config: Config) -> Tally:
    """One pass: send every due event once. A receiver that fails an event is not tried again in this
    pass (its other events wait, untried, for the next), so one dead receiver cannot hold up the rest."""
    tally = Tally()
    claimed = claim_due(config)
    if not claimed:
        return tally
    claimed_at = claimed[0][0].claimed_at
    down: set[int] = set()
    skipped: list[int] = []
    for row, webhook in claimed:
        if webhook.id in down:
            skipped.append(row.id)
            continue
        answer = attempt(config, row, webhook)
        state = record(config, row.id, claimed_at, answer)
        if state == SENT:
            tally.sent += 1
            continue
        if state is not None:
            down.add(webhook.id)
            if state == FAILED:
                tally.failed += 1
                log.warning("webhook %s: event %s failed for good: %s %s", webhook.id, row.id, answer.status, answer.text)
            else:
                tally.retrying += 1
    release(skipped, claimed_at)
    return tally
