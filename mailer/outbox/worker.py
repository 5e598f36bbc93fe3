"""The delivery worker: claims due outbox rows, builds and hands them to the relay, records each result.

A pass claims a batch under a name of its own (`claimed_by`), keeps the claim alive on a timer however
slow the relay, and sends over `mail.smtp.connections` connections at once. Each result is written the
moment the relay answers, in its own short transaction and only while the row is still ours, so a
killed worker has at most one unrecorded message per connection (which a later pass sends again), and a
row another worker took over is never sent by both. Ctrl-C and SIGTERM stop claiming, let the messages
on the wire finish and be recorded, and hand the rest of the batch back at once.
"""

from __future__ import annotations

import logging
import queue
import secrets
import socket
import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Sequence

from sqlalchemy import Connection, bindparam, func, select, update

from mailer import clock, db
from mailer import config as config_module
from mailer.config import Config
from mailer.outbox import verp
from mailer.outbox.backends import Backend, Envelope, Result
from mailer.outbox.models import OutboxMessage, OutboxState
from subscribers.models import Suppression
from subscribers.operations import suppress

log = logging.getLogger(__name__)

# A relay that has refused everything for this long gets a warning in the log, once.
REFUSING_WARNING_AFTER = timedelta(minutes=10)
# A pass that sent at least this many messages also logs where its time went.
TIME_SPENT_AFTER = 1000


@dataclass
class Tally:
    """What one pass did: rows sent, put back for a retry, failed for good, and taken over from a dead worker."""

    sent: int = 0
    retrying: int = 0
    failed: int = 0
    reclaimed: int = 0
    errors: Counter = field(default_factory=Counter)  # relay error class -> messages it deferred or failed
    # Where the pass's time went, in seconds: "claiming" and "building" in the pass's own thread,
    # "relay" and "recording" (waiting for the commit) summed over the connections.
    seconds: Counter = field(default_factory=Counter)
    commits: int = 0  # the recorder's transactions: fewer than the results when connections share them

    @property
    def handled(self) -> int:
        """Rows this pass claimed and recorded."""
        return self.sent + self.retrying + self.failed

    def add(self, other: Tally) -> None:
        with _TALLY_LOCK:  # the pass's thread and the connections add to one tally
            self._add(other)

    def add_seconds(self, phase: str, seconds: float) -> None:
        with _TALLY_LOCK:
            self.seconds[phase] += seconds

    def _add(self, other: Tally) -> None:
        self.sent += other.sent
        self.retrying += other.retrying
        self.failed += other.failed
        self.reclaimed += other.reclaimed
        self.errors.update(other.errors)
        self.seconds.update(other.seconds)
        self.commits += other.commits


_TALLY_LOCK = threading.Lock()


@contextmanager
def timed(tally: Tally, phase: str):
    """Add the time the block takes to `tally.seconds[phase]`."""
    started = time.perf_counter()
    try:
        yield
    finally:
        tally.add_seconds(phase, time.perf_counter() - started)


def retry_delay(attempts: int) -> timedelta:
    """Back off 1, 2, 4 … minutes, capped at 4 hours."""
    return timedelta(minutes=min(2 ** max(attempts - 1, 0), 240))


def new_holder() -> str:
    """A name for one pass's claims: host, process and a random part (fits `claimed_by`)."""
    return f"{socket.gethostname()[:16]}:{threading.get_native_id()}:{secrets.token_hex(4)}"


