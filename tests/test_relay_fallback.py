"""The second relay ([mail.smtp_fallback]) against two real SMTP servers on loopback: it takes the mail
while the first cannot be reached or closes the session, never a recipient the first refused, and the
first is used again once it answers."""

from __future__ import annotations

import logging
import socket
import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from mailer import db
from mailer.errors import ConfigError
from mailer.outbox import backends
from mailer.outbox.models import OutboxMessage, OutboxState
from mailer.outbox.worker import run_once
from subscribers.models import Suppression
from tests.conftest import _allowed_smtp, make_config
from tests.relay import Relay
from tests.test_delivery import queue
from tests.test_delivery_engine import queue_digest

SWITCHED = "sending through the fallback relay"
RECOVERED = "answers again"
RETRY_PRIMARY = 120


class ClosedRelay:
    """A relay that greets every connection with 421 and hangs up, as Postfix does when it is overloaded
    or shutting down: the whole session refused before a word about any message."""

    GREETING = b"421 4.3.2 Service not available, closing transmission channel\r\n"

    def __init__(self):
        self.host = "127.0.0.1"
        self._socket = socket.create_server((self.host, 0))
        self._socket.settimeout(0.2)
        self.port = self._socket.getsockname()[1]
        self.sessions = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._socket.accept()
            except OSError:  # the accept timed out: look at the stop flag again
                continue
            with conn:
                conn.sendall(self.GREETING)
            self.sessions += 1

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()
        self._socket.close()


@pytest.fixture
def relays():
    """(primary, fallback): two drill relays, listening, that tests may take down and bring up."""
    started = []
    for _ in range(2):
        relay = Relay()
        relay.up()
        _allowed_smtp.add((relay.host, relay.port))
        started.append(relay)
    yield tuple(started)
    for relay in started:
        relay.down()


def two_relay_config(database_url, tmp_path, primary, fallback, **fallback_settings):
    smtp = {"host": primary.host, "port": primary.port, "timeout": 5, "connections": 3}
    second = {"host": fallback.host, "port": fallback.port, "timeout": 5,
              "retry_primary_seconds": RETRY_PRIMARY, **fallback_settings} if fallback else {}
    return make_config(database_url, tmp_path, mail={"backend": "smtp"},
                       **{"mail.smtp": smtp, "mail.smtp_fallback": second})


def drain(config):
    """One worker pass over the configured pool, every connection closed afterwards."""
    db.session.remove()
    pool = backends.pool_from_config(config)
    try:
        return run_once(config, pool)
    finally:
        for backend in pool:
            backend.close()


def outbox(session) -> dict[str, OutboxMessage]:
    db.session.remove()
    by_recipient = {row.recipient: row for row in session.scalars(select(OutboxMessage))}
    db.session.remove()
    return by_recipient


def readers(first: int, count: int) -> list[str]:
    return [f"reader{i}@example.org" for i in range(first, first + count)]


def log_lines(caplog, words: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if words in r.getMessage()]


def more_readers(session, first: int, count: int) -> None:
    """`count` new people sign up: a confirmation mail each in the outbox."""
    queue(session, *readers(first, count))


# ---- the primary refuses: the fallback takes it ------------------------------------------------

def test_primary_down_at_start_sends_everything_through_the_fallback_once_and_says_so_once(
        session, database_url, tmp_path, relays, frozen_clock, caplog):
    primary, fallback = relays
    primary.down()
    queue_digest(session, 12)
    caplog.set_level(logging.INFO)
    config = two_relay_config(database_url, tmp_path, primary, fallback)
    pool = backends.pool_from_config(config)
    try:
        tally = run_once(config, pool)
        # Still down when the worker tries it again: the fallback goes on, nothing more in the log.
        frozen_clock.advance(timedelta(seconds=RETRY_PRIMARY))
        more_readers(session, 12, 3)
        assert run_once(config, pool).sent == 3
    finally:
        for backend in pool:
            backend.close()
    assert (tally.sent, tally.retrying, tally.failed) == (12, 0, 0)
    assert fallback.copies() == {address: 1 for address in readers(0, 15)}
    assert fallback.duplicates() == 0
    assert all(row.state == OutboxState.sent for row in outbox(session).values())
    [switched] = log_lines(caplog, SWITCHED)  # once for the worker, not per message or per connection
    assert f"{primary.host}:{primary.port}" in switched and f"{fallback.host}:{fallback.port}" in switched
    assert "@" not in switched  # no reader's address in the log
    assert log_lines(caplog, RECOVERED) == []


