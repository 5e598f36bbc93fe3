"""Bounces and complaints read back from real Maildir files and a real IMAP server (Dovecot): DSNs,
ARF reports, soft-bounce scoring, forged tokens, reading twice; on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from mailer import db, scheduling
from mailer.bounces import reports, tasks
from mailer.bounces.models import BounceEvent
from mailer.outbox import verp
from mailer.outbox.models import OutboxMessage
from subscribers import operations, tokens
from subscribers.models import ConsentAction, ConsentEvent, Subscriber, SubscriberState, Suppression
from tests import factories
from tests.conftest import IN_CI, make_config
from tests.imap import DOVECOT, USER, PASSWORD, Dovecot

FIXTURES = Path(__file__).parent / "fixtures" / "bounces"
RETURN_PATH = "bounces+{token}@news.example.org"
SECRET = "test-secret"  # site.secret_key in tests: VERP tokens are signed with it
READER = "reader@example.com"


@pytest.fixture
def config(database_url, tmp_path):
    return make_config(database_url, tmp_path, mail={"return_path": RETURN_PATH})



def mailed(session, address: str = READER, **kwargs) -> tuple[Subscriber, OutboxMessage]:
    """A confirmed subscriber and a message of ours to them in the outbox (queued the real way)."""
    subscriber = factories.subscriber(session, address, **kwargs)
    row = operations.queue_mail(session, subscriber, "welcome", "welcome", topics=[])
    session.commit()
    return subscriber, row


def fixture(name: str, *, row: OutboxMessage | None = None, subscriber: Subscriber | None = None,
            token: str | None = None, report_id: str = "r1", recipient: str = READER) -> bytes:
    """A fixture message with our token, Message-ID and unsubscribe link filled in, CRLF line ends."""
    text = (FIXTURES / name).read_text()
    values = {
        "%TOKEN%": token or (verp.token(row.id, SECRET) if row else "1-0000000000"),
        "%MESSAGE_ID%": row.message_id if row else "<unknown@news.example.org>",
        "%UNSUBSCRIBE_URL%": tokens.links(subscriber)["unsubscribe_url"] if subscriber else "",
        "%RECIPIENT%": recipient,
        "%REPORT_ID%": report_id,
    }
    for marker, value in values.items():
        text = text.replace(marker, value)
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode()


def maildir(tmp_path: Path, *messages: bytes) -> Path:
    """A real Maildir with each message delivered into new/ as an MTA does (tmp/, then a rename)."""
    root = tmp_path / "bounces"
    for sub in ("new", "cur", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i, raw in enumerate(messages):
        name = f"17953{len(list((root / 'new').iterdir())) + i:05d}.M1P{os.getpid()}.mail.news.example.org"
        (root / "tmp" / name).write_bytes(raw)
        (root / "tmp" / name).rename(root / "new" / name)
    return root


def process(runner, root: Path):
    db.session.remove()
    result = runner.invoke(["bounces", "process", "--maildir", str(root)])
    db.session.remove()
    return result


def suppression(session, address: str = READER) -> Suppression | None:
    return session.scalar(select(Suppression).where(Suppression.email == address))


def events(session) -> list[BounceEvent]:
    return list(session.scalars(select(BounceEvent).order_by(BounceEvent.id)))


# ---- DSNs from a Maildir -----------------------------------------------------------------------

def test_a_hard_bounce_for_our_token_suppresses_the_address_and_is_filed_as_read(session, runner, tmp_path):
    subscriber, row = mailed(session)
    root = maildir(tmp_path, fixture("postfix-hard.eml", row=row, subscriber=subscriber))
    result = process(runner, root)
    assert result.exit_code == 0, result.output
    assert "1 suppressed" in result.output
    assert suppression(session).reason == "bounced"
    [event] = events(session)
    assert (event.kind, event.source, event.subscriber_id) == ("hard", "maildir", subscriber.id)
    assert "5.1.1" in event.detail and "@" not in event.detail  # the status, never the address
    # Read once: gone from new/, kept in cur/ flagged Seen, so the next run does not read it again.
    assert list((root / "new").iterdir()) == []
    assert [p.name.endswith(":2,S") for p in (root / "cur").iterdir()] == [True]
    again = process(runner, root)
    assert "read 0 report(s)" in again.output


def test_the_same_report_read_twice_counts_once(session, runner, tmp_path):
    subscriber, row = mailed(session)
    raw = fixture("postfix-delayed.eml", row=row)
    root = maildir(tmp_path, raw)
    process(runner, root)
    maildir(tmp_path, raw)  # a copy (a run stopped before it moved the file, or a re-delivery)
    result = process(runner, root)
    assert "1 already seen" in result.output
    assert len(events(session)) == 1


def test_a_forged_token_is_ignored_and_logged_without_the_address(session, runner, tmp_path, caplog):
    subscriber, row = mailed(session)
    forged = f"{row.id}-{'0' * 10}"
    assert verp.outbox_id(forged, SECRET) is None
    root = maildir(tmp_path, fixture("postfix-hard.eml", row=row, subscriber=subscriber, token=forged))
    with caplog.at_level(logging.INFO):
        result = process(runner, root)
    assert result.exit_code == 0 and "1 ignored" in result.output
    assert suppression(session) is None and events(session) == []
    assert "forged" in caplog.text
    assert READER not in caplog.text and "@" not in "".join(r.getMessage() for r in caplog.records
                                                             if r.name.startswith("mailer"))
    # Nor does the Message-ID or the unsubscribe link quoted beside a forged token count.
    assert list((root / "cur").iterdir())


def test_a_token_for_a_message_we_never_sent_is_ignored(session, runner, tmp_path):
    mailed(session)
    root = maildir(tmp_path, fixture("postfix-hard.eml", token=verp.token(999_999, SECRET)))
    result = process(runner, root)
    assert "1 ignored" in result.output and suppression(session) is None


def test_an_auto_reply_is_not_a_bounce(session, runner, tmp_path):
    subscriber, row = mailed(session)
    root = maildir(tmp_path, fixture("vacation.eml", row=row))
    result = process(runner, root)
    assert "1 ignored" in result.output and suppression(session) is None and events(session) == []


def test_a_bounce_for_an_address_that_unsubscribed_makes_it_bounced(session, runner, tmp_path):
    subscriber, row = mailed(session)
    operations.unsubscribe(session, subscriber)
    session.commit()
    root = maildir(tmp_path, fixture("postfix-hard.eml", row=row))
    process(runner, root)
    # Stronger than an unsubscribe: a fresh double opt-in lifts "unsubscribed", never "bounced".
    assert suppression(session).reason == "bounced"


# ---- ARF complaints ----------------------------------------------------------------------------

def _assert_complained(session, subscriber_id: int) -> None:
    subscriber = session.get(Subscriber, subscriber_id)
    assert subscriber.state == SubscriberState.unsubscribed
    assert suppression(session, subscriber.email).reason == "complained"
    withdrawn = session.scalars(select(ConsentEvent).where(ConsentEvent.subscriber_id == subscriber_id,
                                                           ConsentEvent.action == ConsentAction.withdrawn)).all()
    assert [e.source for e in withdrawn] == ["complaint"]
    [event] = events(session)
    assert event.kind == "complaint"


def test_an_arf_complaint_suppresses_and_unsubscribes_with_a_consent_event(session, runner, tmp_path):
    subscriber, row = mailed(session)
    root = maildir(tmp_path, fixture("arf-abuse.eml", row=row, subscriber=subscriber))
    result = process(runner, root)
    assert "1 suppressed" in result.output
    _assert_complained(session, subscriber.id)


def test_a_redacted_arf_complaint_is_matched_by_the_original_message_id(session, runner, tmp_path):
    subscriber, row = mailed(session)
    mailed(session, "someone-else@example.com")
    root = maildir(tmp_path, fixture("arf-redacted.eml", row=row))
    process(runner, root)
    _assert_complained(session, subscriber.id)
    assert suppression(session, "someone-else@example.com") is None


def test_a_redacted_arf_complaint_is_matched_by_its_unsubscribe_link(session, runner, tmp_path):
    subscriber, row = mailed(session)
    root = maildir(tmp_path, fixture("arf-redacted.eml", subscriber=subscriber))  # an unknown Message-ID
    process(runner, root)
    _assert_complained(session, subscriber.id)


# ---- soft bounces ------------------------------------------------------------------------------

def test_five_soft_bounces_within_fourteen_days_suppress_and_four_do_not(session, runner, tmp_path, frozen_clock):
    subscriber, row = mailed(session)
    root = maildir(tmp_path)
    for day in range(4):
        maildir(tmp_path, fixture("postfix-delayed.eml", row=row, report_id=f"day{day}"))
        process(runner, root)
        frozen_clock.advance(timedelta(days=3))
    assert suppression(session) is None
    assert [e.kind for e in events(session)] == ["soft"] * 4
    maildir(tmp_path, fixture("postfix-delayed.eml", row=row, report_id="day4"))  # day 12: the fifth
    result = process(runner, root)
    assert "1 suppressed" in result.output
    assert suppression(session).reason == "bounced"


def test_soft_bounces_spread_over_more_than_fourteen_days_do_not_suppress(session, runner, tmp_path, frozen_clock):
    subscriber, row = mailed(session)
    root = maildir(tmp_path)
    for day in range(6):
        maildir(tmp_path, fixture("postfix-delayed.eml", row=row, report_id=f"week{day}"))
        process(runner, root)
        frozen_clock.advance(timedelta(days=4))
    # Six in 24 days, never five within any 14 (16 days span the first and the fifth).
    assert len(events(session)) == 6 and suppression(session) is None


# ---- the command and the scheduled job ---------------------------------------------------------

@pytest.mark.parametrize("args, reason", [
    (["--maildir", "DIR"], "is not a Maildir: it needs the folders new/ and cur/"),
    (["--imap"], "--imap needs bounces.imap_host"),
    ([], "no bounce mailbox: give --maildir DIR or --imap"),
    (["--imap", "--maildir", "DIR"], "give --maildir DIR or --imap, not both"),
])
def test_bad_mailbox_is_one_line(runner, tmp_path, args, reason):
    args = [str(tmp_path) if a == "DIR" else a for a in args]
    result = runner.invoke(["bounces", "process", *args])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and reason in result.output and "Traceback" not in result.output


def test_the_scheduled_job_reads_the_configured_maildir(session, database_url, tmp_path):
    from mailer.app import create_app

    root = maildir(tmp_path)
    config = make_config(database_url, tmp_path, mail={"return_path": RETURN_PATH},
                         bounces={"is_scheduled": True, "maildir": str(root), "interval_minutes": 3})
    app = create_app(config)
    with app.app_context():
        subscriber, row = mailed(db.session)
        maildir(tmp_path, fixture("postfix-hard.eml", row=row))
        db.session.remove()
        tasks.read_bounce_mailbox()
        assert suppression(db.session).reason == "bounced"
        scheduler = scheduling.make_scheduler(app)
        [job] = [j for j in scheduler.get_jobs() if j.id == "read-bounce-mailbox"]
        assert job.trigger.interval == timedelta(minutes=3)
        db.session.remove()
    app.extensions["engine"].dispose()


def test_the_job_does_nothing_unless_scheduled(session, tmp_path, app):
    root = maildir(tmp_path, fixture("postfix-hard.eml", row=mailed(session)[1]))
    tasks.read_bounce_mailbox()  # is_scheduled is false by default
    assert len(list((root / "new").iterdir())) == 1 and suppression(session) is None


# ---- IMAP (a real Dovecot) ---------------------------------------------------------------------

@pytest.fixture
def dovecot():
    if not DOVECOT.exists():
        if IN_CI:
            pytest.fail("CI=true but Dovecot is not installed: .ci/run must install dovecot-imapd")
        pytest.skip("Dovecot is not installed (apt-get install dovecot-imapd)")
    server = Dovecot()
    server.start()
    yield server
    server.stop()


def imap_runner(runner, app, server: Dovecot, **bounces):
    """The CLI against this test's database with [bounces] pointing at the Dovecot server."""
    from mailer.app import create_app

    config = app.config["MAILER"]
    overrides = {"imap_host": server.host, "imap_port": server.port, "imap_security": "none",
                 "imap_username": USER, "imap_password": PASSWORD, **bounces}
    imap_config = make_config(config["database"]["url"], Path(config["mail"]["maildir"]).parent,
                              mail={"return_path": RETURN_PATH}, bounces=overrides)
    imap_app = create_app(imap_config)

    def invoke(*args):
        db.session.remove()
        with imap_app.app_context():
            result = runner.invoke(list(args), obj={"app": imap_app})
        db.session.remove()
        return result

    return invoke


