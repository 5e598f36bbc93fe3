"""The delivery engine: a send rendered once per topic set and built at send time, results recorded per
message, clean stops, parallel connections, a give-up deadline in time, `mailer outbox retry`, and the
log lines of a pass."""

from __future__ import annotations

import logging
import re
import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from mailer import db
from mailer.digests import operations as digest_operations
from mailer.errors import ConfigError
from mailer.outbox import backends
from mailer.outbox.backends import MemoryBackend, Result
from mailer.outbox.models import OutboxMessage, OutboxState
from mailer.outbox.worker import log_pass, run_once
from mailer.sends import operations as send_operations
from mailer.sends.models import SendVariant
from subscribers.models import Suppression
from tests import factories
from tests.conftest import make_config
from tests.test_delivery import queue, smtp_config, start_smtp  # noqa: F401 (a fixture)


def states(session) -> dict[str, int]:
    session.expire_all()
    rows = session.execute(select(OutboxMessage.state, func.count()).group_by(OutboxMessage.state))
    return {state.value: count for state, count in rows}


def queue_digest(session, readers: int, topics_of=lambda i: ()) -> int:
    """A digest of the fixed articles queued to `readers` confirmed subscribers; the send id."""
    factories.fixed_articles(session)
    for i in range(readers):
        factories.subscriber(session, f"reader{i}@example.org", topics=topics_of(i))
    send = digest_operations.compose_next(session)
    send_operations.queue(session, send)
    session.commit()
    send_id = send.id
    db.session.remove()  # SQLite has one writer at a time: the worker must not wait for us
    return send_id


def test_a_send_is_rendered_once_per_topic_set_and_its_rows_hold_no_bytes(session, config):
    topic_sets = [(), ("lgbtiq-rights",), ("lgbtiq-rights", "ukraine"), ("ukraine",)]
    send_id = queue_digest(session, 40, lambda i: topic_sets[i % 4])
    variants = session.scalars(select(SendVariant).where(SendVariant.send_id == send_id)).all()
    # One render per topic set that has something new; each knows how many readers it is for.
    assert sorted(v.topic_key for v in variants) == sorted({",".join(sorted(t)) for t in topic_sets
                                                            if not t or "lgbtiq-rights" in t or "ukraine" in t})
    assert sum(v.recipients_count for v in variants) == session.scalar(
        select(func.count()).select_from(OutboxMessage).where(OutboxMessage.send_id == send_id))
    rows = session.scalars(select(OutboxMessage).where(OutboxMessage.send_id == send_id)).all()
    assert rows and all(r.content is None and r.variant_id is not None and r.message_id is None for r in rows)
    session.rollback()
    envelopes = factories.deliver(config)
    assert len(envelopes) == len(rows)
    assert states(session) == {"sent": len(rows)}


def test_every_eligible_reader_is_queued_once_even_with_many_topic_sets(session, config):
    slugs = ["a-one", "b-two", "c-three"]
    for slug in slugs:
        factories.topic(session, slug)
    article = factories.article(session, slug="news", title="News", canonical_url="https://example.org/n")
    article.topics = list(session.scalars(select(factories.Topic)))
    combos = [(), ("a-one",), ("b-two", "a-one"), ("c-three", "b-two", "a-one"), ("c-three",)]
    for i in range(25):
        factories.subscriber(session, f"r{i}@example.org", topics=combos[i % 5])
    factories.subscriber(session, "paused@example.org", is_paused=True)
    send = digest_operations.compose_next(session)
    assert send_operations.queue(session, send) == 25
    assert send.recipients_count == 25
    subscribers = session.scalars(select(OutboxMessage.subscriber_id).where(OutboxMessage.send_id == send.id)).all()
    assert len(subscribers) == len(set(subscribers)) == 25


class RecordingCheck(MemoryBackend):
    """Looks in the database before each message: every earlier message of the batch is already recorded."""

    def __init__(self):
        super().__init__()
        self.recorded_before: list[int] = []

    def send(self, batch):
        with db.session.session_factory() as look:
            self.recorded_before.append(look.scalar(select(func.count()).select_from(OutboxMessage)
                                                    .where(OutboxMessage.state == OutboxState.sent)))
        return super().send(batch)


