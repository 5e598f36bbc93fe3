"""Honest start-up: `mailer serve`, `worker` and `scheduler` say where they run and what is missing for
production, and a second scheduler on the same database stands by (a lease row) instead of sending twice."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from mailer import config as config_module
from mailer import leases, scheduling, startup
from mailer.leases import Lease
from tests.conftest import make_config

ROOT = Path(__file__).resolve().parent.parent


# ---- where mail goes ------------------------------------------------------------------------------

def test_the_mail_route_names_the_relay_and_the_fallback(tmp_path):
    environ = {"MAILER_MAIL_BACKEND": "smtp", "MAILER_MAIL_SMTP_HOST": "relay.example.net",
               "MAILER_MAIL_SMTP_PORT": "587", "MAILER_MAIL_SMTP_SECURITY": "starttls",
               "MAILER_MAIL_SMTP_USERNAME": "news"}
    one = startup.mail_route(config_module.load(environ=environ, home=tmp_path))
    assert one == "smtp relay relay.example.net:587 (starttls, as news)"
    two = startup.mail_route(config_module.load(environ={**environ, "MAILER_MAIL_SMTP_FALLBACK_HOST": "backup.example.net",
                                                         "MAILER_MAIL_SMTP_FALLBACK_PORT": "25"}, home=tmp_path))
    assert two == one + ", falling back to backup.example.net:25 (none)"


# ---- the production gaps -----------------------------------------------------------------------

def test_the_built_in_defaults_name_each_production_gap(tmp_path):
    gaps = startup.production_gaps(config_module.load(environ={}, home=tmp_path))
    assert [gap.split(" ", 1)[0] for gap in gaps] == [
        "site.postal_address", "site.base_url", "dkim.selector", "mail.from_address"]
    assert "CAN-SPAM" in gaps[0] and "https" in gaps[1] and "updates@localhost" in gaps[3]


def test_a_production_setup_has_no_gaps(tmp_path, dkim_key):
    config = make_config("sqlite://", tmp_path, dkim={"selector": "mail", "domain": "news.example.org",
                                                      "private_key_file": str(dkim_key[0])})
    assert startup.production_gaps(config) == []


def test_a_local_base_url_on_another_port_is_named(tmp_path):
    local = config_module.load(environ={}, home=tmp_path)
    assert "MAILER_SITE_BASE_URL=http://127.0.0.1:5001" in startup.listening_gap(local, "127.0.0.1", 5001)
    assert startup.listening_gap(local, "127.0.0.1", 5000) is None
    public = make_config("sqlite://", tmp_path)  # behind a proxy: the public URL is not where we listen
    assert startup.listening_gap(public, "127.0.0.1", 8000) is None


# ---- the lease ---------------------------------------------------------------------------------

def test_one_holder_at_a_time_until_the_lease_runs_out(session, frozen_clock):
    assert leases.take(session, "scheduler", "first", 60)[0] is True
    taken, lease = leases.take(session, "scheduler", "second", 60)
    assert (taken, lease.holder) == (False, "first")

    frozen_clock.advance(timedelta(seconds=40))
    assert leases.take(session, "scheduler", "first", 60)[0] is True  # renewed: 60 s from now
    frozen_clock.advance(timedelta(seconds=40))
    assert leases.take(session, "scheduler", "second", 60)[0] is False

    frozen_clock.advance(timedelta(seconds=21))  # the first stopped renewing (a crash)
    taken, lease = leases.take(session, "scheduler", "second", 60)
    assert (taken, lease.holder) == (True, "second")
    assert leases.take(session, "scheduler", "first", 60)[0] is False


def test_a_released_lease_is_free_at_once(session, frozen_clock):
    leases.take(session, "scheduler", "first", 60)
    leases.release(session, "scheduler", "second")  # not the holder: changes nothing
    assert session.scalars(select(Lease.holder)).all() == ["first"]
    leases.release(session, "scheduler", "first")
    assert leases.take(session, "scheduler", "second", 60)[0] is True


def test_a_second_scheduler_stands_by_and_takes_over_when_the_first_stops(app, caplog):
    first, second = scheduling.ScheduleKeeper(app), scheduling.ScheduleKeeper(app)
    second.holder += " (second)"
    try:
        assert first.check() is True and first.is_running
        assert second.check() is False and not second.is_running
        assert second.describe().startswith(f"standby: {first.holder} runs the schedules")
        first.stop()
        with caplog.at_level(logging.WARNING, logger="mailer.scheduling"):
            assert second.check() is True and second.is_running
        assert f"{first.holder} stopped; this process runs the schedules now" in caplog.text
        assert second.describe().startswith("on: this process runs the schedules")
    finally:
        first.stop()
        second.stop()


# ---- the real processes ------------------------------------------------------------------------

def _environ(**extra: str) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MAILER_")}
    environ["PYTHONPATH"] = str(ROOT)
    environ.update(extra)
    return environ


@pytest.fixture
def instance(tmp_path):
    home = tmp_path / "campaign"
    made = subprocess.run([sys.executable, "-m", "mailer", "init", str(home)], env=_environ(),
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    return home


class Process:
    """A `mailer` command running in the background, its output collected in a file."""

    def __init__(self, home: Path, *args: str, **env: str):
        self.log = home / f"out-{time.monotonic_ns()}.log"
        self.popen = subprocess.Popen([sys.executable, "-m", "mailer", *args], cwd=home,
                                      env=_environ(**env), stdout=self.log.open("w"),
                                      stderr=subprocess.STDOUT, text=True)

    @property
    def output(self) -> str:
        return self.log.read_text()

    def wait_for(self, text: str, seconds: float = 30) -> str:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if text in self.output:
                return self.output
            if self.popen.poll() is not None:
                break
            time.sleep(0.1)
        pytest.fail(f"{text!r} did not appear; output:\n{self.output}")

    def stop(self) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(20)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            return self.popen.wait()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_prints_one_block_and_a_second_serve_stands_by_then_takes_over(instance):
    env = {"MAILER_SCHEDULER_LEASE_SECONDS": "3"}
    first = Process(instance, "serve", "--port", str(_free_port()), **env)
    try:
        block = first.wait_for("  workers")
        assert block.splitlines()[:2] == ["mailer serve: Accidentally Alex",
                                          f"  instance   {instance} (config: {instance}/config.toml)"]
        assert f"  database   sqlite:///{instance}/var/mailer.db" in block
        assert f"  mail       maildir {instance}/var/mail" in block
        assert "  scheduler  on: this process runs the schedules" in block
        assert "warning: site.postal_address is empty" in first.wait_for("warning: mail.from_address")

        second = Process(instance, "serve", "--port", str(_free_port()), **env)
        try:
            standby = second.wait_for("  workers")
            assert "  scheduler  standby: " in standby and f"pid {first.popen.pid} " in standby
            assert first.stop() == 0
            assert "mailer serve stopped" in first.output
            second.wait_for("stopped; this process runs the schedules now", seconds=20)
        finally:
            second.stop()
    finally:
        first.stop()


def test_worker_logs_its_block_as_json_for_journald(instance):
    worker = Process(instance, "--log-format", "json", "worker")
    try:
        worker.wait_for('"gap": true')
    finally:
        assert worker.stop() == 0
    records = [json.loads(line) for line in worker.output.splitlines()]
    started = records[0]
    assert (started["level"], started["logger"], started["message"]) == ("INFO", "mailer.startup",
                                                                         "mailer worker started")
    assert started["instance"].startswith(str(instance)) and "scheduler" in started and "time" in started
    assert [r["message"].split(" ", 1)[0] for r in records if r.get("gap")] == [
        "site.postal_address", "site.base_url", "dkim.selector", "mail.from_address"]
    assert records[-1]["message"] == "mailer worker stopped"


def test_a_scheduler_that_lost_its_lease_stops_and_says_so(app, session, caplog):
    keeper = scheduling.ScheduleKeeper(app)
    try:
        assert keeper.check() is True
        # It stalled past its lease and another process took it (what `take` lets a standby do).
        lease = session.get(Lease, scheduling.LEASE)
        lease.holder, lease.expires_at = "other-host pid 7", lease.expires_at + timedelta(hours=1)
        session.commit()
        with caplog.at_level(logging.WARNING, logger="mailer.scheduling"):
            assert keeper.check() is False
        assert not keeper.is_running
        assert "another process took the scheduler lease" in caplog.text
        assert keeper.describe().startswith("standby: other-host pid 7 runs the schedules")
    finally:
        keeper.stop()
    assert session.get(Lease, scheduling.LEASE).holder == "other-host pid 7"  # stopping gives up only its own
