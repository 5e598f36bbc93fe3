"""The delivery worker: claims due outbox rows, hands them to a backend, records each result.

Claiming and recording are separate short transactions in the worker's own sessions, so a crash leaves rows in `sending`;
their lease runs out and another pass picks them up again (resume, never skip). A worker whose batch runs
long renews its lease as it goes, and writes results only for rows still under its own claim, so a slow
relay cannot make two workers send the same message.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import defer

from mailer import clock, db
from mailer import config as config_module
from mailer.config import Config
from mailer.outbox import verp
from mailer.outbox.backends import Backend, Envelope, Result
from mailer.outbox.models import OutboxMessage, OutboxState
from subscribers.models import Suppression

log = logging.getLogger(__name__)


@dataclass
class Tally:
    """What one pass did: rows sent, put back for a retry, and failed for good."""

    sent: int = 0
    retrying: int = 0
    failed: int = 0

    @property
    def handled(self) -> int:
        """Rows this pass claimed and recorded."""
        return self.sent + self.retrying + self.failed


def retry_delay(attempts: int) -> timedelta:
    """Back off 1, 2, 4 … minutes, capped at 4 hours."""
    return timedelta(minutes=min(2 ** max(attempts - 1, 0), 240))


def claim_due(config: Config, limit: int) -> list[OutboxMessage]:
    """Mark up to `limit` due rows as ours (`sending`) and return them.

    Rows whose worker died (lease run out) come back first; then queued rows, highest priority
    first, so an urgent alert overtakes a digest that is still draining; oldest due first within a
    priority.
    """
    now = clock.now()
    lease = timedelta(seconds=config["delivery"]["lease_seconds"])
    with db.session.session_factory.begin() as session:
        # Two queries, not one with OR: with OR, PostgreSQL sorts every due row on each claim
        # (84 ms at 200k queued rows); alone, the queued one reads ix_outbox_due in order (2.9 ms).
        abandoned = (select(OutboxMessage.id)
                     .where(OutboxMessage.state == OutboxState.sending, OutboxMessage.claimed_at < now - lease)
                     .order_by(OutboxMessage.priority.desc(), OutboxMessage.claimed_at, OutboxMessage.id))
        queued = (select(OutboxMessage.id)
                  .where(OutboxMessage.state == OutboxState.queued, OutboxMessage.next_attempt_at <= now)
                  .order_by(OutboxMessage.priority.desc(), OutboxMessage.next_attempt_at, OutboxMessage.id))
        ids: list[int] = []
        for due in (abandoned, queued):
            due = due.limit(limit - len(ids))
            # Two workers on PostgreSQL each skip the rows the other is claiming (SQLite: BEGIN IMMEDIATE).
            if session.get_bind().dialect.name == "postgresql":
                due = due.with_for_update(skip_locked=True)
            ids += session.scalars(due)
            if len(ids) >= limit:
                break
        if not ids:
            return []
        session.execute(
            update(OutboxMessage).where(OutboxMessage.id.in_(ids))
            .values(state=OutboxState.sending, claimed_at=now)
        )
        rows = list(session.scalars(select(OutboxMessage).where(OutboxMessage.id.in_(ids))
                                    .order_by(OutboxMessage.priority.desc(), OutboxMessage.id)))
    return rows


# Messages handed to the backend between two looks at the lease.
LEASE_CHECK_EVERY = 20


def renew_lease(config: Config, ids: list[int], claimed_at: datetime) -> tuple[set[int], datetime]:
    """Extend our claim on `ids` if it is getting old; return the ids still ours and the claim's new stamp.

    A row whose claim is no longer `claimed_at` was taken over by another worker after our lease ran
    out: it is theirs to send now, not ours.
    """
    now = clock.now()
    if not ids or now - claimed_at < timedelta(seconds=config["delivery"]["lease_seconds"]) / 3:
        return set(ids), claimed_at
    with db.session.session_factory.begin() as session:
        ours = set(session.scalars(select(OutboxMessage.id).where(
            OutboxMessage.id.in_(ids), OutboxMessage.state == OutboxState.sending,
            OutboxMessage.claimed_at == claimed_at)))
        if ours:
            session.execute(update(OutboxMessage).where(OutboxMessage.id.in_(ours)).values(claimed_at=now))
    return ours, now


def envelope_for(config: Config, row: OutboxMessage, secret: str) -> Envelope:
    """The envelope for one row; `secret` signs the VERP token when `mail.return_path` asks for one."""
    return Envelope(row.id, verp.envelope_sender(config, row.id, secret), row.recipient, row.content or b"")


def record(config: Config, results: list[Result], claimed_at: datetime | None = None) -> Tally:
    """Write each result back: sent, retry later, or failed for good (a refused address is suppressed).

    With `claimed_at`, only rows still under that claim are written: a row another worker took over
    is left to it.
    """
    now = clock.now()
    max_attempts = config["delivery"]["max_attempts"]
    tally = Tally()
    sent_ids = [result.outbox_id for result in results if result.is_sent]
    failures = [result for result in results if not result.is_sent]
    with db.session.session_factory.begin() as session:
        if sent_ids:
            # The common case is one statement for the whole batch, not a row at a time.
            tally.sent = session.execute(
                update(OutboxMessage).where(OutboxMessage.id.in_(sent_ids), *_still_ours(claimed_at))
                .values(state=OutboxState.sent, sent_at=now, last_error="", claimed_at=None,
                        attempts=OutboxMessage.attempts + 1)
            ).rowcount
        if not failures:
            return tally
        by_id = {row.id: row for row in session.scalars(
            select(OutboxMessage).options(defer(OutboxMessage.content))
            .where(OutboxMessage.id.in_([result.outbox_id for result in failures]), *_still_ours(claimed_at)))}
        for result in failures:
            row = by_id.get(result.outbox_id)
            if row is None:
                continue
            row.attempts += 1
            row.claimed_at = None
            if result.is_permanent or row.attempts >= max_attempts:
                row.state, row.last_error = OutboxState.failed, result.error
                tally.failed += 1
            else:
                row.state, row.last_error = OutboxState.queued, result.error
                row.next_attempt_at = now + retry_delay(row.attempts)
                tally.retrying += 1
            if result.is_bounce:
                _suppress_bounced(session, row.recipient, result.error, now)
    return tally


def _still_ours(claimed_at: datetime | None) -> tuple:
    if claimed_at is None:
        return ()
    return (OutboxMessage.state == OutboxState.sending, OutboxMessage.claimed_at == claimed_at)


def _suppress_bounced(session, address: str, error: str, now) -> None:
    # An existing suppression (unsubscribed, an earlier bounce) already keeps bulk mail away.
    if session.scalar(select(Suppression.id).where(Suppression.email == address)) is None:
        session.add(Suppression(email=address, reason="bounced", detail=error, created_at=now))
        session.flush()  # a second bounce for the same address in this batch sees this row


def suppressed_bulk(rows: list[OutboxMessage]) -> dict[int, str]:
    """Bulk rows (of a send) whose address was suppressed since they were queued: id -> the reason.

    A 100k digest drains for hours; whoever unsubscribes or bounces meanwhile gets no more of it.
    Lifecycle mail (a confirmation, say) still goes: the person asked for it.
    """
    bulk = {row.id: row.recipient for row in rows if row.send_id is not None}
    if not bulk:
        return {}
    with db.session.session_factory.begin() as session:
        reasons = dict(session.execute(
            select(Suppression.email, Suppression.reason).where(Suppression.email.in_(set(bulk.values())))).all())
    return {outbox_id: reasons[address] for outbox_id, address in bulk.items() if address in reasons}


def claim_size(config: Config) -> int:
    """How many rows to claim at once: `delivery.batch_size`, fewer when the rate limit is slow.

    A paced batch must end well inside its lease, or another worker would claim it again and send
    the same messages twice (100 rows at 1 a second would outlast a 5-minute lease's half).
    """
    batch_size = config["delivery"]["batch_size"]
    rate = config["mail.smtp"]["rate_per_second"] if config["mail"]["backend"] == "smtp" else 0
    if rate > 0:
        batch_size = min(batch_size, max(1, rate * config["delivery"]["lease_seconds"] // 2))
    return batch_size


def run_once(config: Config, backend: Backend) -> Tally:
    """Deliver everything due now, batch after batch; return what became of the rows handled."""
    total = Tally()
    batch_size = claim_size(config)
    secret = config_module.secret_key(config, Path("var"))
    while True:
        rows = claim_due(config, batch_size)
        if not rows:
            return total
        claimed_at = rows[0].claimed_at
        withdrawn = suppressed_bulk(rows)
        tallies = [record(config, [
            Result(row.id, False, True, f"not sent: the address was {reason} after this was queued")
            for row in rows if (reason := withdrawn.get(row.id))], claimed_at)]
        to_send = [row for row in rows if row.id not in withdrawn]
        # Sent rows are recorded at the end of the batch, so the renewal covers them too.
        unrecorded = [row.id for row in to_send]
        results: list[Result] = []
        while to_send:
            ours, claimed_at = renew_lease(config, unrecorded, claimed_at)
            to_send = [row for row in to_send if row.id in ours]
            chunk, to_send = to_send[:LEASE_CHECK_EVERY], to_send[LEASE_CHECK_EVERY:]
            results += backend.send([envelope_for(config, row, secret) for row in chunk])
        tallies.append(record(config, results, claimed_at))
        for tally in tallies:
            total.sent += tally.sent
            total.retrying += tally.retrying
            total.failed += tally.failed


class WorkerThread(threading.Thread):
    """A worker inside `mailer serve`: drains the outbox, then sleeps `delivery.poll_seconds`."""

    def __init__(self, app, backend: Backend):
        super().__init__(name="mailer-delivery", daemon=True)
        self.app, self.backend = app, backend
        self.stopping = threading.Event()

    def run(self) -> None:
        config = self.app.config["MAILER"]
        with self.app.app_context():
            while not self.stopping.is_set():
                try:
                    run_once(config, self.backend)
                except Exception:  # keep the worker alive; the row's lease brings it back
                    log.exception("delivery pass failed")
                self.stopping.wait(config["delivery"]["poll_seconds"])
        self.backend.close()

    def stop(self) -> None:
        self.stopping.set()
