"""Publishing a privacy notice (a new version is a new row, rendered and sanitised like an article
body), and keeping personal details no longer than the notice says."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mailer import clock
from mailer.articles.rendering import markdown_to_html
from mailer.links.models import Click
from mailer.editors.models import Editor
from mailer.errors import PrivacyError
from mailer.privacy import queries
from mailer.privacy.models import PrivacyNotice
from subscribers.models import ConsentEvent

# Rows changed per statement and transaction: a large list's backlog never holds a long lock.
RETENTION_BATCH = 1000

MAX_VERSION = 50
VERSION_RE = re.compile(r"[A-Za-z0-9.-]{1,%d}" % MAX_VERSION)


def check_version(version: str) -> str:
    version = (version or "").strip()
    if not version:
        raise PrivacyError("Give the new version a name, like 2026-12-01.")
    if not VERSION_RE.fullmatch(version):
        raise PrivacyError(f"A version is at most {MAX_VERSION} letters, digits, dots and hyphens, "
                           "like 2026-12-01.")
    return version


def publish(session: Session, version: str, body_markdown: str, editor: Editor | None) -> PrivacyNotice:
    """Add (and flush) a new published version; consents given from now on record it."""
    version = check_version(version)
    if not (body_markdown or "").strip():
        raise PrivacyError("The notice cannot be empty.")
    taken = PrivacyError(f"Version {version} is already published: give the new one another name.")
    if queries.by_version(session, version) is not None:
        raise taken
    notice = PrivacyNotice(version=version, body_source=body_markdown, body_html=markdown_to_html(body_markdown),
                           published_at=clock.now(), published_by_id=editor.id if editor is not None else None)
    try:
        # A savepoint: another admin may publish the same version between the check above and this insert.
        with session.begin_nested():
            session.add(notice)
    except IntegrityError:
        raise taken from None
    return notice


def blank_old_request_details(session: Session, keep_days: int, limit: int = RETENTION_BATCH) -> int:
    """Blank the IP address and user agent of up to `limit` consent events older than `keep_days`;
    return how many. The rest of the record (what was agreed to, when, under which notice) stays."""
    before = clock.now() - timedelta(days=keep_days)
    ids = list(session.scalars(
        select(ConsentEvent.id)
        .where(ConsentEvent.occurred_at < before, or_(ConsentEvent.ip_address != "", ConsentEvent.user_agent != ""))
        .order_by(ConsentEvent.id).limit(limit)))
    if not ids:
        return 0
    return session.execute(update(ConsentEvent).where(ConsentEvent.id.in_(ids))
                           .values(ip_address="", user_agent="")
                           .execution_options(synchronize_session=False)).rowcount


def forget_old_click_readers(session: Session, keep_days: int, limit: int = RETENTION_BATCH) -> int:
    """Make up to `limit` clicks older than `keep_days` anonymous; return how many. The click rows
    stay, so each link's click count stays the same; they stop saying who clicked."""
    before = clock.now() - timedelta(days=keep_days)
    ids = list(session.scalars(
        select(Click.id).where(Click.clicked_at < before, Click.subscriber_id.is_not(None))
        .order_by(Click.id).limit(limit)))
    if not ids:
        return 0
    return session.execute(update(Click).where(Click.id.in_(ids)).values(subscriber_id=None)
                           .execution_options(synchronize_session=False)).rowcount
