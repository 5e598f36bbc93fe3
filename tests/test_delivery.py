"""Delivery through a real SMTP server (aiosmtpd): results, retries, bounces, TLS, AUTH, VERP and DKIM."""

from __future__ import annotations

import socket
import ssl
import subprocess
import time
from datetime import timedelta

import dkim
import pytest
from aiosmtpd.smtp import AuthResult
from click.testing import CliRunner
from sqlalchemy import select

from mailer import db
from mailer.app import create_app
from mailer.errors import ConfigError
from mailer.outbox import backends, signing, verp
from mailer.outbox.backends import Pacer
from mailer.outbox.models import OutboxMessage, OutboxState
from mailer.outbox.worker import claim_size, run_once
from subscribers import operations
from subscribers.models import Suppression
from tests.conftest import _allowed_smtp, make_config
from tests.contract import check_message
from tests.smtp import Handler, LocalSMTPServer

POSTAL = "Accidentally Alex, 1 Example Street, London"


# ---- helpers -----------------------------------------------------------------------------------

class SessionHandler(Handler):
    """The fixture's handler, also noting each SMTP session that delivered: peer, TLS, login."""

    def __init__(self):
        super().__init__()
        self.sessions: dict[tuple, dict] = {}

    async def handle_DATA(self, server, session, envelope):
        self.sessions[session.peer] = {"tls": server.transport.get_extra_info("ssl_object") is not None,
                                       "login": session.auth_data if session.authenticated else None}
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def start_smtp():
    """Start an aiosmtpd server with extra Controller arguments (TLS, AUTH); stopped after the test."""
    servers = []

    def start(**controller_kwargs) -> LocalSMTPServer:
        server = LocalSMTPServer(**controller_kwargs)
        server.handler = server.controller.handler = SessionHandler()
        server.start()
        _allowed_smtp.add((server.host, server.port))
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1: (cert file, key file)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


def server_tls(certificate) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


def smtp_config(database_url, tmp_path, server, **sections):
    """The test config pointed at `server`, with `mail.smtp` and other sections overridden."""
    smtp = {"host": server.host, "port": server.port, "timeout": 5, **sections.pop("smtp", {})}
    mail = {"backend": "smtp", **sections.pop("mail", {})}
    return make_config(database_url, tmp_path, mail=mail, **{"mail.smtp": smtp}, **sections)


def queue(session, *addresses: str) -> list[int]:
    """Sign each address up (a real confirmation mail in the outbox), commit, return the outbox ids."""
    for address in addresses:
        operations.sign_up(session, email=address)
    session.commit()
    ids = list(session.scalars(select(OutboxMessage.id).order_by(OutboxMessage.id)))
    db.session.remove()  # SQLite has one writer at a time: the worker must not wait for us
    return ids


def drain(config, backend=None):
    """One worker pass through `config`'s backend (or `backend`), closed afterwards."""
    backend = backend or backends.from_config(config)
    try:
        return run_once(config, backend)
    finally:
        backend.close()


def rows(session) -> dict[str, OutboxMessage]:
    """The outbox by recipient, read in a transaction that is over when this returns (SQLite locks)."""
    db.session.remove()
    by_recipient = {row.recipient: row for row in session.scalars(select(OutboxMessage))}
    db.session.remove()
    return by_recipient


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- results -----------------------------------------------------------------------------------

def test_accepted_message_is_sent_with_its_time(session, database_url, tmp_path, smtp_server, frozen_clock):
    queue(session, "reader@example.org")
    tally = drain(smtp_config(database_url, tmp_path, smtp_server))
    assert (tally.sent, tally.retrying, tally.failed) == (1, 0, 0)
    row = rows(session)["reader@example.org"]
    assert row.state == OutboxState.sent and row.sent_at == frozen_clock.now() and row.attempts == 1
    [received] = smtp_server.received
    assert received.rcpt_tos == ["reader@example.org"]
    check_message(received.message, postal_address=POSTAL)


