"""The drill relay does what each switch says, seen from smtplib: the fault drills are only as true as it."""

from __future__ import annotations

import smtplib

import pytest

from tests import conftest
from tests.relay import Relay

MESSAGE = b"From: updates@news.example.org\r\nTo: reader@example.org\r\nMessage-ID: <1@news.example.org>\r\n" \
          b"Subject: News\r\n\r\nHello.\r\n"


@pytest.fixture
def relay():
    relay = Relay()
    relay.up()
    conftest._allowed_smtp.add((relay.host, relay.port))
    yield relay
    relay.down()


def send(relay: Relay, rcpt: str = "reader@example.org") -> dict:
    with smtplib.SMTP(relay.host, relay.port, timeout=10) as conn:
        return conn.sendmail("bounces@news.example.org", [rcpt], MESSAGE)


def test_keeps_each_message_with_its_recipient_and_message_id(relay):
    send(relay)
    [delivery] = relay.delivered
    assert (delivery.rcpt_to, delivery.message_id, delivery.mail_from) == \
        ("reader@example.org", "<1@news.example.org>", "bounces@news.example.org")
    send(relay)
    assert relay.copies()["reader@example.org"] == 2 and relay.duplicates() == 1


def test_defers_mail_from_then_accepts(relay):
    relay.defer_mail(1)
    with pytest.raises(smtplib.SMTPSenderRefused) as refused:
        send(relay)
    assert refused.value.smtp_code == 421
    send(relay)
    assert len(relay.delivered) == 1 and relay.faults_answered["mail"] == 1


def test_defers_a_recipient_then_accepts(relay):
    relay.defer_rcpt(1)
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        send(relay)
    assert refused.value.recipients["reader@example.org"][0] == 451
    send(relay)
    assert len(relay.delivered) == 1


def test_refuses_one_recipient_for_good(relay):
    relay.refuse("gone@example.org")
    for _ in range(2):
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            send(relay, "gone@example.org")
        assert refused.value.recipients["gone@example.org"][0] == 550
    send(relay)
    assert [d.rcpt_to for d in relay.delivered] == ["reader@example.org"]


def test_hangs_up_after_the_data_without_keeping_the_message(relay):
    relay.drop_data(1)
    with pytest.raises(smtplib.SMTPServerDisconnected):
        send(relay)
    assert relay.delivered == []
    send(relay)
    assert len(relay.delivered) == 1


def test_down_refuses_connections_and_up_listens_on_the_same_port(relay):
    port = relay.port
    relay.down()
    with pytest.raises(ConnectionRefusedError):
        send(relay)
    relay.up()
    assert relay.port == port
    send(relay)
    assert len(relay.delivered) == 1


def test_a_slow_relay_still_keeps_the_message_before_its_reply(relay):
    relay.slow(0.2)
    send(relay)  # returns on the relay's 250, which comes only after it kept the message
    assert relay.wait_for(1, timeout=0)