def test_each_result_is_recorded_as_it_comes_not_at_the_end_of_the_batch(session, config):
    queue(session, *(f"reader{i}@example.org" for i in range(6)))
    relay = RecordingCheck()
    assert run_once(config, relay).sent == 6
    # A kill after message n would leave at most the one on the wire unrecorded.
    assert relay.recorded_before == [0, 1, 2, 3, 4, 5]


class StopAfter(MemoryBackend):
    """A relay during whose third message the operator presses Ctrl-C."""

    def __init__(self, stopping: threading.Event, after: int):
        super().__init__()
        self.stopping, self.after = stopping, after

    def send(self, batch):
        results = super().send(batch)
        if len(self.sent) == self.after:
            self.stopping.set()
        return results


def test_a_stop_finishes_the_message_on_the_wire_and_hands_the_rest_back_at_once(session, config):
    ids = queue(session, *(f"reader{i}@example.org" for i in range(10)))
    stopping = threading.Event()
    relay = StopAfter(stopping, 3)
    tally = run_once(config, relay, stopping)
    assert (tally.sent, len(relay.sent)) == (3, 3)
    rows = {row.id: row for row in session.scalars(select(OutboxMessage))}
    assert sorted(i for i in ids if rows[i].state == OutboxState.sent) == sorted(e.outbox_id for e in relay.sent)
    rest = [rows[i] for i in ids if rows[i].state != OutboxState.sent]
    # Not left `sending` until a lease runs out: queued again, unclaimed, due now.
    assert len(rest) == 7 and all(r.state == OutboxState.queued and r.claimed_by is None for r in rest)
    session.rollback()
    assert run_once(config, MemoryBackend()).sent == 7


def test_several_connections_deliver_each_message_once(session, database_url, tmp_path, start_smtp):
    server = start_smtp()
    queue(session, *(f"reader{i}@example.org" for i in range(30)))
    config = smtp_config(database_url, tmp_path, server, smtp={"connections": 3})
    pool = backends.pool_from_config(config)
    assert len(pool) == 3
    try:
        assert run_once(config, pool).sent == 30
    finally:
        for backend in pool:
            backend.close()
    received = [r.rcpt_tos[0] for r in server.received]
    assert sorted(received) == sorted(f"reader{i}@example.org" for i in range(30))
    assert 1 <= len(server.handler.sessions) <= 3


def test_give_up_after_must_be_a_time(tmp_path):
    for bad in ("3", "three days", "0d", "-1h", "3w"):
        with pytest.raises(ConfigError, match="delivery.give_up_after must be a time"):
            make_config(f"sqlite:///{tmp_path}/m.db", tmp_path, delivery={"give_up_after": bad})


class DownRelay(MemoryBackend):
    def send(self, batch):
        return [Result(env.outbox_id, False, False, "smtp: ConnectionRefusedError: [Errno 111] refused")
                for env in batch]


def test_a_relay_down_past_give_up_then_outbox_retry_delivers_each_once(session, config, database_url, tmp_path,
                                                                       frozen_clock, runner):
    send_id = queue_digest(session, 5)
    config_short = make_config(database_url, tmp_path, delivery={"give_up_after": "2m"})
    assert run_once(config_short, DownRelay()).retrying == 5
    frozen_clock.advance(timedelta(minutes=2))
    assert run_once(config_short, DownRelay()).failed == 5
    assert states(session) == {"failed": 5}
    session.rollback()
    result = runner.invoke(["outbox", "retry"])
    assert result.exit_code == 0 and "requeued 0 message(s)" in result.output  # failed ones need --failed
    result = runner.invoke(["outbox", "retry", "--failed", "--send", str(send_id)])
    assert result.exit_code == 0, result.output
    assert "requeued 5 message(s)" in result.output
    db.session.remove()
    memory = MemoryBackend()
    assert run_once(config, memory).sent == 5
    assert len({env.rcpt_to for env in memory.sent}) == 5
    assert states(session) == {"sent": 5}


def test_outbox_retry_leaves_a_suppressed_address_failed(session, config, frozen_clock, runner):
    queue_digest(session, 2)
    run_once(config, DownRelay())
    session.execute(update(OutboxMessage).values(state=OutboxState.failed))
    session.add(Suppression(email="reader0@example.org", reason="unsubscribed"))
    session.commit()
    db.session.remove()
    result = runner.invoke(["outbox", "retry", "--failed"])
    assert "requeued 1 message(s)" in result.output
    failed = session.scalars(select(OutboxMessage.recipient).where(OutboxMessage.state == OutboxState.failed)).all()
    assert failed == ["reader0@example.org"]