def test_imap_reads_unseen_reports_and_flags_them_seen(session, runner, app, dovecot):
    subscriber, row = mailed(session)
    other, other_row = mailed(session, "second@example.com")
    with dovecot.client() as client:
        client.append("INBOX", fixture("postfix-hard.eml", row=row))
        client.append("INBOX", fixture("arf-abuse.eml", row=other_row, recipient="second@example.com"))
        client.append("INBOX", fixture("vacation.eml", row=row))
    invoke = imap_runner(runner, app, dovecot)
    result = invoke("bounces", "process", "--imap")
    assert result.exit_code == 0, result.output
    assert "read 3 report(s): 2 suppressed" in result.output and "1 ignored" in result.output
    assert suppression(session).reason == "bounced"
    assert suppression(session, "second@example.com").reason == "complained"
    with dovecot.client() as client:
        client.select_folder("INBOX", readonly=True)
        assert len(client.search(["SEEN"])) == 3 and client.search(["UNSEEN"]) == []
    assert "read 0 report(s)" in invoke("bounces", "process", "--imap").output


def test_imap_with_a_wrong_password_is_one_line(session, runner, app, dovecot):
    result = imap_runner(runner, app, dovecot, imap_password="wrong")("bounces", "process", "--imap")
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert "refused the login of bounces.imap_username" in result.output and "wrong" not in result.output


