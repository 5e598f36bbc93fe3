"""`mailer doctor` passes against a working setup (the local test relay, a served site, a migrated
database, a real DKIM key) and names each problem when one part is wrong; it never sends a message."""

from __future__ import annotations

import base64
import shutil
import sqlite3
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner
from werkzeug.serving import make_server

from mailer.instance import doctor
from mailer.app import create_app
from mailer.cli import cli
from tests.conftest import _allowed_smtp, make_config
from tests.smtp import Handler, LocalSMTPServer


@pytest.fixture
def database(tmp_path, sqlite_template):
    path = tmp_path / "mailer.db"
    shutil.copy(sqlite_template, path)
    return path


@pytest.fixture
def site(database, tmp_path):
    """The instance's web app served on 127.0.0.1 (what `base_url` points at); yields its URL."""
    app = create_app(make_config(f"sqlite:///{database}", tmp_path))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    app.extensions["engine"].dispose()


@pytest.fixture
def settings(database, tmp_path, site, smtp_server, dkim_key):
    """Sections of a setup that passes every check; a test changes one part."""
    return {
        "database": {"url": f"sqlite:///{database}"},
        "site": {"base_url": site},
        "mail": {"backend": "smtp", "return_path": "bounces+{token}@news.example.org"},
        "mail.smtp": {"host": smtp_server.host, "port": smtp_server.port, "timeout": 5},
        "dkim": {"selector": "mail", "domain": "news.example.org", "private_key_file": str(dkim_key[0])},
    }


def examine(tmp_path, settings, **changes):
    sections = {name: dict(values) for name, values in settings.items()}
    for name, values in changes.items():
        sections.setdefault(name.replace("_", "."), {}).update(values)
    config = make_config(sections.pop("database")["url"], tmp_path, **sections)
    return {f.check: f for f in doctor.examine(config)}


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_every_check_passes_against_a_working_setup_and_nothing_is_sent(tmp_path, settings, smtp_server):
    findings = examine(tmp_path, settings)
    assert {check: f.status for check, f in findings.items()} == {
        "database": "ok", "relay": "ok", "dkim": "ok", "base_url": "ok", "bounces": "skip", "setup": "warn"}
    assert findings["relay"].message.endswith(
        "and accepted MAIL FROM:<bounces+0-doctor@news.example.org> (nothing sent)")
    assert "2048-bit key" in findings["dkim"].message
    assert findings["setup"].message.startswith("site.base_url is http://127.0.0.1:")  # only the http test site
    assert smtp_server.received == []


def test_the_cli_prints_each_check_and_the_records_to_publish_and_exits_0(tmp_path, settings, dkim_key):
    home = tmp_path / "instance"
    home.mkdir()
    s = settings
    (home / "config.toml").write_text(f"""
[site]
base_url = "{s['site']['base_url']}"
postal_address = "1 Example Street, London"
secret_key = "test"
[database]
url = "{s['database']['url']}"
[mail]
backend = "smtp"
from_address = "updates@news.example.org"
return_path = "bounces+{{token}}@news.example.org"
[mail.smtp]
host = "{s['mail.smtp']['host']}"
port = {s['mail.smtp']['port']}
[dkim]
selector = "mail"
domain = "news.example.org"
private_key_file = "{dkim_key[0]}"
""")
    result = CliRunner().invoke(cli, ["--home", str(home), "doctor", "--dkim-record", dkim_key[1].decode()])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line.split()[:2] for line in lines[:5]] == [
        ["ok", "database"], ["ok", "relay"], ["ok", "dkim"], ["ok", "base_url"], ["skip", "bounces"]]
    assert "matches the published record" in lines[2]
    published = "".join(lines).replace('" "', "")
    # A relay on this machine: SPF names the domain's own A and MX hosts.
    assert 'news.example.org.                IN TXT "v=spf1 mx a ~all"' in published
    assert 'mail._domainkey.news.example.org.' in published
    assert dkim_key[1].decode() in published  # the DKIM record, joined back from its 255-character strings
    assert '_dmarc.news.example.org.' in published and "v=DMARC1; p=none" in published