def test_primary_greeting_with_421_sends_through_the_fallback(session, database_url, tmp_path, relays,
                                                            frozen_clock, caplog):
    _, fallback = relays
    closed = ClosedRelay()
    _allowed_smtp.add((closed.host, closed.port))
    try:
        queue_digest(session, 6)
        caplog.set_level(logging.INFO)
        tally = drain(two_relay_config(database_url, tmp_path, closed, fallback))
    finally:
        closed.stop()
    assert tally.sent == 6
    assert fallback.copies() == {address: 1 for address in readers(0, 6)}
    assert closed.sessions >= 1
    [switched] = log_lines(caplog, SWITCHED)
    assert "421" in switched


def test_primary_closing_the_session_at_mail_from_hands_that_message_to_the_fallback(
        session, database_url, tmp_path, relays, frozen_clock):
    primary, fallback = relays
    primary.defer_mail(1)  # 421 4.3.2 at MAIL FROM: the relay is closing, not judging the message
    queue_digest(session, 5)
    tally = drain(two_relay_config(database_url, tmp_path, primary, fallback))
    assert (tally.sent, tally.retrying) == (5, 0)
    assert primary.faults_answered["mail"] == 1
    assert primary.copies() + fallback.copies() == {address: 1 for address in readers(0, 5)}
    assert len(fallback.delivered) >= 1


def test_primary_closing_the_session_at_rcpt_hands_that_message_over_and_logs_no_address(
        session, database_url, tmp_path, relays, frozen_clock, caplog):
    primary, fallback = relays
    # A 421 names the relay's state even when it comes at RCPT quoting the recipient: not a bounce.
    primary.refuse("reader1@example.org", "421 4.3.2 <reader1@example.org>: Service shutting down")
    queue_digest(session, 3)
    caplog.set_level(logging.INFO)
    tally = drain(two_relay_config(database_url, tmp_path, primary, fallback))
    assert (tally.sent, tally.failed) == (3, 0)
    assert fallback.copies()["reader1@example.org"] == 1
    assert primary.copies() + fallback.copies() == {address: 1 for address in readers(0, 3)}
    assert session.scalar(select(Suppression)) is None
    [switched] = log_lines(caplog, SWITCHED)
    assert "421" in switched and "@" not in switched


def test_primary_is_tried_again_after_retry_primary_seconds_and_used_once_it_answers(
        session, database_url, tmp_path, relays, frozen_clock, caplog):
    primary, fallback = relays
    config = two_relay_config(database_url, tmp_path, primary, fallback)
    primary.down()
    queue_digest(session, 4)
    caplog.set_level(logging.INFO)
    assert drain(config).sent == 4
    primary.up()

    # The same worker (its switch is the pool's: a new pool is a new worker) within the wait: the fallback.
    pool = backends.pool_from_config(config)
    try:
        primary.down()
        more_readers(session, 4, 3)
        assert run_once(config, pool).sent == 3
        assert set(fallback.copies()) == set(readers(0, 7))
        primary.up()
        more_readers(session, 7, 3)
        frozen_clock.advance(timedelta(seconds=RETRY_PRIMARY - 1))
        assert run_once(config, pool).sent == 3
        assert primary.delivered == []  # still within the wait: the primary is not knocked on per message
        more_readers(session, 10, 3)
        frozen_clock.advance(timedelta(seconds=1))
        # One connection tries the primary; the others keep to the fallback until it has answered.
        assert run_once(config, pool).sent == 3
        assert len(primary.delivered) >= 1
        more_readers(session, 13, 3)
        assert run_once(config, pool).sent == 3
    finally:
        for backend in pool:
            backend.close()
    assert set(readers(13, 3)) <= set(primary.copies())
    both = primary.copies() + fallback.copies()
    assert both == {address: 1 for address in readers(0, 16)}
    assert len(log_lines(caplog, RECOVERED)) == 1


# ---- the recipient refuses: that is the recipient's answer, not the relay's ---------------------