def test_imap_with_a_missing_folder_is_one_line(session, runner, app, dovecot):
    result = imap_runner(runner, app, dovecot, imap_folder="Bounces")("bounces", "process", "--imap")
    assert result.exit_code == 2 and result.output.count("\n") == 1 and "failed" in result.output


def test_imap_server_that_is_not_there_is_one_line(session, runner, app, dovecot):
    dovecot.stop()
    result = imap_runner(runner, app, dovecot)("bounces", "process", "--imap")
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert f"cannot reach the bounce mailbox at 127.0.0.1:{dovecot.port}" in result.output


# ---- reading, without a database ---------------------------------------------------------------

@pytest.mark.parametrize("name, kind", [
    ("postfix-hard.eml", reports.BounceKind.hard),
    ("postfix-delayed.eml", reports.BounceKind.soft),
    ("exim-failed.eml", reports.BounceKind.hard),  # not a DSN: flufl.bounce's Exim detector
    ("arf-abuse.eml", reports.BounceKind.complaint),
    ("arf-redacted.eml", reports.BounceKind.complaint),
    ("vacation.eml", None),
])
def test_fixtures_read_as_their_kind(name, kind):
    text = (FIXTURES / name).read_text().replace("%TOKEN%", "12-abcdef0123").replace("%RECIPIENT%", READER)
    report = reports.read(text.encode(), RETURN_PATH)
    assert report.kind == kind
    assert READER not in report.detail
    if "%TOKEN%" in (FIXTURES / name).read_text():
        assert report.tokens == ["12-abcdef0123"]