def test_refused_recipient_fails_for_good_and_is_suppressed(session, database_url, tmp_path, start_smtp):
    server = start_smtp()
    server.handler.refuse["gone@example.org"] = "550 5.1.1 no such user"
    queue(session, "gone@example.org", "reader@example.org")
    drain(smtp_config(database_url, tmp_path, server))
    by_address = rows(session)
    gone = by_address["gone@example.org"]
    assert gone.state == OutboxState.failed and "550 5.1.1 no such user" in gone.last_error
    assert by_address["reader@example.org"].state == OutboxState.sent
    suppression = session.scalar(select(Suppression).where(Suppression.email == "gone@example.org"))
    assert suppression.reason == "bounced" and "550" in suppression.detail
    assert [r.rcpt_tos for r in server.received] == [["reader@example.org"]]
    assert len(server.handler.sessions) == 1  # the refusal did not cost a new connection


def test_try_later_is_retried_with_back_off_until_give_up_after(session, database_url, tmp_path, smtp_server,
                                                                 frozen_clock):
    smtp_server.handler.refuse["busy@example.org"] = "451 4.3.0 try later"
    queue(session, "busy@example.org")
    config = smtp_config(database_url, tmp_path, smtp_server, delivery={"give_up_after": "3m"})

    assert drain(config).retrying == 1
    row = rows(session)["busy@example.org"]
    assert (row.state, row.attempts) == (OutboxState.queued, 1)
    assert row.next_attempt_at == frozen_clock.now() + timedelta(minutes=1)
    assert "451 4.3.0 try later" in row.last_error
    assert drain(config).handled == 0  # not due yet

    frozen_clock.advance(timedelta(minutes=1))
    drain(config)
    row = rows(session)["busy@example.org"]
    assert (row.state, row.attempts) == (OutboxState.queued, 2)
    assert row.next_attempt_at == frozen_clock.now() + timedelta(minutes=2)

    frozen_clock.advance(timedelta(minutes=2))  # three minutes after it was queued: give up
    assert drain(config).failed == 1
    row = rows(session)["busy@example.org"]
    assert (row.state, row.attempts) == (OutboxState.failed, 3)
    assert session.scalar(select(Suppression)) is None  # a temporary refusal says nothing about the address
    assert smtp_server.received == []


def test_server_down_is_temporary(session, database_url, tmp_path, smtp_server):
    port = closed_port()
    _allowed_smtp.add(("127.0.0.1", port))
    queue(session, "a@example.org", "b@example.org")
    config = make_config(database_url, tmp_path, mail={"backend": "smtp"},
                         **{"mail.smtp": {"host": "127.0.0.1", "port": port, "timeout": 5}})
    assert drain(config).retrying == 2
    for row in rows(session).values():
        assert (row.state, row.attempts) == (OutboxState.queued, 1)
        assert "ConnectionRefusedError" in row.last_error


def test_one_connection_for_many_batches(session, database_url, tmp_path, start_smtp):
    server = start_smtp()
    queue(session, *(f"reader{i}@example.org" for i in range(5)))
    assert drain(smtp_config(database_url, tmp_path, server, delivery={"batch_size": 2})).sent == 5
    assert len(server.received) == 5
    assert len(server.handler.sessions) == 1


def test_a_connection_the_relay_closed_while_idle_is_replaced(session, database_url, tmp_path, start_smtp):
    server = start_smtp(timeout=0.2)  # seconds the server keeps an idle session
    config = smtp_config(database_url, tmp_path, server)
    backend = backends.from_config(config)  # kept between passes, as the worker thread keeps it
    queue(session, "one@example.org")
    assert run_once(config, backend).sent == 1
    time.sleep(0.6)  # the server hangs up meanwhile
    queue(session, "two@example.org")
    assert run_once(config, backend).sent == 1
    backend.close()
    assert len(server.handler.sessions) == 2


# ---- TLS and AUTH ------------------------------------------------------------------------------

def test_starttls_with_a_trusted_certificate(session, database_url, tmp_path, start_smtp, certificate):
    server = start_smtp(tls_context=server_tls(certificate), require_starttls=True)
    queue(session, "reader@example.org")
    config = smtp_config(database_url, tmp_path, server,
                         smtp={"security": "starttls", "ca_file": str(certificate[0])})
    assert drain(config).sent == 1
    assert [s["tls"] for s in server.handler.sessions.values()] == [True]


