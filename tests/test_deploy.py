"""The production recipe in deploy/: the systemd units verify, nginx sets the headers trusted_proxies
expects, the production config has no gaps, and the units' own commands (gunicorn serving
mailer.wsgi:app, `mailer scheduler`, `mailer worker`) run against PostgreSQL and carry one reader's
signup, through Chromium, to a confirmation mail delivered and a confirmed subscription."""

from __future__ import annotations

import configparser
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dkim
import pytest
from sqlalchemy import create_engine, text

from mailer import config as config_module
from mailer import startup

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
UNITS = sorted((DEPLOY / "systemd").iterdir())
VENV_BIN = Path(sys.executable).parent


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(DEPLOY / "systemd" / name)
    return parser


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- the files -----------------------------------------------------------------------------------

def test_the_units_verify_with_systemd(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    for unit in UNITS:  # the paths of this machine in place of /opt/mailer and /srv/mailer
        body = unit.read_text().replace("/opt/mailer/.venv/bin/", f"{VENV_BIN}/").replace("/srv/mailer", str(tmp_path))
        (tmp_path / unit.name.replace("@.", "@1.")).write_text(body)
    (tmp_path / "var").mkdir()
    names = [str(tmp_path / unit.name.replace("@.", "@1.")) for unit in UNITS]
    result = subprocess.run(["systemd-analyze", "verify", *names], capture_output=True, text=True)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_the_web_unit_runs_gunicorn_alone_and_the_others_their_own_commands():
    web = _unit("mailer-web.service")["Service"]["ExecStart"]
    assert web.startswith("/opt/mailer/.venv/bin/gunicorn ") and web.endswith(" mailer.wsgi:app")
    assert _unit("mailer-scheduler.service")["Service"]["ExecStart"].endswith("/mailer scheduler")
    assert _unit("mailer-worker@.service")["Service"]["ExecStart"].endswith("/mailer worker")
    for name in ("mailer-web.service", "mailer-scheduler.service", "mailer-worker@.service"):
        service = _unit(name)["Service"]
        assert "Environment=MAILER_HOME=/srv/mailer" in (DEPLOY / "systemd" / name).read_text()
        assert service["ReadWritePaths"] == "/srv/mailer/var" and service["User"] == "mailer"


def test_nginx_forwards_to_gunicorn_with_the_headers_trusted_proxies_reads():
    site = (DEPLOY / "nginx" / "mailer.conf").read_text()
    bind = re.search(r"--bind (\S+)", _unit("mailer-web.service")["Service"]["ExecStart"]).group(1)
    assert f"proxy_pass http://{bind};" in site
    for header in ("X-Forwarded-For $remote_addr", "X-Forwarded-Proto $scheme", "X-Forwarded-Host $host"):
        assert f"proxy_set_header {header};" in site
    assert "ssl_certificate " in site and "return 301 https://" in site
    production = config_module.load(path=DEPLOY / "config.production.toml", environ={}, home=Path("/srv/mailer"))
    assert production["site"]["trusted_proxies"] == 1  # exactly the one proxy nginx is


def test_the_production_config_has_no_gap():
    production = config_module.load(path=DEPLOY / "config.production.toml", environ={}, home=Path("/srv/mailer"))
    assert startup.production_gaps(production) == []
    assert production["scheduler"]["enabled"] is False
    assert production["dkim"]["private_key_file"] == "/srv/mailer/var/dkim.key"


# ---- the processes -------------------------------------------------------------------------------

@pytest.fixture
def postgres_database(postgres_url):
    """A database of its own on the session's PostgreSQL server, dropped afterwards."""
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("DROP DATABASE IF EXISTS deploy_recipe"))
        conn.execute(text("CREATE DATABASE deploy_recipe"))
    yield postgres_url.rsplit("/", 1)[0] + "/deploy_recipe"
    with admin.connect() as conn:
        conn.execute(text("DROP DATABASE IF EXISTS deploy_recipe WITH (FORCE)"))
    admin.dispose()