def test_garbage_is_not_a_bounce():
    assert reports.read(b"\x00\xff not a message at all", RETURN_PATH).kind is None
    assert reports.read(b"", RETURN_PATH).kind is None


@pytest.mark.parametrize("bounces, reason", [
    ({"is_scheduled": True}, "bounces.is_scheduled is true: set bounces.imap_host or bounces.maildir"),
    ({"imap_host": "imap.example.org"}, "bounces.imap_host is set: bounces.imap_username is needed too"),
    ({"imap_security": "ssl"}, "bounces.imap_security must be one of none, starttls, tls"),
    ({"soft_limit": 0}, "bounces.soft_limit must be 1 or more"),
    ({"interval_minutes": "often"}, "bounces.interval_minutes must be a whole number"),
    ({"imap_password": 1234}, "bounces.imap_password must be a string"),
])
def test_bad_bounce_settings_are_named(bounces, reason):
    from mailer import config as config_module
    from mailer.errors import ConfigError

    with pytest.raises(ConfigError, match=reason.replace(".", r"\.")) as raised:
        config_module.load(path=None, environ={}, overrides={"bounces": bounces})
    assert "1234" not in str(raised.value)


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_imap_refuses_a_server_whose_certificate_it_cannot_verify(session, runner, app, security):
    if not DOVECOT.exists():
        if IN_CI:
            pytest.fail("CI=true but Dovecot is not installed: .ci/run must install dovecot-imapd")
        pytest.skip("Dovecot is not installed (apt-get install dovecot-imapd)")
    server = Dovecot(tls=True)
    server.start()
    try:
        invoke = imap_runner(runner, app, server, imap_security=security,
                             imap_port=server.tls_port if security == "tls" else server.port)
        result = invoke("bounces", "process", "--imap")
    finally:
        server.stop()
    # The password is never sent to a server that could be anyone's: the certificate is checked first.
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert "TLS failed" in result.output and "CERTIFICATE_VERIFY_FAILED" in result.output, result.output