def claim_due(config: Config, limit: int, holder: str | None = None, tally: Tally | None = None) -> list[OutboxMessage]:
    """Mark up to `limit` due rows as ours (`sending`, claimed by `holder`) and return them.

    Rows whose worker died (lease run out) come back first; then queued rows, highest priority
    first, so an urgent alert overtakes a digest that is still draining; oldest due first within a
    priority. The rows taken over from a dead worker are counted in `tally.reclaimed`.
    """
    now = clock.now()
    lease = timedelta(seconds=config["delivery"]["lease_seconds"])
    holder = holder or new_holder()
    with db.session.session_factory.begin() as session:
        # Rows whose worker died first, then queued ones. Two queries, not one with OR: with OR,
        # PostgreSQL sorts every due row on each claim (84 ms at 200k queued rows).
        is_postgres = session.get_bind().dialect.name == "postgresql"
        abandoned = (select(OutboxMessage.id)
                     .where(OutboxMessage.state == OutboxState.sending, OutboxMessage.claimed_at < now - lease)
                     .order_by(OutboxMessage.priority.desc(), OutboxMessage.claimed_at, OutboxMessage.id)
                     .limit(limit))
        if is_postgres:  # two workers each skip the rows the other is claiming (SQLite: BEGIN IMMEDIATE)
            abandoned = abandoned.with_for_update(skip_locked=True)
        ids: list[int] = list(session.scalars(abandoned))
        if tally is not None:
            tally.add(Tally(reclaimed=len(ids)))
        if len(ids) < limit:
            ids += _due_queued(session, now, limit - len(ids), is_postgres)
        if not ids:
            return []
        session.execute(
            update(OutboxMessage).where(OutboxMessage.id.in_(ids))
            .values(state=OutboxState.sending, claimed_at=now, claimed_by=holder)
        )
        rows = list(session.scalars(select(OutboxMessage).where(OutboxMessage.id.in_(ids))
                                    .order_by(OutboxMessage.priority.desc(), OutboxMessage.id)))
    return rows


def _due_queued(session, now: datetime, limit: int, is_postgres: bool) -> list[int]:
    """Up to `limit` queued rows due now: highest priority first, oldest due first within a priority.

    One priority at a time, so that each query reads ix_outbox_due (state, priority, next_attempt_at)
    in its own order and stops after `limit` rows. Asked for "priority DESC, next_attempt_at" at once,
    both databases sorted every due row of a priority on each claim (a digest's rows all share one
    due time): 24 ms a claim at 100k queued on SQLite, a pass over a queue quadratic in its length.
    """
    ids: list[int] = []
    below: int | None = None
    while len(ids) < limit:
        top = (select(OutboxMessage.priority)
               .where(OutboxMessage.state == OutboxState.queued, OutboxMessage.next_attempt_at <= now))
        if below is not None:
            top = top.where(OutboxMessage.priority < below)
        priority = session.scalar(top.order_by(OutboxMessage.priority.desc()).limit(1))
        if priority is None:
            break
        level = (select(OutboxMessage.id)
                 .where(OutboxMessage.state == OutboxState.queued, OutboxMessage.priority == priority,
                        OutboxMessage.next_attempt_at <= now)
                 .order_by(OutboxMessage.next_attempt_at).limit(limit - len(ids)))
        if is_postgres:
            level = level.with_for_update(skip_locked=True)
        ids += session.scalars(level)
        below = priority
    return ids


class Claim:
    """Keeps one pass's claim alive: renews `claimed_at` on a timer, whatever the relay is doing.

    `is_live()` says whether a message may still go: it turns false when a renewal is overdue (the
    database was unreachable), well before another worker could take the rows over, so the two never
    send the same row.
    """

    def __init__(self, config: Config, holder: str):
        self.holder = holder
        self.lease = config["delivery"]["lease_seconds"]
        # The rows' claimed_at as last written: claim_due wrote it a moment ago.
        self._renewed_at = clock.now()
        self._lapsed = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mailer-claim", daemon=True)

    def __enter__(self) -> Claim:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def is_live(self) -> bool:
        """Whether the claim is younger than two thirds of the lease: a rival takes rows only after a whole
        lease, so a third of it is left for the message now going out and for clocks that disagree.

        A claim that lapsed stays lapsed, even if a late renewal gets through: by then a rival may
        have taken some of its rows, so none of them goes out under it. The pass claims afresh.
        """
        if self._lapsed:
            return False
        self._lapsed = clock.now() >= self._renewed_at + timedelta(seconds=self.lease * 2 / 3)
        return not self._lapsed

    def renew(self) -> None:
        now = clock.now()
        with db.session.session_factory.begin() as session:
            session.execute(update(OutboxMessage).where(
                OutboxMessage.claimed_by == self.holder, OutboxMessage.state == OutboxState.sending)
                .values(claimed_at=now))
        self._renewed_at = now

    def _run(self) -> None:
        while not self._stop.wait(self.lease / 3):
            try:
                self.renew()
            except Exception:  # the database is away: is_live() runs out and sending pauses
                log.warning("could not renew the claim on the batch being sent; it lapses if this goes on")