def test_starttls_refuses_an_untrusted_certificate(session, database_url, tmp_path, start_smtp, certificate):
    server = start_smtp(tls_context=server_tls(certificate), require_starttls=True)
    queue(session, "reader@example.org")
    assert drain(smtp_config(database_url, tmp_path, server, smtp={"security": "starttls"})).retrying == 1
    assert "CERTIFICATE_VERIFY_FAILED" in rows(session)["reader@example.org"].last_error
    assert server.received == []


def test_implicit_tls(session, database_url, tmp_path, start_smtp, certificate):
    server = start_smtp(ssl_context=server_tls(certificate))
    queue(session, "reader@example.org")
    config = smtp_config(database_url, tmp_path, server, smtp={"security": "tls", "ca_file": str(certificate[0])})
    assert drain(config).sent == 1
    assert [s["tls"] for s in server.handler.sessions.values()] == [True]


def accept_updates_s3cret(server, session, envelope, mechanism, auth_data):
    is_known = (auth_data.login, auth_data.password) == (b"updates", b"s3cret")
    # handled=False: aiosmtpd answers the 535 itself (its default assumes we already replied).
    return AuthResult(success=is_known, handled=False, auth_data=auth_data.login)


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # loopback only
@pytest.mark.parametrize("password, is_sent", [("s3cret", True), ("wrong", False)])
def test_auth(session, database_url, tmp_path, start_smtp, password, is_sent):
    server = start_smtp(authenticator=accept_updates_s3cret, auth_required=True, auth_require_tls=False)
    queue(session, "reader@example.org")
    config = smtp_config(database_url, tmp_path, server, smtp={"username": "updates", "password": password})
    drain(config)
    row = rows(session)["reader@example.org"]
    if is_sent:
        assert row.state == OutboxState.sent
        assert [s["login"] for s in server.handler.sessions.values()] == [b"updates"]
    else:  # a wrong password is fixed in the config, then the queue goes out: retry, do not fail
        assert row.state == OutboxState.queued and "535" in row.last_error
        assert server.received == []


# ---- rate --------------------------------------------------------------------------------------

def test_pacer_spaces_messages_at_the_rate():
    pacer = Pacer(10)
    assert pacer.delay(100.0) == 0
    pacer.note_sent(100.0)
    assert pacer.delay(100.02) == pytest.approx(0.08)
    pacer.note_sent(100.1)
    pacer.note_sent(100.2)
    assert pacer.delay(100.2) == pytest.approx(0.1)


def test_pacer_allows_no_burst_after_idling():
    pacer = Pacer(2)
    pacer.note_sent(0.0)
    assert pacer.delay(60.0) == 0
    pacer.note_sent(60.0)
    assert pacer.delay(60.0) == pytest.approx(0.5)


def test_unlimited_pacer_never_waits():
    pacer = Pacer(0)
    for _ in range(3):
        pacer.note_sent(5.0)
    assert pacer.delay(5.0) == 0


@pytest.mark.parametrize("backend, rate, lease, batch_size, expected", [
    ("smtp", 0, 300, 100, 100),    # unlimited: the configured batch
    ("smtp", 10, 300, 100, 100),   # 10 s a batch
    ("smtp", 1, 120, 100, 10),     # 100 s a batch would be a slow stop: ten seconds' worth
    ("smtp", 1, 1, 100, 10),       # the lease does not matter: the claim is renewed on a timer
    ("maildir", 1, 120, 100, 100),  # the rate is the relay's; a Maildir is not paced
])
def test_a_paced_batch_is_about_ten_seconds_of_sending(tmp_path, backend, rate, lease, batch_size, expected):
    config = make_config(f"sqlite:///{tmp_path}/mailer.db", tmp_path, mail={"backend": backend},
                         delivery={"lease_seconds": lease, "batch_size": batch_size},
                         **{"mail.smtp": {"rate_per_second": rate}})
    assert claim_size(config) == expected


# ---- envelope sender ---------------------------------------------------------------------------

