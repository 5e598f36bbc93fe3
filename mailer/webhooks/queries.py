"""Reads of webhooks: the list with each one's queue, and the sends whose end a webhook has not heard of."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import String, cast, exists, func, literal, select
from sqlalchemy.orm import Session

from mailer.sends.models import Send
from mailer.outbox.models import OutboxMessage, OutboxState
from mailer.webhooks.models import Webhook, WebhookDelivery

UNFINISHED = (OutboxState.queued, OutboxState.sending)


def all_webhooks(session: Session) -> list[Webhook]:
    return list(session.scalars(select(Webhook).order_by(Webhook.id)))


def recent_deliveries(session: Session, webhook_id: int, limit: int = 20) -> list[WebhookDelivery]:
    """A webhook's latest events, newest first, with their state and the receiver's last answer."""
    return list(session.scalars(select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id)
                                .order_by(WebhookDelivery.id.desc()).limit(limit)))


def counts_by_state(session: Session, webhook_id: int) -> dict[str, int]:
    """A webhook's events by state: queued, sent, failed."""
    rows = session.execute(select(WebhookDelivery.state, func.count()).where(WebhookDelivery.webhook_id == webhook_id)
                           .group_by(WebhookDelivery.state))
    return dict(rows.all())


def finished_sends_not_announced(session: Session, webhook: Webhook, limit: int = 100) -> list[Send]:
    """Sends queued since the webhook was added whose messages are all sent, failed or cancelled, and
    whose send.finished this webhook has not been queued yet (its dedupe key is not there)."""
    unfinished = exists().where(OutboxMessage.send_id == Send.id, OutboxMessage.state.in_(UNFINISHED))
    key = literal("send.finished:send-") + cast(Send.id, String) + literal(f":{webhook.id}")
    announced = exists().where(WebhookDelivery.dedupe_key == key)
    return list(session.scalars(select(Send).where(Send.queued_at.is_not(None), Send.queued_at >= webhook.created_at,
                                                   ~unfinished, ~announced).order_by(Send.id).limit(limit)))


@dataclass(frozen=True)
class WebhookRow:
    webhook: Webhook
    counts: dict[str, int]

    def as_dict(self) -> dict:
        return {"id": self.webhook.id, "url": self.webhook.url, "events": self.webhook.events or "all",
                "created_at": self.webhook.created_at.isoformat(), "queued": self.counts.get("queued", 0),
                "sent": self.counts.get("sent", 0), "failed": self.counts.get("failed", 0)}


def listing(session: Session) -> list[WebhookRow]:
    return [WebhookRow(w, counts_by_state(session, w.id)) for w in all_webhooks(session)]
