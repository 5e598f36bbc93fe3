"""Bounces and complaints about bulk mail whose only clue is the original Message-ID (a relay that
rewrote the return path, a report that redacted the rest): a digest delivered by the worker, then a
real DSN (RFC 3464) and a real ARF report (RFC 5965) about one reader's copy, read from a Maildir."""

from __future__ import annotations

import email.message
import logging

import pytest
from sqlalchemy import select

from mailer import db
from mailer.bounces import reports
from mailer.bounces.models import BounceEvent
from mailer.sends import message_ids
from subscribers.models import Subscriber, SubscriberState, Suppression
from tests.conftest import make_config
from tests.test_bounces import maildir, process
from tests.test_delivery_engine import queue_digest

RETURN_PATH = "bounces+{token}@news.example.org"
SECRET = "test-secret"  # site.secret_key in tests
# A relay that rewrites the envelope sender (SRS): its DSNs come back to its own address, not our VERP one.
REWRITTEN = "SRS0=hR2x=TQ=news.example.org=bounces@relay.example.net"
# What a relay or a redacting reporter keeps of the original: no Return-Path, no List-Unsubscribe.
KEPT_HEADERS = ("From", "To", "Date", "Message-ID", "Subject", "List-Id")


@pytest.fixture
def config(database_url, tmp_path):
    return make_config(database_url, tmp_path, mail={"return_path": RETURN_PATH})


@pytest.fixture
def delivered(session, deliver):
    """A digest to three readers, delivered by the worker into the Maildir: {address: message}."""
    queue_digest(session, 3)
    messages = deliver()
    return {str(m["To"].addresses[0].addr_spec): m for m in messages}


def original_headers(message: email.message.EmailMessage) -> str:
    return "".join(f"{name}: {message[name]}\n" for name in KEPT_HEADERS)


def dsn(message: email.message.EmailMessage, report_id: str = "dsn-1") -> bytes:
    """A Postfix-style DSN for `message`: multipart/report of delivery-status, the headers quoted."""
    recipient = message["To"].addresses[0].addr_spec
    return crlf(f"""\
From: MAILER-DAEMON@relay.example.net (Mail Delivery System)
To: {REWRITTEN}
Subject: Undelivered Mail Returned to Sender
Date: Mon, 23 Nov 2026 09:00:05 +0000
Message-ID: <{report_id}@relay.example.net>
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b1"

--b1
Content-Type: text/plain; charset=us-ascii

<{recipient}>: host mx1.example.com said: 550 5.1.1 User unknown

--b1
Content-Type: message/delivery-status

Reporting-MTA: dns; relay.example.net
Arrival-Date: Mon, 23 Nov 2026 09:00:02 +0000

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822;{recipient}
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx1.example.com
Diagnostic-Code: smtp; 550 5.1.1 <{recipient}>: User unknown

--b1
Content-Type: text/rfc822-headers

{original_headers(message)}
--b1--
""")


def arf(message: email.message.EmailMessage, report_id: str = "arf-1") -> bytes:
    """A mailbox provider's abuse report (ARF) for `message`, its original redacted to a few headers."""
    return crlf(f"""\
From: <staff@mail.example.net>
To: <abuse@news.example.org>
Subject: FW: {message["Subject"]}
Date: Tue, 24 Nov 2026 17:20:41 +0000
Message-ID: <{report_id}@mail.example.net>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="b2"

--b2
Content-Type: text/plain; charset="US-ASCII"

This is an email abuse report for a message received from 198.51.100.7.

--b2
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: SomeGenerator/1.0
Version: 1
Original-Rcpt-To: <redacted@mail.example.net>
Arrival-Date: Tue, 24 Nov 2026 09:00:03 +0000

--b2
Content-Type: message/rfc822
Content-Disposition: inline

{original_headers(message)}
[body removed]

--b2--
""")


def crlf(text: str) -> bytes:
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode()


def suppressed(session) -> dict[str, str]:
    db.session.remove()
    return dict(session.execute(select(Suppression.email, Suppression.reason)).all())


def with_message_id(raw: bytes, old: str, new: str) -> bytes:
    return raw.replace(old.encode(), new.encode())


# ---- the Message-ID is the only clue -----------------------------------------------------------