def test_a_relay_that_does_not_answer_is_named(tmp_path, settings):
    port = _closed_port()
    _allowed_smtp.add(("127.0.0.1", port))
    relay = examine(tmp_path, settings, mail_smtp={"port": port})["relay"]
    assert (relay.status, relay.message) == ("fail", f"127.0.0.1:{port}: connect failed: Connection refused")


class RefusingSender(Handler):
    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        return "553 5.7.1 Sender address rejected: not owned by you"


def test_a_relay_that_refuses_the_from_address_is_named(tmp_path, settings):
    relay_server = LocalSMTPServer()
    relay_server.handler = relay_server.controller.handler = RefusingSender()
    relay_server.start()
    _allowed_smtp.add((relay_server.host, relay_server.port))
    try:
        relay = examine(tmp_path, settings, mail_smtp={"port": relay_server.port})["relay"]
    finally:
        relay_server.stop()
    assert relay.status == "fail"
    assert relay.message == (f"127.0.0.1:{relay_server.port} refused MAIL FROM:<bounces+0-doctor@news.example.org>: "
                             f"553 5.7.1 Sender address rejected: not owned by you")


def test_a_relay_that_refuses_the_login_is_named(tmp_path, settings):
    from aiosmtpd.smtp import AuthResult

    relay_server = LocalSMTPServer(authenticator=lambda *args: AuthResult(success=False, handled=False), auth_require_tls=False)
    relay_server.start()
    _allowed_smtp.add((relay_server.host, relay_server.port))
    try:
        relay = examine(tmp_path, settings, mail_smtp={"port": relay_server.port, "username": "alex",
                                                       "password": "wrong"})["relay"]
    finally:
        relay_server.stop()
    assert relay.status == "fail"
    assert relay.message.startswith(f"127.0.0.1:{relay_server.port} refused AUTH as alex: 535")


def test_a_relay_without_starttls_is_named(tmp_path, settings, smtp_server):
    relay = examine(tmp_path, settings, mail_smtp={"security": "starttls"})["relay"]
    assert relay.status == "fail" and "does not offer STARTTLS" in relay.message


def test_the_maildir_backend_is_a_warning_not_a_send(tmp_path, settings):
    relay = examine(tmp_path, settings, mail={"backend": "maildir"})["relay"]
    assert relay.status == "warn" and "nothing is sent" in relay.message


@pytest.mark.parametrize(("content", "reason"), [
    (None, "cannot be read: No such file or directory"),
    (b"not a key\n", "is not a PEM RSA private key"),
])
def test_an_unusable_dkim_key_is_named(tmp_path, settings, content, reason):
    key = tmp_path / "broken.key"
    if content is not None:
        key.write_bytes(content)
    found = examine(tmp_path, settings, dkim={"private_key_file": str(key)})["dkim"]
    assert found.status == "fail" and f"dkim.private_key_file {key} {reason}" in found.message


def test_a_short_dkim_key_is_named(tmp_path, settings):
    key = tmp_path / "short.key"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "768"], check=True, capture_output=True)
    found = examine(tmp_path, settings, dkim={"private_key_file": str(key)})["dkim"]
    assert found.status == "fail" and "is 768 bits" in found.message


def test_a_published_record_of_another_key_is_named(tmp_path, settings):
    other = tmp_path / "other.key"
    subprocess.run(["openssl", "genrsa", "-out", str(other), "2048"], check=True, capture_output=True)
    record = doctor.dkim_record(other.read_bytes())
    config = make_config(settings["database"]["url"], tmp_path, dkim=settings["dkim"])
    found = doctor.check_dkim(config, published=record)
    assert found.status == "fail" and "names another key" in found.message


def test_the_dkim_record_is_the_keys_public_half(dkim_key):
    key, record = dkim_key
    assert doctor.dkim_record(key.read_bytes()) == record.decode()
    assert base64.b64decode(record.split(b"p=")[1])  # the SubjectPublicKeyInfo openssl prints


