"""Reading the published privacy notices: the current one, one by version, all of them."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailer.privacy.models import PrivacyNotice


def current(session: Session) -> PrivacyNotice | None:
    """The notice in force: the one published last, or None while only the config's version exists."""
    with session.no_autoflush:
        return session.scalar(select(PrivacyNotice)
                              .order_by(PrivacyNotice.published_at.desc(), PrivacyNotice.id.desc()).limit(1))


def by_version(session: Session, version: str) -> PrivacyNotice | None:
    return session.scalar(select(PrivacyNotice).where(PrivacyNotice.version == version))


def all_notices(session: Session) -> list[PrivacyNotice]:
    """Every published version, newest first."""
    return list(session.scalars(select(PrivacyNotice)
                                .order_by(PrivacyNotice.published_at.desc(), PrivacyNotice.id.desc())))


def current_version(session: Session | None, configured: str) -> str:
    """The version a consent given now agrees to: the last published notice's, else the config's."""
    notice = current(session) if session is not None else None
    return notice.version if notice is not None else configured