def test_the_reports_carry_nothing_but_the_message_id_to_go_on(delivered):
    message = delivered["reader1@example.org"]
    for raw in (dsn(message), arf(message)):
        report = reports.read(raw, RETURN_PATH)
        assert report.tokens == [] and report.unsubscribe_tokens == []
        assert report.message_ids == [str(message["Message-ID"])]


def test_a_dsn_for_a_bulk_message_is_found_by_its_message_id_and_suppresses(session, runner, tmp_path, delivered):
    message = delivered["reader1@example.org"]
    result = process(runner, maildir(tmp_path, dsn(message)))
    assert result.exit_code == 0, result.output
    assert "1 suppressed" in result.output
    assert suppressed(session) == {"reader1@example.org": "bounced"}
    [event] = session.scalars(select(BounceEvent))
    reader = session.scalar(select(Subscriber).where(Subscriber.email == "reader1@example.org"))
    send_id, subscriber_id = message_ids.read(str(message["Message-ID"]), SECRET)
    assert (event.kind, event.subscriber_id, event.send_id) == ("hard", reader.id, send_id)
    assert subscriber_id == reader.id


def test_an_arf_complaint_for_a_bulk_message_is_found_by_its_message_id_and_unsubscribes(
        session, runner, tmp_path, delivered):
    message = delivered["reader2@example.org"]
    result = process(runner, maildir(tmp_path, arf(message)))
    assert result.exit_code == 0, result.output
    assert "1 suppressed" in result.output
    assert suppressed(session) == {"reader2@example.org": "complained"}
    reader = session.scalar(select(Subscriber).where(Subscriber.email == "reader2@example.org"))
    assert reader.state == SubscriberState.unsubscribed
    others = session.scalars(select(Subscriber).where(Subscriber.email != "reader2@example.org"))
    assert {s.state for s in others} == {SubscriberState.confirmed}


def test_the_message_id_is_the_same_on_every_attempt_and_differs_per_reader(delivered):
    ids = {address: str(m["Message-ID"]) for address, m in delivered.items()}
    assert len(set(ids.values())) == 3
    for address, message_id in ids.items():
        send_id, subscriber_id = message_ids.read(message_id, SECRET)
        assert f"<{message_ids.local_part(SECRET, send_id, subscriber_id)}@news.example.org>" == message_id
        assert message_id.endswith("@news.example.org>")
    assert message_ids.read(ids["reader0@example.org"], "another-secret") is None


# ---- forged and unknown Message-IDs ------------------------------------------------------------

def test_a_forged_message_id_is_ignored_and_logged(session, runner, tmp_path, delivered, caplog):
    message = delivered["reader1@example.org"]
    real = str(message["Message-ID"])
    local = real.strip("<>").partition("@")[0]
    forged = f"<{local[:-1]}{'0' if local[-1] != '0' else '1'}@news.example.org>"
    assert message_ids.is_sealed(forged) and message_ids.read(forged, SECRET) is None
    with caplog.at_level(logging.INFO):
        result = process(runner, maildir(tmp_path, with_message_id(dsn(message), real, forged)))
    assert result.exit_code == 0 and "1 ignored" in result.output
    assert suppressed(session) == {} and list(session.scalars(select(BounceEvent))) == []
    assert "Message-ID ignored: forged" in caplog.text
    assert "@" not in "".join(r.getMessage() for r in caplog.records if r.name.startswith("mailer"))


@pytest.mark.parametrize("unknown", [
    "<0123456789abcdef0123456789abcdef@news.example.org>",  # a bulk Message-ID of the old format (a bare hash)
    "<20261123090001.4F1A2B3C4D@mail.example.com>",         # someone else's message
    "<" + "f" * 64 + ">",                                     # our shape, no domain, no seal
    "not a message id",
])
def test_an_unknown_message_id_is_ignored_and_logged(session, runner, tmp_path, delivered, caplog, unknown):
    message = delivered["reader1@example.org"]
    raw = with_message_id(arf(message), str(message["Message-ID"]), unknown)
    with caplog.at_level(logging.INFO):
        result = process(runner, maildir(tmp_path, raw))
    assert result.exit_code == 0 and "1 ignored" in result.output
    assert suppressed(session) == {}
    assert "names no message of ours" in caplog.text
