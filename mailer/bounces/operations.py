"""Acting on a bounce or complaint: find whom it is about, record it once, suppress when it is time.

A hard bounce or a complaint suppresses the address at once (a complaint also unsubscribes, recorded as
a consent event withdrawn with source "complaint"); soft bounces are counted from BounceEvent rows and
suppress after `bounces.soft_limit` within `bounces.soft_days`. The same report read twice counts once:
its reference (a hash of its Message-ID, or of token and time) starts the event's detail.
Logs name reports by reference and subscribers by id, never by address.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailer import clock
from mailer.bounces.models import BounceEvent
from mailer.bounces.reports import BounceKind, Report
from mailer.config import Config
from mailer.errors import InvalidToken
from mailer.outbox import verp
from mailer.outbox.models import OutboxMessage
from mailer.sends import message_ids
from subscribers import operations as subscriber_operations
from subscribers import tokens as subscriber_tokens
from subscribers.models import Subscriber

log = logging.getLogger(__name__)

COMPLAINT_SOURCE = "complaint"  # the consent event's source when a complaint unsubscribes


class Outcome(str, enum.Enum):
    suppressed = "suppressed"  # the address gets no more bulk mail
    counted = "counted"        # a soft bounce, under the limit
    duplicate = "duplicate"    # this report was recorded before
    ignored = "ignored"        # not a bounce, or about no message of ours (a forged token, say)


@dataclass(frozen=True)
class BounceSettings:
    """What recording reads from config, passed in: the VERP shape and the soft-bounce rule."""

    return_path: str
    soft_limit: int = 5
    soft_days: int = 14

    @classmethod
    def from_config(cls, config: Config) -> "BounceSettings":
        bounces = config["bounces"]
        return cls(config["mail"]["return_path"], bounces["soft_limit"], bounces["soft_days"])


@dataclass(frozen=True)
class _Target:
    """Whom a report is about: the address we mailed, its subscriber and send when we know them."""

    address: str
    subscriber: Subscriber | None
    send_id: int | None


@dataclass
class Tally:
    """What a run made of its reports."""

    suppressed: int = 0
    counted: int = 0
    duplicate: int = 0
    ignored: int = 0

    def add(self, outcome: Outcome) -> None:
        setattr(self, outcome.value, getattr(self, outcome.value) + 1)

    @property
    def read(self) -> int:
        return self.suppressed + self.counted + self.duplicate + self.ignored

    def line(self) -> str:
        return (f"read {self.read} report(s): {self.suppressed} suppressed, {self.counted} soft bounce(s) counted, "
                f"{self.duplicate} already seen, {self.ignored} ignored")


def record(session: Session, report: Report, *, source: str, secret: str, settings: BounceSettings) -> Outcome:
    """Record one report and suppress what it calls for; the caller commits. Returns what happened."""
    if report.kind is None:
        log.info("report %s ignored: not a bounce or complaint we act on", report.reference)
        return Outcome.ignored
    targets = _targets(session, report, secret)
    if not targets:
        log.warning("%s report %s ignored: it names no message of ours", report.kind.value, report.reference)
        return Outcome.ignored
    outcomes = [_record_one(session, report, target, source, settings) for target in targets]
    for preferred in (Outcome.suppressed, Outcome.counted, Outcome.duplicate):
        if preferred in outcomes:
            return preferred
    return Outcome.ignored


def _record_one(session: Session, report: Report, target: _Target, source: str,
                settings: BounceSettings) -> Outcome:
    subscriber = target.subscriber
    marker = f"ref:{report.reference}"
    seen = select(BounceEvent.id).where(
        BounceEvent.detail.startswith(marker, autoescape=True),
        BounceEvent.subscriber_id == subscriber.id if subscriber else BounceEvent.subscriber_id.is_(None))
    if session.scalar(seen.limit(1)) is not None:
        return Outcome.duplicate
    now = clock.now()
    session.add(BounceEvent(subscriber_id=subscriber.id if subscriber else None, send_id=target.send_id,
                            kind=report.kind.value, source=source, detail=f"{marker} {report.detail}"[:500],
                            received_at=now))
    session.flush()
    who = f"subscriber {subscriber.id}" if subscriber else "an address that is no subscriber"
    if report.kind == BounceKind.hard:
        subscriber_operations.suppress(session, target.address, "bounced", f"hard bounce ({source}): {report.detail}")
        log.info("report %s: hard bounce, %s suppressed", report.reference, who)
        return Outcome.suppressed
    if report.kind == BounceKind.complaint:
        subscriber_operations.suppress(session, target.address, "complained", f"complaint ({source}): {report.detail}")
        if subscriber is not None:
            subscriber_operations.unsubscribe(session, subscriber,
                                              subscriber_operations.RequestMeta(source=COMPLAINT_SOURCE))
        log.info("report %s: complaint, %s suppressed and unsubscribed", report.reference, who)
        return Outcome.suppressed
    if subscriber is None:
        return Outcome.counted
    soft = session.scalar(select(func.count()).select_from(BounceEvent).where(
        BounceEvent.subscriber_id == subscriber.id, BounceEvent.kind == BounceKind.soft.value,
        BounceEvent.received_at > now - timedelta(days=settings.soft_days))) or 0
    if soft >= settings.soft_limit:
        subscriber_operations.suppress(session, target.address, "bounced",
                                       f"{soft} soft bounces within {settings.soft_days} days ({source})")
        log.info("report %s: soft bounce %d within %d days, %s suppressed", report.reference, soft,
                 settings.soft_days, who)
        return Outcome.suppressed
    log.info("report %s: soft bounce %d of %d within %d days for %s", report.reference, soft,
             settings.soft_limit, settings.soft_days, who)
    return Outcome.counted


def _targets(session: Session, report: Report, secret: str) -> list[_Target]:
    """Whom the report is about: by VERP token (signed), else the original's Message-ID or unsubscribe
    token, else (a relay's notification, behind its shared secret) the recipient address it names."""
    rows: list[OutboxMessage] = []
    for token in report.tokens:
        outbox_id = verp.outbox_id(token, secret)
        row = session.get(OutboxMessage, outbox_id) if outbox_id is not None else None
        if row is None:
            # A forged token, or one for a row that is gone: never act on it. No address in the log.
            log.warning("report %s: VERP token %s ignored: %s", report.reference, token.partition("-")[0],
                        "forged (its signature is wrong)" if outbox_id is None else "its message is gone")
            continue
        rows.append(row)
    if report.tokens and not rows:
        return []  # a report whose only names are forged is not believed by its other names either
    if not rows and report.message_ids:
        rows = list(session.scalars(select(OutboxMessage).where(OutboxMessage.message_id.in_(report.message_ids))))
    targets = [_Target(row.recipient, session.get(Subscriber, row.subscriber_id) if row.subscriber_id else None,
                       row.send_id) for row in rows if row.recipient]
    if not targets and report.message_ids:
        targets = _bulk_targets(session, report, secret)
    if not targets:
        for token in report.unsubscribe_tokens:
            try:
                subscriber_id, _version = subscriber_tokens.read_unsubscribe(token)
            except InvalidToken:
                log.warning("report %s: unsubscribe token ignored: not one of ours", report.reference)
                continue
            subscriber = session.get(Subscriber, subscriber_id)
            if subscriber is not None:
                targets.append(_Target(subscriber.email, subscriber, None))
    if not targets:
        for address in report.addresses:
            subscriber = session.scalar(select(Subscriber).where(func.lower(Subscriber.email) == address.lower()))
            targets.append(_Target(subscriber.email if subscriber else address, subscriber, None))
    unique: dict[str, _Target] = {}
    for target in targets:
        unique.setdefault(target.address.lower(), target)
    return list(unique.values())


def _bulk_targets(session: Session, report: Report, secret: str) -> list[_Target]:
    """Whom a bulk message's Message-ID names: its send and reader are sealed in it (bulk rows keep
    no Message-ID). The outbox row is preferred (the address as mailed); after retention removed it,
    the reader's current record. Bulk mail sent before Message-IDs were sealed is not found this way."""
    targets = []
    for message_id in report.message_ids:
        ids = message_ids.read(message_id, secret)
        if ids is None:
            if message_ids.is_sealed(message_id):
                # Our shape, not our seal: a forged Message-ID is never acted on. Not logged: its text.
                log.warning("report %s: Message-ID ignored: forged (its seal is not ours)", report.reference)
            continue
        send_id, subscriber_id = ids
        row = session.scalar(select(OutboxMessage).where(OutboxMessage.send_id == send_id,
                                                         OutboxMessage.subscriber_id == subscriber_id))
        subscriber = session.get(Subscriber, subscriber_id)
        if row is not None and row.recipient:
            targets.append(_Target(row.recipient, subscriber, send_id))
        elif subscriber is not None:
            targets.append(_Target(subscriber.email, subscriber, send_id))
        else:
            log.warning("report %s: Message-ID of send %d ignored: its reader is gone", report.reference, send_id)
    return targets