class Service:
    """One unit's ExecStart, run as systemd would (its Environment=), with this machine's paths."""

    def __init__(self, unit: str, home: Path, env: dict[str, str], **replace: str):
        command = _unit(unit)["Service"]["ExecStart"].replace("/opt/mailer/.venv/bin/", f"{VENV_BIN}/")
        for old, new in replace.items():
            command = command.replace(old, new)
        environ = {k: v for k, v in os.environ.items() if not k.startswith("MAILER_")}
        for line in (DEPLOY / "systemd" / unit).read_text().splitlines():
            if line.startswith("Environment="):
                name, _, value = line.removeprefix("Environment=").partition("=")
                environ[name] = value.replace("/srv/mailer", str(home))
        environ.update(env, PYTHONPATH=str(ROOT))
        self.log = home / f"{unit}.log"
        self.popen = subprocess.Popen(shlex.split(command), cwd=home, env=environ,
                                      stdout=self.log.open("w"), stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log.read_text()

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(30)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


def _wait(what: str, check, services: list[Service], seconds: float = 60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if (found := check()):
            return found
        for service in services:
            if service.popen.poll() is not None:
                pytest.fail(f"{service.log.name} exited with {service.popen.returncode}:\n{service.output()}")
        time.sleep(0.2)
    pytest.fail(f"{what} did not happen within {seconds} s:\n" + "\n".join(s.output() for s in services))


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.mark.browser
def test_gunicorn_scheduler_and_worker_carry_a_signup_to_a_confirmed_reader(
        tmp_path, postgres_database, smtp_server, dkim_key, chromium):
    from playwright.sync_api import expect

    if shutil.which("gunicorn", path=str(VENV_BIN)) is None:
        pytest.skip("gunicorn is not installed in this environment")
    home = tmp_path / "srv-mailer"
    (home / "var").mkdir(parents=True)
    shutil.copy(DEPLOY / "config.production.toml", home / "config.toml")
    shutil.copy(dkim_key[0], home / "var" / "dkim.key")
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    # What differs from the real machine: the database, the relay (the test's), and no TLS in front.
    env = {"MAILER_DATABASE_URL": postgres_database, "MAILER_SITE_BASE_URL": base_url,
           "MAILER_MAIL_SMTP_HOST": smtp_server.host, "MAILER_MAIL_SMTP_PORT": str(smtp_server.port),
           "MAILER_MAIL_SMTP_SECURITY": "none", "MAILER_MAIL_SMTP_USERNAME": "",
           "MAILER_SCHEDULER_LEASE_SECONDS": "5"}
    init = subprocess.run([str(VENV_BIN / "mailer"), "--home", str(home), "init"], capture_output=True, text=True,
                          env={**{k: v for k, v in os.environ.items() if not k.startswith("MAILER_")}, **env,
                               "PYTHONPATH": str(ROOT)}, timeout=120)
    assert init.returncode == 0, init.stderr
    subprocess.run([str(VENV_BIN / "mailer"), "--home", str(home), "topics", "add", "housing", "--title", "Housing"],
                   check=True, capture_output=True, env={**os.environ, **env, "PYTHONPATH": str(ROOT)})

    services = [Service("mailer-web.service", home, env, **{"127.0.0.1:8000": f"127.0.0.1:{port}",
                                                               "--workers 3": "--workers 2"}),
                Service("mailer-scheduler.service", home, env),
                Service("mailer-worker@.service", home, env)]
    try:
        _wait("the web app answering /healthz", lambda: _healthy(base_url), services)
        _wait("the scheduler taking the lease", lambda: '"scheduler": "on: this process runs' in services[1].output(),
              services)
        _wait("the worker starting", lambda: '"message": "mailer worker started"' in services[2].output(), services)

        page = chromium.new_page(base_url=base_url)
        # What nginx adds on the real machine: the reader's address (site.trusted_proxies = 1).
        page.set_extra_http_headers({"X-Forwarded-For": "203.0.113.9"})
        page.goto("/subscribe")
        expect(page.get_by_role("heading", level=1)).to_have_text(
            "Sign Up to receive the latest updates from Tenants Together")
        page.get_by_label("Email address").fill("reader@example.org")
        page.get_by_label("I have read and agreed to the Privacy Policy").check()
        page.wait_for_timeout(2100)  # a person takes longer than signup.min_seconds; a bot's form is sent back
        page.get_by_role("button", name="Sign up").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Thanks for signing up!")

        [mail] = _wait("the confirmation mail reaching the relay", lambda: smtp_server.received, services)
        message = mail.message
        assert mail.mail_from.startswith("bounces+") and mail.rcpt_tos == ["reader@example.org"]
        assert dkim.verify(mail.content, dnsfunc=lambda *args, **kwargs: dkim_key[1])
        confirm_url = re.search(r"\S+/confirm/\S+", message.get_body(("plain",)).get_content()).group(0)
        assert confirm_url.startswith(base_url + "/confirm/")
        page.goto(confirm_url)
        page.get_by_role("button", name="Confirm my subscription").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("You are subscribed")
        page.close()

        engine = create_engine(postgres_database)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT state FROM subscribers")).scalars().all() == ["confirmed"]
            assert set(conn.execute(text("SELECT ip_address FROM consent_events")).scalars()) == {"203.0.113.9"}
            holders = conn.execute(text("SELECT holder FROM leases WHERE name = 'scheduler'")).scalars().all()
        engine.dispose()
        # The scheduler unit runs the schedules; the web app does not (it has no scheduler in it).
        assert len(holders) == 1 and f"pid {services[1].popen.pid} " in holders[0]
    finally:
        for service in services:
            service.stop()
    assert '"message": "mailer worker stopped"' in services[2].output()
    assert '"message": "mailer scheduler stopped"' in services[1].output()
