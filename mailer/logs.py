"""Logging for every `mailer` process: our lines at INFO, the libraries' chatter at WARNING.

Text for a terminal, or one JSON object per line (`--log-format json`) for journald or Loki; `-v`
shows our DEBUG lines, `-vv` the libraries' too. A line about something countable passes its figures
as `extra={...}` as well as in the words: they become fields of the JSON object.

    log = logging.getLogger(__name__)
    log.info("delivery pass: %d sent, %d to retry, %d failed; %d queued", sent, retrying, failed, depth,
             extra={"sent": sent, "retrying": retrying, "failed": failed, "queued": depth})
"""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter

FORMATS = ("text", "json")
TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Libraries that say what they are doing at INFO: APScheduler twice a minute ("Running job …"),
# Alembic on every command, urllib3 per connection. Their warnings and errors still show.
OURS = ("mailer", "subscribers")
QUIET = ("apscheduler", "alembic", "urllib3", "werkzeug", "waitress", "feedparser", "aiosmtpd", "mail.log")


class _CurrentStderr(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time of the line (a test runner swaps it)."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


_handler: logging.Handler | None = None


def formatter(log_format: str) -> logging.Formatter:
    """The formatter for `text` or `json` lines."""
    if log_format == "json":
        return JsonFormatter("%(levelname)s %(name)s %(message)s", timestamp="time",
                             rename_fields={"levelname": "level", "name": "logger"})
    return logging.Formatter(TEXT)


def setup(log_format: str = "text", verbosity: int = 0) -> None:
    """Send every process's log lines to stderr in `log_format`; safe to call more than once.

    Like logging.basicConfig, it leaves alone a root logger that a host already gave handlers (pytest's
    capture, a program that embeds us): only the levels are set then.
    """
    global _handler
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
        _handler = None
    if not root.handlers:
        _handler = _CurrentStderr()
        _handler.setFormatter(formatter(log_format))
        root.addHandler(_handler)
    root.setLevel(logging.DEBUG if verbosity >= 2 else logging.INFO)
    for name in OURS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbosity else logging.NOTSET)
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.NOTSET if verbosity >= 2 else logging.WARNING)
