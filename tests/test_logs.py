"""Logs that say what happened: our lines at INFO, library chatter at WARNING, -v for detail, JSON lines
for journald or Loki, and one line per feed poll with its figures as fields."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mailer import logs
from mailer.feeds import operations, tasks
from tests.test_feeds import ATOM, FeedServer, static

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def feed_server():
    server = FeedServer()
    server.thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


@pytest.fixture
def restore_levels():
    yield
    logs.setup("text", 0)


@pytest.mark.parametrize(("verbosity", "ours", "chatter"), [
    (0, logging.INFO, logging.WARNING),
    (1, logging.DEBUG, logging.WARNING),
    (2, logging.DEBUG, logging.DEBUG),
])
def test_verbosity_opens_our_detail_first_and_the_libraries_last(restore_levels, verbosity, ours, chatter):
    logs.setup("text", verbosity)
    assert logging.getLogger("mailer.feeds.tasks").getEffectiveLevel() == ours
    assert logging.getLogger("subscribers.operations").getEffectiveLevel() == ours
    for library in ("apscheduler.scheduler", "alembic.runtime.migration", "urllib3.connectionpool"):
        assert logging.getLogger(library).getEffectiveLevel() == chatter, library


def test_a_feed_poll_is_one_line_whose_json_carries_its_figures(app, session, feed_server, caplog):
    feed_server.routes["/feed.atom"] = static(ATOM)
    operations.add_feed(session, feed_server.url("/feed.atom"))
    operations.add_feed(session, feed_server.url("/missing"))
    session.commit()
    with caplog.at_level(logging.INFO, logger="mailer.feeds.tasks"):
        tasks.poll_all()
    records = [json.loads(logs.formatter("json").format(r)) for r in caplog.records]
    assert [(r["level"], r["logger"], r["feed_id"], r["new"], r["is_failed"]) for r in records] == [
        ("INFO", "mailer.feeds.tasks", 1, 5, False), ("WARNING", "mailer.feeds.tasks", 2, 0, True)]
    assert records[1]["message"] == f"feed 2 {feed_server.url('/missing')}: failed: HTTP 404 Not Found"
    assert all("time" in r for r in records)


def test_poll_now_from_the_workspace_logs_its_line_too(app, session, feed_server, caplog):
    feed_server.routes["/feed.atom"] = static(ATOM)
    feed = operations.add_feed(session, feed_server.url("/feed.atom"))
    session.commit()
    with caplog.at_level(logging.INFO, logger="mailer.feeds.tasks"):
        tasks.poll_feed(feed.id)
    assert [r.getMessage() for r in caplog.records] == [
        f"feed 1 {feed_server.url('/feed.atom')}: 5 new, 0 updated, 0 unchanged, 1 repeated GUID(s) ignored"]


def test_the_command_line_writes_json_lines_and_keeps_alembic_quiet(tmp_path):
    """`mailer --log-format json -v init`: every stderr line is one JSON object, none of them Alembic's."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MAILER_")}
    environ["PYTHONPATH"] = str(ROOT)
    text = subprocess.run([sys.executable, "-m", "mailer", "init", str(tmp_path / "a")], env=environ,
                          capture_output=True, text=True, timeout=60)
    assert text.returncode == 0 and "alembic" not in text.stderr, text.stderr
    result = subprocess.run([sys.executable, "-m", "mailer", "--log-format", "json", "--home", str(tmp_path / "a"),
                             "feeds", "add", "https://blog.example.org/feed.atom", "--topics", "housing"],
                            env=environ, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("added feed 1 https://blog.example.org/feed.atom")
    for line in result.stderr.splitlines():
        assert isinstance(json.loads(line), dict), line
