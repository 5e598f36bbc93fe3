"""Publishing a privacy notice: a new version is a new row, rendered and sanitised like an article body."""

from __future__ import annotations

import re

from sqlalchemy.orm import Session

from mailer import clock
from mailer.articles.rendering import markdown_to_html
from mailer.editors.models import Editor
from mailer.errors import PrivacyError
from mailer.privacy import queries
from mailer.privacy.models import PrivacyNotice

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
    if queries.by_version(session, version) is not None:
        raise PrivacyError(f"Version {version} is already published: give the new one another name.")
    notice = PrivacyNotice(version=version, body_source=body_markdown, body_html=markdown_to_html(body_markdown),
                           published_at=clock.now(), published_by_id=editor.id if editor is not None else None)
    session.add(notice)
    session.flush()
    return notice