@pytest.mark.parametrize("return_path, expected", [
    ("bounces+{token}@news.example.org", "verp"),
    ("bounces@news.example.org", "bounces@news.example.org"),
    ("", "updates@news.example.org"),
])
def test_envelope_sender(session, database_url, tmp_path, smtp_server, return_path, expected):
    [outbox_id] = queue(session, "reader@example.org")
    drain(smtp_config(database_url, tmp_path, smtp_server, mail={"return_path": return_path}))
    [received] = smtp_server.received
    if expected != "verp":
        assert received.mail_from == expected
        return
    local, _, domain = received.mail_from.partition("@")
    assert domain == "news.example.org" and local.startswith("bounces+")
    token = local.removeprefix("bounces+")
    assert verp.outbox_id(token, "test-secret") == outbox_id
    assert verp.outbox_id(token.upper(), "test-secret") == outbox_id  # relays may fold the case
    assert verp.outbox_id(f"{outbox_id + 1}-{token.partition('-')[2]}", "test-secret") is None
    assert verp.outbox_id(token, "another-secret") is None


# ---- DKIM --------------------------------------------------------------------------------------

def test_dkim_signature_verifies(session, database_url, tmp_path, smtp_server, dkim_key):
    key, record = dkim_key
    queue(session, "reader@example.org")
    config = smtp_config(database_url, tmp_path, smtp_server,
                         dkim={"selector": "mail", "domain": "news.example.org", "private_key_file": str(key)})
    drain(config)
    [received] = smtp_server.received

    def dns(name, timeout=5):
        return record if name == b"mail._domainkey.news.example.org." else None

    assert dkim.verify(received.content, dnsfunc=dns)
    signed = str(received.message["DKIM-Signature"]).replace(" ", "").lower()
    for header in ("from", "to", "subject", "date", "message-id", "list-id", "list-unsubscribe",
                   "list-unsubscribe-post"):
        assert f":{header}:" in f":{signed.partition('h=')[2].partition(';')[0]}:"
    check_message(received.message, postal_address=POSTAL)
    forged = received.content.replace(b"Subject: Please confirm", b"Subject: Please pay", 1)
    assert forged != received.content and not dkim.verify(forged, dnsfunc=dns)


def test_a_message_dkim_cannot_sign_fails_alone(tmp_path, dkim_key):
    signer = signing.Signer("mail", "news.example.org", dkim_key[0].read_bytes())
    memory = backends.MemoryBackend()
    good = b"From: a@news.example.org\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nhello\r\n"
    results = signing.SigningBackend(memory, signer).send([
        backends.Envelope(1, "a@news.example.org", "b@example.org", b"not a header\r\n\r\nhello\r\n"),
        backends.Envelope(2, "a@news.example.org", "b@example.org", good),
    ])
    assert sorted((r.outbox_id, r.is_sent, r.is_permanent) for r in results) == [(1, False, True), (2, True, False)]
    assert [env.content.startswith(b"DKIM-Signature:") for env in memory.sent] == [True]


@pytest.mark.parametrize("content, reason", [
    (None, "cannot be read"),
    (b"not a key\n", "is not a PEM RSA private key"),
    (b"-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n", "is not a PEM RSA private key"),
])
def test_unusable_dkim_key_stops_start_up(tmp_path, content, reason):
    key = tmp_path / "dkim.key"
    if content is not None:
        key.write_bytes(content)
    config = make_config(f"sqlite:///{tmp_path}/mailer.db", tmp_path,
                         dkim={"selector": "mail", "domain": "news.example.org", "private_key_file": str(key)})
    with pytest.raises(ConfigError, match=reason) as raised:
        create_app(config)
    assert "\n" not in str(raised.value)


def test_unusable_dkim_key_is_one_line_from_the_cli(tmp_path, monkeypatch):
    from mailer.cli import cli

    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.toml").write_text(
        '[site]\nsecret_key = "x"\n[database]\nurl = "sqlite:///mailer.db"\n'
        '[dkim]\nselector = "mail"\ndomain = "news.example.org"\nprivate_key_file = "missing.key"\n')
    result = CliRunner().invoke(cli, ["worker", "--once"], obj={}, env={"MAILER_CONFIG": "config.toml"})
    assert result.exit_code == 2
    # Named as the instance folder's file: the command may run from anywhere (MAILER_HOME, --home).
    assert result.output.strip() == (f"mailer: dkim.private_key_file '{tmp_path}/missing.key' cannot be read: "
                                     "No such file or directory")