def test_a_recipient_the_primary_refuses_is_failed_and_suppressed_not_sent_through_the_fallback(
        session, database_url, tmp_path, relays, frozen_clock, caplog):
    primary, fallback = relays
    primary.refuse("reader2@example.org")  # 550 5.1.1 No such user here
    primary.defer_rcpt(1)                  # 451 for one recipient: retried later, on the primary
    queue_digest(session, 5)
    caplog.set_level(logging.INFO)
    tally = drain(two_relay_config(database_url, tmp_path, primary, fallback))
    assert (tally.sent, tally.retrying, tally.failed) == (3, 1, 1)
    assert fallback.delivered == []
    rows = outbox(session)
    assert rows["reader2@example.org"].state == OutboxState.failed
    assert rows["reader2@example.org"].last_error.startswith("550")
    assert session.scalar(select(Suppression).where(Suppression.email == "reader2@example.org")).reason == "bounced"
    assert [r.last_error[:3] for r in rows.values() if r.state == OutboxState.queued] == ["451"]
    assert log_lines(caplog, SWITCHED) == []


# ---- both refuse, or no fallback ---------------------------------------------------------------

def test_both_relays_down_defers_everything_and_names_both(session, database_url, tmp_path, relays, frozen_clock):
    primary, fallback = relays
    primary.down()
    fallback.down()
    queue_digest(session, 4)
    tally = drain(two_relay_config(database_url, tmp_path, primary, fallback))
    assert (tally.sent, tally.retrying, tally.failed) == (0, 4, 0)
    errors = {row.last_error for row in outbox(session).values()}
    assert len(errors) == 1
    [error] = errors
    assert error.startswith("smtp: ConnectionRefusedError") and "; fallback relay: smtp: " in error


def test_without_a_fallback_a_primary_down_defers_everything_as_before(session, database_url, tmp_path, relays,
                                                                      frozen_clock, caplog):
    primary, fallback = relays
    primary.down()
    config = two_relay_config(database_url, tmp_path, primary, None)
    assert all(isinstance(backend, backends.SMTPBackend) for backend in backends.pool_from_config(config))
    queue_digest(session, 4)
    caplog.set_level(logging.INFO)
    tally = drain(config)
    assert (tally.sent, tally.retrying, tally.failed) == (0, 4, 0)
    assert fallback.delivered == []
    assert all(row.last_error.startswith("smtp: ConnectionRefusedError") for row in outbox(session).values())
    assert log_lines(caplog, SWITCHED) == []


def test_the_fallback_keeps_its_own_rate_shared_by_the_worker_connections(database_url, tmp_path, relays):
    primary, fallback = relays
    config = two_relay_config(database_url, tmp_path, primary, fallback, rate_per_second=4)
    pool = backends.pool_from_config(config)
    assert len(pool) == 3
    assert len({id(backend.fallback.pacer) for backend in pool}) == 1
    assert len({id(backend.switch) for backend in pool}) == 1
    assert pool[0].fallback.pacer.interval == 0.25 and pool[0].primary.pacer.interval == 0


# ---- config ------------------------------------------------------------------------------------

def test_the_fallback_is_set_from_the_environment(tmp_path):
    from mailer import config as config_module

    loaded = config_module.load(path=None, home=tmp_path, environ={
        "MAILER_MAIL_SMTP_FALLBACK_HOST": "relay2.example.org", "MAILER_MAIL_SMTP_FALLBACK_PORT": "587",
        "MAILER_MAIL_SMTP_FALLBACK_SECURITY": "starttls"})
    assert dict(loaded["mail.smtp_fallback"]) | {"password": ""} == {
        "host": "relay2.example.org", "port": 587, "security": "starttls", "username": "", "password": "",
        "rate_per_second": 0, "timeout": 30, "ca_file": "", "retry_primary_seconds": 300}


@pytest.mark.parametrize("toml, reason", [
    ('[mail.smtp_fallback]\nsecurity = "ssl"\n', "mail.smtp_fallback.security must be one of none, starttls, tls"),
    ('[mail.smtp_fallback]\nretry_primary_seconds = 0\n', "mail.smtp_fallback.retry_primary_seconds must be 1 or more"),
    ('[mail.smtp_fallback]\npassword = 1234\n', "mail.smtp_fallback.password must be a string"),
    ('[mail.smtp_fallback]\npassword = "pässword"\n', "mail.smtp_fallback.password must be ASCII"),
    ('[mail.smtp_fallback]\nhots = "relay2.example.org"\n', "unknown key 'mail.smtp_fallback.hots'"),
])
def test_a_bad_fallback_setting_is_named_without_its_secret(tmp_path, toml, reason):
    from mailer import config as config_module

    path = tmp_path / "config.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as raised:
        config_module.load(path=path, environ={}, home=tmp_path)
    assert reason in str(raised.value)
    assert "1234" not in str(raised.value) and "pässword" not in str(raised.value)
