"""The delivery worker's bookkeeping: leases after a crash, no double delivery, and `mailer worker --once`."""

from __future__ import annotations

import email
import email.policy
import mailbox
import secrets
import threading
from datetime import timedelta

from sqlalchemy import func, select

from mailer import db, emails
from mailer.sends.models import Send, SendKind
from mailer.outbox.backends import MemoryBackend
from mailer.outbox.models import OutboxMessage, OutboxState
from mailer.outbox.worker import claim_due, run_once
from subscribers.models import Suppression
from tests.conftest import make_config
from tests.contract import check_message
from tests.test_delivery import POSTAL, queue


def queue_many(session, config, count: int, *, recipients=None, send_id=None) -> list[int]:
    """`count` rows carrying the same real message (building each would cost more than the test)."""
    recipients = recipients or [f"reader{i}@example.org" for i in range(count)]
    rendered = emails.Rendered(
        subject="News",
        text="Unsubscribe: https://news.example.org/unsubscribe/t\n"
             "Manage: https://news.example.org/preferences/t\n" + POSTAL,
        html='<a href="https://news.example.org/unsubscribe/t">Unsubscribe</a>'
             '<a href="https://news.example.org/preferences/t">Manage</a>' + POSTAL)
    content = emails.build(config, to="reader@example.org", rendered=rendered,
                           unsubscribe_url="https://news.example.org/unsubscribe/t").as_bytes()
    batch = secrets.token_hex(4)  # keeps keys unique when a test queues twice
    rows = [OutboxMessage(kind="test", dedupe_key=f"test:{batch}:{i}", recipient=recipients[i],
                          message_id=f"<{batch}.{i}@news.example.org>", content=content, send_id=send_id)
            for i in range(count)]
    session.add_all(rows)
    session.commit()
    ids = [row.id for row in rows]
    db.session.remove()
    return ids


def test_row_of_a_dead_worker_is_resumed_after_the_lease(session, config, frozen_clock):
    [outbox_id] = queue(session, "reader@example.org")
    assert [row.id for row in claim_due(config, 10)] == [outbox_id]  # claimed, then the worker died
    memory = MemoryBackend()
    lease = timedelta(seconds=config["delivery"]["lease_seconds"])

    assert run_once(config, memory).handled == 0
    frozen_clock.advance(lease)
    assert run_once(config, memory).handled == 0  # not before the lease has run out
    frozen_clock.advance(timedelta(seconds=1))
    assert run_once(config, memory).sent == 1
    assert [env.outbox_id for env in memory.sent] == [outbox_id]
    assert session.get(OutboxMessage, outbox_id).state == OutboxState.sent


def test_a_second_pass_delivers_nothing_again(session, config):
    queue_many(session, config, 3)
    memory = MemoryBackend()
    assert run_once(config, memory).sent == 3
    assert run_once(config, memory).handled == 0
    assert len(memory.sent) == 3


def test_two_workers_deliver_every_row_exactly_once(session, database_url, tmp_path):
    config = make_config(database_url, tmp_path, delivery={"batch_size": 7})
    ids = queue_many(session, config, 200)
    backends = [MemoryBackend(), MemoryBackend()]
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def work(backend):
        start.wait()
        try:
            run_once(config, backend)
        except BaseException as exc:  # surfaced below: a thread's exception would otherwise vanish
            errors.append(exc)
        finally:
            db.session.remove()

    threads = [threading.Thread(target=work, args=(backend,)) for backend in backends]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    delivered = [env.outbox_id for backend in backends for env in backend.sent]
    assert sorted(delivered) == ids  # every row, none twice
    sent = session.scalar(select(func.count()).where(OutboxMessage.state == OutboxState.sent))
    assert sent == 200


def test_bulk_mail_queued_before_a_suppression_is_not_sent(session, config):
    send = Send(kind=SendKind.digest, slug="weekly", subject="Weekly")
    session.add(send)
    session.commit()
    [bulk_gone, bulk_reader] = queue_many(session, config, 2, recipients=["gone@example.org", "reader@example.org"],
                                          send_id=send.id)
    session.add(Suppression(email="gone@example.org", reason="unsubscribed"))
    session.commit()
    [lifecycle_gone] = queue_many(session, config, 1, recipients=["gone@example.org"])
    memory = MemoryBackend()

    tally = run_once(config, memory)

    assert sorted(env.outbox_id for env in memory.sent) == [bulk_reader, lifecycle_gone]
    assert (tally.sent, tally.failed) == (2, 1)
    row = session.get(OutboxMessage, bulk_gone)
    assert row.state == OutboxState.failed
    assert row.last_error == "not sent: the address was unsubscribed after this was queued"


def test_worker_once_cli_fills_a_maildir(runner, session, config):
    queue(session, "one@example.org", "two@example.org", "three@example.org")
    result = runner.invoke(["worker", "--once"])
    assert result.exit_code == 0, result.output
    assert "delivered 3 message(s); 0 to retry later; 0 failed" in result.output
    box = mailbox.Maildir(config["mail"]["maildir"], create=False)
    messages = [email.message_from_bytes(box.get_bytes(key), policy=email.policy.default) for key in box.keys()]
    assert sorted(str(m["To"]) for m in messages) == ["one@example.org", "three@example.org", "two@example.org"]
    for message in messages:
        assert message["Return-Path"] == "<updates@news.example.org>"
        check_message(message, postal_address=POSTAL)
    assert runner.invoke(["worker", "--once"]).output.startswith("delivered 0 message(s)")


class SlowRelay(MemoryBackend):
    """A relay slow enough that a batch outlasts the lease; between its answers a rival worker
    looks for rows whose lease ran out, as a second `mailer worker` would."""

    def __init__(self, config, frozen_clock):
        super().__init__()
        self.config, self.clock = config, frozen_clock
        self.lease = timedelta(seconds=config["delivery"]["lease_seconds"])
        self.rival_claimed: list[int] = []

    def send(self, batch):
        self.clock.advance(self.lease * 0.4)
        self.rival_claimed += [row.id for row in claim_due(self.config, 1000)]
        return super().send(batch)


def test_a_slow_batch_renews_its_lease_so_no_rival_sends_it_again(session, config, frozen_clock):
    ids = queue_many(session, config, 100)
    relay = SlowRelay(config, frozen_clock)
    assert run_once(config, relay).sent == 100
    # Each message takes 0.4 of a lease: the worker stops sending from a claim two thirds of a lease old
    # and claims afresh, so the rival never finds a row whose lease ran out.
    assert relay.rival_claimed == []
    assert sorted(env.outbox_id for env in relay.sent) == ids
    assert session.scalar(select(func.count()).where(OutboxMessage.state == OutboxState.sent)) == 100


def test_a_worker_that_lost_its_claim_does_not_overwrite_the_new_owner(session, config, frozen_clock):
    from mailer.outbox.backends import Result
    from mailer.outbox.worker import record

    [outbox_id] = queue(session, "reader@example.org")
    [mine] = claim_due(config, 10)
    frozen_clock.advance(timedelta(seconds=config["delivery"]["lease_seconds"] + 1))
    [theirs] = claim_due(config, 10)  # my lease ran out: another worker took the row over
    assert theirs.id == outbox_id
    tally = record(config, [Result(outbox_id, False, False, "451 4.3.0 try later")], mine.claimed_by)
    assert tally.handled == 0
    row = session.get(OutboxMessage, outbox_id)
    assert (row.state, row.claimed_at, row.attempts) == (OutboxState.sending, theirs.claimed_at, 0)