def envelope_for(config: Config, row: OutboxMessage, secret: str, built=None) -> Envelope:
    """The envelope for one row (with `built`, the message the worker made for it); `secret` signs
    the VERP token when `mail.return_path` asks for one."""
    if built is not None:  # a send's row: the address as the message has it (an IDN in ASCII)
        return Envelope(row.id, verp.envelope_sender(config, row.id, secret), built.recipient, built.content)
    return Envelope(row.id, verp.envelope_sender(config, row.id, secret), row.recipient, row.content or b"")


def record(config: Config, results: list[Result], holder: str | None = None,
           connection: Connection | None = None) -> Tally:
    """Write each result back: sent, retry later, or failed for good (a refused address is suppressed).

    A temporary failure is retried with back-off until `delivery.give_up_after` has passed since the
    row was queued. With `holder`, only rows still claimed by it are written: a row another worker
    took over is left to it.
    """
    now = clock.now()
    give_up_after = config_module.duration(config["delivery"]["give_up_after"])
    tally = Tally()
    sent_ids = [result.outbox_id for result in results if result.is_sent]
    failures = [result for result in results if not result.is_sent]
    mark_sent = (_MARK_SENT if holder is not None else _MARK_SENT_ANYONES,
                 {"ids": sent_ids, "now": now, "holder": holder})
    if not failures and connection is not None:  # the recorder's common case: Core, on its kept connection
        with connection.begin():
            tally.sent = connection.execute(*mark_sent).rowcount
        return tally
    with db.session.session_factory.begin() as session:
        if sent_ids:
            tally.sent = session.connection().execute(*mark_sent).rowcount
        by_id = {row.id: row for row in session.scalars(
            select(OutboxMessage).where(OutboxMessage.id.in_([r.outbox_id for r in failures]), *_still_ours(holder)))}
        for result in failures:
            row = by_id.get(result.outbox_id)
            if row is None:
                continue
            row.attempts += 1
            row.claimed_at, row.claimed_by = None, None
            row.last_error = result.error[:2000]
            if result.is_permanent or now - row.created_at >= give_up_after:
                row.state = OutboxState.failed
                tally.failed += 1
            else:
                row.state = OutboxState.queued
                row.next_attempt_at = now + retry_delay(row.attempts)
                tally.retrying += 1
            if not result.is_withdrawn:
                tally.errors[_error_class(result.error)] += 1
            if result.is_bounce:
                suppress(session, row.recipient, "bounced", result.error)
    return tally


# The common write, built once: at hundreds of messages a second, building the statement and the
# ORM's bookkeeping for a bulk UPDATE cost more than SQLite's work. Core, with the ids expanded.
_outbox = OutboxMessage.__table__
_MARK_SENT_ANYONES = (
    update(_outbox).where(_outbox.c.id.in_(bindparam("ids", expanding=True)))
    .values(state=OutboxState.sent, sent_at=bindparam("now"), last_error="", claimed_at=None,
            claimed_by=None, attempts=_outbox.c.attempts + 1))
_MARK_SENT = _MARK_SENT_ANYONES.where(_outbox.c.state == OutboxState.sending,
                                      _outbox.c.claimed_by == bindparam("holder"))


def _error_class(error: str) -> str:
    """What a relay's error is, without the part that names a message or an address."""
    head = error.split(":", 2)
    if len(head) >= 2 and head[0] in {"smtp", "maildir", "dkim"}:
        return ":".join(head[:2]).strip()
    return error[:3]  # an SMTP reply: its code


def _still_ours(holder: str | None) -> tuple:
    if holder is None:
        return ()
    return (OutboxMessage.state == OutboxState.sending, OutboxMessage.claimed_by == holder)


def hand_back(ids: Sequence[int], holder: str) -> int:
    """Put claimed rows we did not send back in the queue, due now: nobody waits for a lease to run out."""
    if not ids:
        return 0
    with db.session.session_factory.begin() as session:
        return session.execute(update(OutboxMessage).where(
            OutboxMessage.id.in_(list(ids)), *_still_ours(holder))
            .values(state=OutboxState.queued, claimed_at=None, claimed_by=None)).rowcount


