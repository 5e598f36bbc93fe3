"""The feed poll job: for every feed, fetch outside any transaction, then store and commit."""

from __future__ import annotations

import logging

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
    reports = []
    for feed_id, url, etag, last_modified in feeds:
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
            continue
        try:
            report = (operations.record_failure(session, feed, error) if error
                      else operations.store_entries(session, feed, fetched, parsed))
            session.commit()
        except Exception as exc:  # a bug or a database hiccup with one feed must not stop the others
            log.exception("storing feed %s failed", url)
            session.rollback()
            report = operations.record_failure(session, session.get(Feed, feed_id), f"could not store entries: {exc}")
            session.commit()
        reports.append(report)
    return reports


def poll_all() -> None:
    """The scheduled job: poll every feed and log one line per feed (and per skipped entry)."""
    for report in poll_feeds():
        (log.warning if report.is_failed else log.info)("%s", report.line())
        for skipped in report.skipped:
            log.warning("%s: skipped %s", report.url, skipped)
