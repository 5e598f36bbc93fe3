"""Webhooks: events queued with their cause, delivered signed to a real HTTP receiver on a local port, each
once; a receiver that answers 500 or times out is retried with back-off, then marked failed, nothing lost."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from mailer import clock, db
from mailer.digests import operations as digest_operations
from mailer.sends import operations as send_operations
from mailer.links.models import Link
from mailer.links import tokens as link_tokens
from mailer.webhooks import delivery, operations, signing, tasks
from mailer.webhooks.models import WebhookDelivery
from subscribers import operations as subscriber_operations
from subscribers.models import Subscriber, SubscriberState
from tests import factories
from tests.conftest import make_config
from tests.editors import make_editor, sign_in
from tests.webhook_receiver import Receiver


@pytest.fixture
def config(database_url, tmp_path):
    # A short timeout and three attempts, so a test walks the whole retry path in a few seconds.
    return make_config(database_url, tmp_path, webhooks={"timeout_seconds": 1, "max_attempts": 3})


@pytest.fixture
def receiver():
    receiver = Receiver().start()
    yield receiver
    receiver.stop()


def add_webhook(runner, url: str, *extra) -> str:
    """Add a webhook through the CLI, as an admin would; its signing secret."""
    result = runner.invoke(["webhooks", "add", url, *extra])
    assert result.exit_code == 0, result.output
    return re.search(r"signing secret: (\S+)", result.stdout).group(1)


def send_events(runner) -> str:
    db.session.remove()  # end the test's transaction: SQLite has one writer at a time
    result = runner.invoke(["webhooks", "deliver"])
    assert result.exit_code == 0, result.output
    return result.stdout


def verified(secret: str, received) -> dict:
    """The event, after checking its signature the way the README tells a receiver to."""
    header = received.headers["X-Mailer-Signature"]
    fields = dict(part.split("=", 1) for part in header.split(","))
    signed = fields["t"].encode() + b"." + received.body
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(expected, fields["v1"]), "signature does not verify"
    return json.loads(received.body)


def states(session) -> list[tuple]:
    session.expire_all()
    return list(session.execute(select(WebhookDelivery.event, WebhookDelivery.state, WebhookDelivery.attempts)
                                .order_by(WebhookDelivery.id)))


def test_each_event_arrives_once_signed(runner, session, receiver, frozen_clock, client, deliver):
    secret = add_webhook(runner, receiver.url)
    reader = subscriber_operations.sign_up(session, email="reader@example.org", topic_slugs=[])
    session.flush()
    subscriber_operations.confirm(session, reader)
    factories.fixed_articles(session)
    send = digest_operations.compose_next(session)
    send_operations.queue(session, send)
    session.commit()
    petition = session.scalar(select(Link).where(Link.url == factories.PETITION_URL))
    read_more = session.scalar(select(Link).where(Link.kind == "read").limit(1))
    ids = (reader.id, send.id, petition.id)

    assert client.get(f"/l/{link_tokens.make(send.id, petition.id, reader.id)}").status_code == 302
    assert client.get(f"/l/{link_tokens.make(send.id, read_more.id, reader.id)}").status_code == 302  # not an action
    deliver()  # the mail worker sends the confirmation, welcome and digest: the send has finished
    reader = session.get(Subscriber, ids[0])
    subscriber_operations.unsubscribe(session, reader)
    session.commit()

    assert "delivered 4 event(s)" in send_events(runner)
    assert "delivered 0 event(s)" in send_events(runner)  # nothing twice: not on a second pass...
    clock.advance(timedelta(hours=1))
    send_events(runner)  # ...nor once the send has long finished
    events = [verified(secret, r) for r in receiver.received]
    # In the order they were queued: send.finished is noticed by the job, after the unsubscribe.
    assert [e["event"] for e in events] == ["subscriber.confirmed", "action.clicked", "subscriber.unsubscribed",
                                            "send.finished"]
    assert len({e["id"] for e in events}) == 4
    confirmed, clicked, unsubscribed, finished = events
    assert confirmed["data"]["subscriber"] == {"id": ids[0]} == unsubscribed["data"]["subscriber"]
    assert clicked["data"]["link"] == {"id": ids[2], "label": "Sign the petition for Russia to intervene",
                                       "kind": "petition", "url": factories.PETITION_URL}
    assert finished["data"]["send"]["id"] == ids[1]
    assert finished["data"]["delivery"] == {"sent": 1, "failed": 0, "cancelled": 0}
    assert all("reader@example.org" not in r.body.decode() for r in receiver.received)  # no address by default
    first = receiver.received[0]
    assert first.headers["Content-Type"] == "application/json" and first.headers["X-Mailer-Event"] == "subscriber.confirmed"
    assert [state for _, state, _ in states(session)] == ["sent"] * 4


def test_the_address_is_sent_only_when_configured(database_url, tmp_path, receiver):
    from click.testing import CliRunner

    from mailer.app import create_app
    from mailer.cli import cli

    app = create_app(make_config(database_url, tmp_path, webhooks={"include_email": True}))
    with app.app_context():
        runner = CliRunner()
        result = runner.invoke(cli, ["webhooks", "add", receiver.url, "--events", "subscriber.confirmed"],
                               obj={"app": app})
        secret = re.search(r"signing secret: (\S+)", result.stdout).group(1)
        reader = factories.subscriber(db.session, "reader@example.org", state=SubscriberState.pending)
        subscriber_operations.confirm(db.session, reader)
        db.session.commit()
        db.session.remove()
        runner.invoke(cli, ["webhooks", "deliver"], obj={"app": app})
        [event] = [verified(secret, r) for r in receiver.received]
        assert event["data"]["subscriber"] == {"id": reader.id, "email": "reader@example.org"}
    db.session.remove()
    app.extensions["engine"].dispose()


def test_a_webhook_gets_only_the_events_it_asked_for(runner, session, receiver):
    add_webhook(runner, receiver.url, "--events", "send.finished")
    reader = factories.subscriber(session, "reader@example.org", state=SubscriberState.pending)
    subscriber_operations.confirm(session, reader)
    session.commit()
    send_events(runner)
    assert receiver.received == [] and states(session) == []


def test_a_receiver_answering_500_is_retried_with_back_off_then_marked_failed(runner, session, receiver,
                                                                             frozen_clock, app):
    secret = add_webhook(runner, receiver.url)
    receiver.mode = "fail"
    reader = factories.subscriber(session, "reader@example.org", state=SubscriberState.pending)
    subscriber_operations.confirm(session, reader)
    session.commit()

    assert "1 to retry later" in send_events(runner)
    assert "delivered 0 event(s); 0 to retry later" in send_events(runner)  # backing off: not due yet
    clock.advance(timedelta(minutes=1))
    assert "1 to retry later" in send_events(runner)
    clock.advance(timedelta(minutes=1))
    assert "1 to retry later" not in send_events(runner)  # the second wait is 2 minutes
    clock.advance(timedelta(minutes=1))
    assert "1 failed" in send_events(runner)
    clock.advance(timedelta(hours=5))
    assert "delivered 0 event(s); 0 to retry later; 0 failed" in send_events(runner)

    assert states(session) == [("subscriber.confirmed", "failed", 3)]
    row = session.scalar(select(WebhookDelivery))
    assert (row.last_status, row.last_response) == (500, "boom: database down")
    bodies = {r.body for r in receiver.received}
    assert len(receiver.received) == 3 and len(bodies) == 1  # the same event each time
    assert verified(secret, receiver.received[-1])["event"] == "subscriber.confirmed"
    listed = runner.invoke(["webhooks", "list"]).stdout
    assert "queued 0  sent 0  failed 1" in listed


def test_a_receiver_that_times_out_is_retried_and_nothing_is_lost(runner, session, receiver, frozen_clock):
    secret = add_webhook(runner, receiver.url)
    receiver.mode = "slow"
    for address in ("a@example.org", "b@example.org"):
        subscriber_operations.confirm(session, factories.subscriber(session, address, state=SubscriberState.pending))
    session.commit()

    assert "1 to retry later" in send_events(runner)  # the second event waits untried: its receiver is down
    row = session.scalar(select(WebhookDelivery).order_by(WebhookDelivery.id))
    assert row.last_status is None and row.last_response == "no answer within 1 s"
    assert states(session) == [("subscriber.confirmed", "queued", 1), ("subscriber.confirmed", "queued", 0)]

    receiver.mode = "ok"
    clock.advance(timedelta(minutes=1))
    assert "delivered 2 event(s)" in send_events(runner)
    assert [state for _, state, _ in states(session)] == ["sent", "sent"]
    delivered = {verified(secret, r)["id"] for r in receiver.received[1:]}
    assert len(delivered) == 2


def test_two_deliverers_never_both_send_an_event(runner, session, receiver, frozen_clock, config):
    add_webhook(runner, receiver.url)
    subscriber_operations.confirm(session, factories.subscriber(session, "a@example.org", state=SubscriberState.pending))
    session.commit()
    session.remove()
    [(row, webhook)] = delivery.claim_due(config)
    assert delivery.claim_due(config) == []  # the other deliverer finds it claimed
    clock.advance(timedelta(seconds=config["webhooks"]["lease_seconds"] + 1))
    [(taken, _)] = delivery.claim_due(config)  # our lease ran out (we died, say): another takes it
    answer = delivery.attempt(config, row, webhook)
    assert delivery.record(config, row.id, row.claimed_at, answer) is None  # ours is no longer recorded
    assert delivery.record(config, taken.id, taken.claimed_at, answer) == "sent"
    assert states(session) == [("subscriber.confirmed", "sent", 1)]


def test_an_occurrence_emitted_twice_is_queued_once(runner, session, receiver):
    add_webhook(runner, receiver.url)
    assert operations.emit(session, "send.finished", "send-1", {"x": 1}) == 1
    assert operations.emit(session, "send.finished", "send-1", {"x": 1}) == 0
    session.commit()
    assert session.scalar(select(func.count()).select_from(WebhookDelivery)) == 1


def test_signature_verification_refuses_tampering_and_old_timestamps():
    body = b'{"event":"send.finished"}'
    header = signing.sign("whsec_k", body, 1_800_000_000)
    assert signing.verify("whsec_k", body, header, now=1_800_000_010)
    assert not signing.verify("whsec_other", body, header, now=1_800_000_010)
    assert not signing.verify("whsec_k", body + b" ", header, now=1_800_000_010)
    assert not signing.verify("whsec_k", body, header, now=1_800_000_000 + 3600)
    assert not signing.verify("whsec_k", body, "v1=abc", now=1_800_000_000)


@pytest.mark.parametrize("args, reason", [
    (["webhooks", "add", "javascript:alert(1)"], "must be an http or https address"),
    (["webhooks", "add", "https://blog.example/hook", "--events", "subscriber.deleted"], "unknown event"),
    (["webhooks", "remove", "7"], "no webhook with id 7"),
])
def test_webhooks_cli_refuses_bad_input_in_one_line(runner, args, reason):
    result = runner.invoke(args)
    assert result.exit_code == 2 and reason in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_remove_stops_the_events(runner, session, receiver):
    add_webhook(runner, receiver.url)
    assert runner.invoke(["webhooks", "remove", "1"]).exit_code == 0
    subscriber_operations.confirm(session, factories.subscriber(session, "a@example.org", state=SubscriberState.pending))
    session.commit()
    send_events(runner)
    assert receiver.received == [] and "no webhooks yet" in runner.invoke(["webhooks", "list"]).stderr


def test_the_admin_page_shows_each_webhook_with_its_last_response(runner, session, receiver, client):
    add_webhook(runner, receiver.url)
    receiver.mode = "fail"
    subscriber_operations.confirm(session, factories.subscriber(session, "a@example.org", state=SubscriberState.pending))
    session.commit()
    send_events(runner)
    make_editor("editor@example.org", role="editor")
    sign_in(client, "editor@example.org")
    assert client.get("/admin/webhooks/").status_code == 403
    other = client.application.test_client()
    make_editor("admin@example.org", role="admin")
    sign_in(other, "admin@example.org")
    page = other.get("/admin/webhooks/").get_data(as_text=True)
    assert receiver.url in page and "HTTP 500" in page and "boom: database down" in page
    assert "subscriber.confirmed" in page and 'href="/admin/webhooks/"' in page


def test_the_scheduler_runs_the_webhook_job_every_minute():
    from mailer.scheduling import BUILTIN_JOBS

    assert BUILTIN_JOBS["deliver-webhooks"] == ("mailer.webhooks.tasks:deliver_events", "cron", {"minute": "*"})
    assert callable(tasks.deliver_events)


def test_the_readme_verification_snippet_accepts_a_real_delivery_and_refuses_a_forgery(runner, session, receiver):
    from pathlib import Path

    readme = Path(__file__).resolve().parent.parent.joinpath("README.md").read_text()
    section = readme[readme.index("## Webhooks"):]
    snippet = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace: dict = {}
    exec(snippet, namespace)  # the receiver's code, as a reader would copy it
    secret = add_webhook(runner, receiver.url)
    subscriber_operations.confirm(session, factories.subscriber(session, "a@example.org", state=SubscriberState.pending))
    session.commit()
    send_events(runner)
    [received] = receiver.received
    header = received.headers["X-Mailer-Signature"]
    assert namespace["verify"](secret, received.body, header)
    assert not namespace["verify"](secret, received.body.replace(b'"id":1', b'"id":2'), header)
    assert not namespace["verify"]("whsec_guess", received.body, header)