def suppressed_bulk(rows: list[OutboxMessage]) -> dict[int, str]:
    """Bulk rows (of a send) whose address was suppressed since they were queued: id -> the reason.

    A 100k digest drains for hours; whoever unsubscribes or bounces meanwhile gets no more of it.
    Lifecycle mail (a confirmation, say) still goes: the person asked for it.
    """
    bulk = {row.id: row.recipient for row in rows if row.send_id is not None}
    if not bulk:
        return {}
    with db.session.session_factory.begin() as session:
        db.reading(session)
        reasons = dict(session.execute(
            select(Suppression.email, Suppression.reason).where(Suppression.email.in_(set(bulk.values())))).all())
    return {outbox_id: reasons[address] for outbox_id, address in bulk.items() if address in reasons}


def claim_size(config: Config, connections: int = 1) -> int:
    """How many rows to claim at once: `delivery.batch_size`, fewer when the rate limit is slow.

    The claim is renewed on a timer, so a slow batch is not taken over; a small one under a slow
    rate limit still lets a stop hand back little and another worker share the queue.
    """
    batch_size = max(config["delivery"]["batch_size"], connections)
    rate = config["mail.smtp"]["rate_per_second"] if config["mail"]["backend"] == "smtp" else 0
    if rate > 0:
        batch_size = min(batch_size, max(connections, rate * 10))
    return batch_size


def queue_depth() -> int:
    with db.session.session_factory() as session:
        return session.scalar(select(func.count()).select_from(OutboxMessage)
                              .where(OutboxMessage.state == OutboxState.queued)) or 0


def run_once(config: Config, backends: Backend | Sequence[Backend], stopping: threading.Event | None = None) -> Tally:
    """Deliver everything due now; return what became of the rows handled.

    `backends` is one backend, or one per connection to send over at once. This thread claims and
    builds the next batch while the connections send the last one, so they never wait for it. Setting
    `stopping` ends the pass cleanly: no more claims, the messages on the wire are finished and
    recorded, the rest handed back.
    """
    from mailer.sends.delivery import Builder

    pool = list(backends) if isinstance(backends, (list, tuple)) else [backends]
    stopping = stopping or threading.Event()
    tally = Tally()
    batch_size = claim_size(config, len(pool))
    secret = config_module.secret_key(config, Path("var"))
    builder = Builder(config, secret)
    claims: list[Claim] = []
    with Recorder(config, tally) as recorder:
        sending = Sending(pool, recorder, stopping, capacity=batch_size)
        try:
            while not stopping.is_set() and not sending.halted.is_set():
                if not claims or not claims[-1].is_live():  # a lapsed claim's rows stay set aside
                    claims.append(Claim(config, new_holder()).__enter__())
                claim = claims[-1]
                with timed(tally, "claiming"):
                    rows = claim_due(config, batch_size, claim.holder, tally)
                if rows:
                    with timed(tally, "building"):
                        envelopes = prepare(config, builder, rows, claim.holder, secret, tally)
                    sending.offer(claim, envelopes)
                    continue
                # Nothing more is due. Rows set aside on the way (a lapsed claim) are due again once
                # handed back: wait for the connections, then go on if there were any.
                sending.drain()
                if not sending.hand_back_unsent():
                    break
        finally:
            sending.finish()
            sending.hand_back_unsent()
            for claim in claims:
                claim.close()
    return tally


def prepare(config: Config, builder, rows: list[OutboxMessage], holder: str, secret: str,
            tally: Tally) -> list[Envelope]:
    """The envelopes of a claimed batch; rows not to send any more (unsubscribed, erased since they
    were queued) are recorded as such instead."""
    withdrawn = suppressed_bulk(rows)
    with db.session.session_factory() as session:
        db.reading(session)  # looking readers up holds up none of the connections' commits
        built = builder.build(session, [row for row in rows if row.id not in withdrawn])
    refusals = [Result(row.id, False, True, f"not sent: the address was {reason} after this was queued",
                       is_withdrawn=True) for row in rows if (reason := withdrawn.get(row.id))]
    refusals += [Result(row_id, False, True, "not sent: the reader's record was erased", is_withdrawn=True)
                 for row_id, content in built.items() if content is None]
    if refusals:
        tally.add(record(config, refusals, holder))
    return [envelope_for(config, row, secret, built.get(row.id)) for row in rows
            if row.id not in withdrawn and not (row.id in built and built[row.id] is None)]