def test_a_base_url_where_nothing_listens_is_named(tmp_path, settings):
    port = _closed_port()
    found = examine(tmp_path, settings, site={"base_url": f"http://127.0.0.1:{port}"})["base_url"]
    assert (found.status, found.message) == (
        "fail", f"http://127.0.0.1:{port}/healthz did not answer: Connection refused")


def test_a_base_url_that_is_another_site_is_named(tmp_path, settings):
    class OtherSite(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(404 if self.path == "/healthz" else 200)
            self.end_headers()

        def log_message(self, *args):
            pass

    other = ThreadingHTTPServer(("127.0.0.1", 0), OtherSite)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        found = examine(tmp_path, settings, site={"base_url": f"http://127.0.0.1:{other.server_port}"})["base_url"]
    finally:
        other.shutdown()
        other.server_close()
    assert (found.status, found.message) == (
        "fail", f"http://127.0.0.1:{other.server_port}/healthz answered 404 Not Found")


def test_a_database_behind_the_code_is_named(tmp_path, settings, database):
    with sqlite3.connect(database) as old:
        old.execute("UPDATE alembic_version SET version_num = '0000'")
    found = examine(tmp_path, settings)["database"]
    assert found.status == "fail" and "is at revision 0000" in found.message and "mailer db upgrade" in found.message


def test_a_bounce_mailbox_is_skipped_with_a_note_when_none_is_configured():
    found = doctor.check_bounces(None)
    assert found.status == "skip" and "no bounce mailbox is configured" in found.message


def test_a_bounce_mailbox_that_does_not_answer_is_named():
    port = _closed_port()
    found = doctor.check_bounces({"imap_host": "127.0.0.1", "imap_port": port, "imap_security": "none",
                                  "imap_username": "bounces", "imap_password": "x"})
    assert (found.status, found.message) == (
        "fail", f"bounce mailbox 127.0.0.1:{port} did not answer: Connection refused")


def test_a_bounce_maildir_must_be_a_maildir(tmp_path):
    assert doctor.check_bounces({"maildir": str(tmp_path / "bounces")}).status == "fail"
    for sub in ("cur", "new", "tmp"):
        (tmp_path / "bounces" / sub).mkdir(parents=True)
    assert doctor.check_bounces({"maildir": str(tmp_path / "bounces")}).status == "ok"


def test_the_cli_exits_1_with_one_line_per_problem(tmp_path):
    home = tmp_path / "instance"
    home.mkdir()
    port = _closed_port()
    (home / "config.toml").write_text(f'[site]\nbase_url = "http://127.0.0.1:{port}"\n'
                                      f'[database]\nurl = "sqlite:///missing-tables.db"\n')
    result = CliRunner().invoke(cli, ["--home", str(home), "doctor"])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "2 problem(s):",
        f"mailer doctor: database: the database sqlite:///{home}/missing-tables.db has no tables yet: "
        f"run `mailer db upgrade`",
        f"mailer doctor: base_url: http://127.0.0.1:{port}/healthz did not answer: Connection refused",
    ]


def test_a_fallback_relay_is_checked_too_and_named_when_it_does_not_answer(tmp_path, settings, smtp_server):
    working = {**settings, "mail.smtp_fallback": {"host": smtp_server.host, "port": smtp_server.port, "timeout": 5}}
    fallback = examine(tmp_path, working)["fallback"]
    assert fallback.status == "ok" and fallback.message.startswith(f"{smtp_server.host}:{smtp_server.port} answered EHLO")
    port = _closed_port()
    _allowed_smtp.add(("127.0.0.1", port))
    down = {**settings, "mail.smtp_fallback": {"host": "127.0.0.1", "port": port, "timeout": 5}}
    findings = examine(tmp_path, down)
    assert (findings["relay"].status, findings["fallback"].status) == ("ok", "fail")
    assert findings["fallback"].message == f"127.0.0.1:{port}: connect failed: Connection refused"
    assert smtp_server.received == []


def test_no_fallback_relay_no_fallback_check(tmp_path, settings):
    assert "fallback" not in examine(tmp_path, settings)