@pytest.mark.parametrize("since", ["yesterday", "3x", "2026-13-40"])
def test_outbox_retry_with_a_bad_since_is_one_line(runner, since):
    result = runner.invoke(["outbox", "retry", "--since", since])
    assert result.exit_code != 0
    assert "--since must be a time ago" in result.output and "Traceback" not in result.output


def test_a_pass_says_what_happened_in_one_line_and_relay_errors_once(session, config, caplog):
    queue(session, "a@example.org", "b@example.org", "c@example.org")
    caplog.set_level(logging.INFO, logger="mailer.outbox.worker")
    log_pass(run_once(config, DownRelay()))
    lines = [r.getMessage() for r in caplog.records]
    assert "delivery pass: sent 0, deferred 3, failed 0, reclaimed 0, queue depth 3" in lines
    errors = [line for line in lines if line.startswith("relay error")]
    assert errors == ["relay error smtp: ConnectionRefusedError: 3 message(s) deferred or failed this pass"]
    assert not any("@" in line for line in lines)  # no address in the log


def test_a_big_pass_says_where_its_time_went(session, config, caplog, monkeypatch):
    from mailer.outbox import worker

    queue(session, *(f"reader{i}@example.org" for i in range(8)))
    monkeypatch.setattr(worker, "TIME_SPENT_AFTER", 8)
    caplog.set_level(logging.INFO, logger="mailer.outbox.worker")
    pool = [MemoryBackend() for _ in range(3)]
    log_pass(run_once(config, pool))
    assert sum(len(backend.sent) for backend in pool) == 8
    [record] = [r for r in caplog.records if r.getMessage().startswith("delivery pass time:")]
    spent = dict(re.findall(r"(claiming|building|relay|recording) ([\d.]+) s", record.getMessage()))
    assert spent.keys() == {"claiming", "building", "relay", "recording"}
    # Each connection waited for the commit of every one of its results: recording took some time.
    assert record.recording_seconds > 0 and record.building_seconds > 0
    assert 1 <= record.commits <= 8


def test_a_small_pass_does_not_log_its_time(session, config, caplog):
    queue(session, "a@example.org")
    caplog.set_level(logging.INFO, logger="mailer.outbox.worker")
    log_pass(run_once(config, MemoryBackend()))
    assert not any(r.getMessage().startswith("delivery pass time:") for r in caplog.records)


def test_retention_reduces_old_rows_to_counts_and_the_figures_stay(app, session, config, frozen_clock, runner):
    from mailer import scheduling
    from mailer.sends import queries as send_queries

    send_id = queue_digest(session, 30)
    memory = MemoryBackend()
    run_once(config, memory)
    session.execute(update(OutboxMessage).where(OutboxMessage.id.in_(
        select(OutboxMessage.id).where(OutboxMessage.send_id == send_id).limit(4).scalar_subquery()))
        .values(state=OutboxState.failed))
    queue(session, "late@example.org")  # a confirmation still waiting: never touched
    session.commit()
    before = send_queries.delivery_counts(session, send_id)
    stats_before = runner.invoke(["stats", str(send_id)]).output
    assert before == {"sent": 26, "failed": 4}
    db.session.remove()

    frozen_clock.advance(timedelta(days=config["delivery"]["keep_days"] + 1))
    # A batch at a time (one small transaction each), the rest by the scheduler's job.
    assert send_operations.reduce_old_rows(db.session, frozen_clock.now(), config["delivery"]["keep_days"], batch=7) == 7
    db.session.commit()
    scheduling._app = app
    scheduling.run_task(scheduling.BUILTIN_JOBS["reduce-old-deliveries"][0])
    db.session.remove()
    left = session.scalars(select(OutboxMessage)).all()
    assert [(row.kind, row.state) for row in left] == [("confirmation", OutboxState.queued)]
    assert send_queries.delivery_counts(session, send_id) == before
    assert runner.invoke(["stats", str(send_id)]).output == stats_before