class Sending:
    """The connections of one pass, each taking the next envelope as soon as its last is recorded."""

    def __init__(self, pool: list[Backend], recorder: Recorder, stopping: threading.Event, capacity: int):
        self.recorder, self.stopping = recorder, stopping
        self.halted = threading.Event()  # results can no longer be recorded: send nothing more
        self._unsent: list[tuple[str, int]] = []  # (holder, row id) claimed but not offered to the relay
        self._work: queue.Queue[tuple[Claim, Envelope] | None] = queue.Queue(maxsize=capacity)  # a batch ahead
        self._lock = threading.Lock()
        self._relay_down: list[Result] = []  # the connection error that stopped the pass, if one did
        self._threads = [threading.Thread(target=self._send_from, args=(backend,), name=f"mailer-smtp-{n}",
                                          daemon=True) for n, backend in enumerate(pool)]
        for thread in self._threads:
            thread.start()

    def offer(self, claim: Claim, envelopes: list[Envelope]) -> None:
        for envelope in envelopes:
            self._work.put((claim, envelope))

    def drain(self) -> None:
        """Wait until every envelope offered is sent and recorded, or set aside."""
        self._work.join()

    def finish(self) -> None:
        """Wait for the connections to empty the queue, and stop them."""
        for _ in self._threads:
            self._work.put(None)
        for thread in self._threads:
            thread.join()

    def hand_back_unsent(self) -> int:
        """Put the rows set aside back in the queue, due now; how many there were."""
        with self._lock:
            unsent, self._unsent = self._unsent, []
        by_holder: dict[str, list[int]] = {}
        for holder, outbox_id in unsent:
            by_holder.setdefault(holder, []).append(outbox_id)
        for holder, ids in by_holder.items():
            hand_back(ids, holder)
        return len(unsent)

    def _send_from(self, backend: Backend) -> None:
        while (item := self._work.get()) is not None:
            try:
                self._send(backend, *item)
            except Exception:  # a fault of ours, not the relay's: stop sending, keep taking the queue
                if not self.halted.is_set():
                    self.halted.set()
                    log.exception("a delivery connection failed; this pass stops")
            finally:
                self._work.task_done()
        self._work.task_done()

    def _send(self, backend: Backend, claim: Claim, envelope: Envelope) -> None:
        if self.stopping.is_set() or self.halted.is_set() or not claim.is_live():
            with self._lock:
                self._unsent.append((claim.holder, envelope.outbox_id))
            return
        if self._relay_down:  # no point offering the rest to a relay we cannot reach: a retry later
            result = replace(self._relay_down[0], outbox_id=envelope.outbox_id)
        else:
            with timed(self.recorder.tally, "relay"):
                [result] = backend.send([envelope])
            if result.is_connection_error:
                self._relay_down.append(result)
        # Waits for the commit: only then the next message. If the database is away, this raises and the
        # pass stops; the rows come back when their lease runs out.
        with timed(self.recorder.tally, "recording"):
            self.recorder.record(result, claim.holder)


