"""The feed poll job: for every feed, fetch outside any transaction, then store and commit."""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import current_app
from sqlalchemy import select

from mailer import db
from mailer.errors import FeedError
from mailer.feeds import operations
from mailer.feeds.models import Feed

log = logging.getLogger(__name__)


def poll_feeds(*, timeout: float = operations.FETCH_TIMEOUT_SECONDS,
               max_bytes: int = operations.MAX_FEED_BYTES) -> list[operations.PollReport]:
    """Poll every feed once and commit each feed's result; one feed's failure is recorded on it and
    the others go on. The database is not held while we wait on the network (SQLite writers would
    queue behind us)."""
    session = db.session
    block_private_addresses = current_app.config["MAILER"]["feeds"]["block_private_addresses"]
    feeds = [(f.id, f.url, f.etag, f.last_modified) for f in session.scalars(select(Feed).order_by(Feed.id))]
    session.commit()
    return [report for feed in feeds
            if (report := _poll(session, *feed, timeout=timeout, max_bytes=max_bytes,
                                block_private_addresses=block_private_addresses)) is not None]


def poll_feed(feed_id: int, *, timeout: float = operations.FETCH_TIMEOUT_SECONDS,
              max_bytes: int = operations.MAX_FEED_BYTES,
              before_commit: Callable[[Feed, operations.PollReport], None] | None = None,
              ) -> operations.PollReport | None:
    """Poll one feed now, as poll_feeds does for all (fetched outside any transaction, then stored and
    committed); None when there is no such feed. `before_commit` (an audit row, say) joins the commit
    that stores the result."""
    session = db.session
    feed = session.get(Feed, feed_id)
    if feed is None:
        return None
    known = (feed.id, feed.url, feed.etag, feed.last_modified)
    session.commit()
    report = _poll(session, *known, timeout=timeout, max_bytes=max_bytes, before_commit=before_commit,
                   block_private_addresses=current_app.config["MAILER"]["feeds"]["block_private_addresses"])
    if report is not None:
        log_poll(report)
    return report


def _poll(session, feed_id: int, url: str, etag: str, last_modified: str, *, timeout: float, max_bytes: int,
          block_private_addresses: bool, before_commit=None) -> operations.PollReport | None:
    """Fetch one feed with no transaction open, then store its entries (or its error) and commit;
    None when the feed was removed while we fetched."""
    fetched = parsed = None
    error = ""
    try:
        fetched = operations.fetch(url, etag=etag, last_modified=last_modified, timeout=timeout,
                                   max_bytes=max_bytes, block_private_addresses=block_private_addresses)
        if fetched.content is not None:
            parsed = operations.parse(fetched)
    except FeedError as exc:
        error = str(exc)
    feed = session.get(Feed, feed_id)
    if feed is None:  # removed while we were fetching
        session.commit()
        return None
    try:
        report = (operations.record_failure(session, feed, error) if error
                  else operations.store_entries(session, feed, fetched, parsed))
        if before_commit:
            before_commit(feed, report)
        session.commit()
    except Exception as exc:  # a bug or a database hiccup with one feed must not stop the others
        log.exception("storing feed %s failed", url)
        session.rollback()
        feed = session.get(Feed, feed_id)
        report = operations.record_failure(session, feed, f"could not store entries: {exc}")
        if before_commit:
            before_commit(feed, report)
        session.commit()
    return report


def log_poll(report: operations.PollReport) -> None:
    """One line for one feed's poll (a warning when it failed), its figures as fields for JSON logs;
    and one warning per entry it skipped."""
    fields = {"feed_id": report.feed_id, "feed_url": report.url, "new": report.new, "updated": report.updated,
              "unchanged": report.unchanged, "is_failed": report.is_failed}
    (log.warning if report.is_failed else log.info)("%s", report.line(), extra=fields)
    for skipped in report.skipped:
        log.warning("%s: skipped %s", report.url, skipped)


def poll_all() -> None:
    """The scheduled job: poll every feed and log one line per feed (and per skipped entry)."""
    for report in poll_feeds():
        log_poll(report)
