"""Shared fixtures: app, client, runner, a database per test (SQLite and PostgreSQL), the local SMTP
server, a guard that fails any SMTP connection a test did not ask for, a frozen clock, and the
mailbox reader."""

from __future__ import annotations

import base64
import email
import email.policy
import os
import shutil
import smtplib
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient
from sqlalchemy import text

from mailer import clock, config as config_module, db as db_module, migrate
from mailer.db import Base, make_engine
from tests import pg

IN_CI = os.environ.get("CI") == "true"


# ---- databases ---------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    """A SQLite file migrated once through Alembic; each test gets a copy."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def postgres_url():
    """A PostgreSQL server for the session, migrated once; required in CI."""
    if pg.pg_bin() is None:
        if IN_CI:
            pytest.fail("CI=true but PostgreSQL is not installed: .ci/run must install it")
        pytest.skip("PostgreSQL server binaries are not installed (apt-get install postgresql)")
    server = pg.Server()
    url = server.start()
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    yield url
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path, sqlite_template):
    """Every test that touches the database runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        path = tmp_path / "mailer.db"
        shutil.copy(sqlite_template, path)
        yield f"sqlite:///{path}"
        return
    url = request.getfixturevalue("postgres_url")
    yield url
    engine = make_engine(url)
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables}, apscheduler_jobs RESTART IDENTITY CASCADE"
                          if _has_table(conn, "apscheduler_jobs") else
                          f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


def _has_table(conn, name: str) -> bool:
    return conn.execute(text("SELECT to_regclass(:n)"), {"n": name}).scalar() is not None


# ---- the app -----------------------------------------------------------------------------------

def make_config(database_url: str, tmp_path: Path, **sections):
    overrides = {
        "site": {"secret_key": "test-secret", "base_url": "https://news.example.org",
                 "postal_address": "Accidentally Alex, 1 Example Street, London"},
        "database": {"url": database_url},
        "mail": {"maildir": str(tmp_path / "maildir"), "from_address": "updates@news.example.org"},
        "scheduler": {"enabled": False},
        # Tests post a form the moment they read it; tests/test_embed.py times the reader itself.
        "signup": {"min_seconds": 0},
    }
    for section, values in sections.items():
        overrides.setdefault(section, {}).update(values)
    return config_module.load(path=None, environ={}, overrides=overrides)


@pytest.fixture
def config(database_url, tmp_path):
    return make_config(database_url, tmp_path)


class FreshContextClient(FlaskClient):
    """Each request gets its own app context, as in production: `g` (and the CSRF token Flask-WTF
    keeps there) is not shared between requests just because the test holds a context open."""

    def open(self, *args, **kwargs):
        with self.application.app_context():
            return super().open(*args, **kwargs)


@pytest.fixture
def app(config):
    from mailer.app import create_app

    app = create_app(config)
    app.config["TESTING"] = True
    app.test_client_class = FreshContextClient
    with app.app_context():
        yield app
    db_module.session.remove()
    app.extensions["engine"].dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    """Invoke the `mailer` CLI against this test's app."""
    from mailer.cli import cli

    class Runner(CliRunner):
        def invoke(self, *args, **kwargs):
            kwargs.setdefault("obj", {"app": app})
            return super().invoke(cli, *args, **kwargs)

    return Runner()


@pytest.fixture
def session(app):
    return db_module.session


# ---- the browser -------------------------------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
# Flags from shared/TESTING.md: run as root in a container, and never phone home during a test.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="session")
def chromium():
    """One headless Chromium for the session (Playwright allows one sync driver per process);
    required (a failure, not a skip) when CI=true."""
    if not CHROMIUM.exists():
        if IN_CI:
            pytest.fail(f"CI=true but {CHROMIUM} is missing: .ci/run must install the chromium package")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


# ---- DKIM --------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def dkim_key(tmp_path_factory):
    """An RSA key file (PKCS#8, as `openssl genrsa` writes today) and its DNS TXT record."""
    key = tmp_path_factory.mktemp("dkim") / "dkim.key"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
    public = subprocess.run(["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "der"],
                            check=True, capture_output=True).stdout
    return key, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


# ---- time --------------------------------------------------------------------------------------

@pytest.fixture
def frozen_clock():
    clock.freeze(datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc))
    yield clock
    clock.thaw()


# ---- mail --------------------------------------------------------------------------------------

_allowed_smtp: set[tuple[str, int]] = set()


@pytest.fixture(autouse=True)
def block_unrequested_smtp(monkeypatch):
    """Fail any SMTP connection to a server the test did not start (no mail leaks to a real relay)."""
    original = smtplib.SMTP.connect

    def guarded(self, host="localhost", port=0, source_address=None):
        if (host, int(port)) not in _allowed_smtp:
            raise AssertionError(f"test tried to open SMTP to {host}:{port}, which it did not ask for")
        return original(self, host, port, source_address)

    monkeypatch.setattr(smtplib.SMTP, "connect", guarded)
    yield
    _allowed_smtp.clear()


@pytest.fixture
def smtp_server():
    """A real SMTP server (aiosmtpd) on 127.0.0.1 that keeps what it receives."""
    from tests.smtp import LocalSMTPServer

    server = LocalSMTPServer()
    server.start()
    _allowed_smtp.add((server.host, server.port))
    yield server
    server.stop()


def read_maildir(path: str | Path) -> list[email.message.EmailMessage]:
    """Every message in the Maildir's new/, oldest first, parsed as a mail client would."""
    files = sorted((Path(path) / "new").iterdir(), key=lambda p: (p.stat().st_mtime_ns, p.name))
    return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default) for p in files]


@pytest.fixture
def deliver(app):
    """Run the delivery worker once through the configured backend; return the Maildir's messages."""
    from mailer.outbox import backends
    from mailer.outbox.worker import run_once

    def run():
        db_module.session.remove()  # end the test's own transaction: SQLite has one writer at a time
        config = app.config["MAILER"]
        backend = backends.from_config(config)
        run_once(config, backend)
        backend.close()
        maildir = Path(config["mail"]["maildir"])
        return read_maildir(maildir) if (maildir / "new").exists() else []

    return run