class Recorder:
    """Records the connections' results in shared commits, each connection waiting for its own.

    One transaction a message made the connections queue for SQLite's write lock and its fsync
    (two thirds of a pass's time at 4 connections). Here the first connection with a result commits
    it, together with every result that came in while the last commit ran (group commit: a
    connection whose result a neighbour committed goes on at once). A connection sends its next
    message only once its last result is on disk, so a SIGKILL still leaves at most one unrecorded
    message per connection, while the commits get fewer the busier the worker is. The committer keeps
    one database connection for the pass: no pool checkout, no reset, no second thread to wake.
    """

    def __init__(self, config: Config, tally: Tally):
        self.config, self.tally = config, tally
        self._pending: list[_Written] = []
        self._pending_lock = threading.Lock()
        self._commit_lock = threading.Lock()  # one committer at a time; it owns the connection
        self._connection: Connection | None = None

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc) -> None:
        with self._commit_lock:
            self._let_go()

    def record(self, result: Result, holder: str) -> None:
        """Record one result of a row claimed by `holder`; return once it is committed (raises what the
        commit raised)."""
        written = _Written(result, holder)
        with self._pending_lock:
            self._pending.append(written)
        with self._commit_lock:
            if not written.is_done:  # nobody took it along: commit it and whatever came in meanwhile
                with self._pending_lock:
                    batch, self._pending = self._pending, []
                self._commit(batch)
        if written.error is not None:
            raise written.error

    def _commit(self, batch: list[_Written]) -> None:
        error = None
        by_holder: dict[str, list[Result]] = {}
        for written in batch:
            by_holder.setdefault(written.holder, []).append(written.result)
        try:
            if self._connection is None:
                self._connection = db.session.session_factory.kw["bind"].connect()
            for holder, results in by_holder.items():  # one holder but for a moment after a claim lapsed
                self.tally.add(record(self.config, results, holder, self._connection))
            self.tally.add(Tally(commits=1))
        except Exception as exc:  # the database is away: the connections stop; the lease brings the rows back
            error = exc
            self._let_go()
        for written in batch:
            written.error, written.is_done = error, True

    def _let_go(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            except Exception:  # a connection the database dropped: nothing left to close
                pass
            self._connection = None


@dataclass
class _Written:
    result: Result
    holder: str
    is_done: bool = False
    error: Exception | None = None


def describe(tally: Tally, depth: int) -> str:
    """The pass as one log line."""
    return (f"delivery pass: sent {tally.sent}, deferred {tally.retrying}, failed {tally.failed}, "
            f"reclaimed {tally.reclaimed}, queue depth {depth}")


def time_spent(tally: Tally) -> str:
    """Where a pass's time went, for the log: the relay's share against our own."""
    return (", ".join(f"{phase} {tally.seconds[phase]:.1f} s" for phase in ("claiming", "building", "relay", "recording"))
            + f" ({tally.commits} commits)")


class RelayWatch:
    """Warns once when the relay has refused everything for REFUSING_WARNING_AFTER."""

    def __init__(self):
        self.refusing_since: datetime | None = None
        self.warned = False

    def note(self, tally: Tally) -> None:
        now = clock.now()
        if tally.sent:
            self.refusing_since, self.warned = None, False
        elif tally.errors:
            self.refusing_since = self.refusing_since or now
            if not self.warned and now - self.refusing_since >= REFUSING_WARNING_AFTER:
                log.warning("the relay has refused every message for %d minutes: check mail.smtp and the relay",
                            (now - self.refusing_since).total_seconds() // 60)
                self.warned = True


def log_pass(tally: Tally, watch: RelayWatch | None = None) -> None:
    """One line for a pass that did something, and its relay errors."""
    if not tally.handled and not tally.errors:
        return
    depth = queue_depth()
    log.log(logging.WARNING if tally.failed else logging.INFO, describe(tally, depth),
            extra={"sent": tally.sent, "deferred": tally.retrying, "failed": tally.failed,
                   "reclaimed": tally.reclaimed, "queued": depth})
    if tally.sent >= TIME_SPENT_AFTER:  # relay and recording: summed over the connections
        log.info("delivery pass time: %s", time_spent(tally),
                 extra={"commits": tally.commits,
                        **{f"{phase}_seconds": round(value, 4) for phase, value in tally.seconds.items()}})
    for error, count in sorted(tally.errors.items()):
        log.warning("relay error %s: %d message(s) deferred or failed this pass", error, count,
                    extra={"relay_error": error, "messages": count})
    if watch is not None:
        watch.note(tally)


class WorkerThread(threading.Thread):
    """A worker inside `mailer serve` (or `mailer worker`): drains the outbox, then sleeps `delivery.poll_seconds`."""

    def __init__(self, app, backends: Backend | Sequence[Backend]):
        super().__init__(name="mailer-delivery", daemon=True)
        self.app = app
        self.pool = list(backends) if isinstance(backends, (list, tuple)) else [backends]
        self.stopping = threading.Event()

    def run(self) -> None:
        config = self.app.config["MAILER"]
        watch = RelayWatch()
        with self.app.app_context():
            while not self.stopping.is_set():
                try:
                    log_pass(run_once(config, self.pool, self.stopping), watch)
                except Exception:  # keep the worker alive; the row's lease brings it back
                    log.exception("delivery pass failed")
                self.stopping.wait(config["delivery"]["poll_seconds"])
        for backend in self.pool:
            backend.close()

    def stop(self) -> None:
        self.stopping.set()
