"""Verbs of digests: compose the next digest from the articles new since the last one.

Queueing, previews and the web version are the sends' (mailer.sends.operations); a digest adds
only its own rules: which articles are new, the editors' note, and articles held back.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

from mailer import clock
from mailer.articles.models import Article
from mailer.digests import queries
from mailer.editors.operations import set_setting, setting
from mailer.sends import queries as send_queries
from mailer.sends.models import Send, SendKind
from mailer.sends.operations import _store_archive, create_send, queue

# Held for the transaction on PostgreSQL so two composes at once cannot both claim the same articles.
COMPOSE_LOCK = 0x6D61696C  # "mail"
# The Setting holding the editors' note for the next digest; composing moves it onto the send.
NOTE_SETTING = "digest.note"


def compose_next(session: Session) -> Send | None:
    """Build the next digest from articles no digest has carried yet; None when there are none.

    Adds the Send, its SendArticle rows and one Link row per trackable link, and stores the
    archive (web) version. The editors' note waiting for the next digest moves onto this one.
    Nothing is queued.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": COMPOSE_LOCK})
    now = clock.now()
    articles = queries.new_articles(session, now)
    if not articles:
        return None
    previous = queries.last_digest(session)
    send = create_send(session, SendKind.digest, articles, slug_text=f"{now:%Y-%m-%d}-{articles[0].title}",
                       window_start_at=previous.window_end_at if previous else None, window_end_at=now,
                       created_at=now, editor_note=setting(session, NOTE_SETTING).strip())
    if send.editor_note:
        set_setting(session, NOTE_SETTING, "")
    _store_archive(session, send)
    return send


def send_now(session: Session, form_key: str, created_by_id: int | None) -> tuple[Send | None, bool]:
    """Compose the next digest and queue it, once per submitted form; (the send, whether it is new).

    A form key already used names the send it made: (that send, False). Nothing new: (None, False).
    Two requests with one key racing past the first look meet Send.form_key's unique constraint at
    flush (IntegrityError): the caller rolls back and looks the key up again.
    """
    existing = send_queries.send_by_form_key(session, form_key)
    if existing is not None:
        return existing, False
    send = compose_next(session)
    if send is None:  # perhaps the same form's first request took the articles while we waited
        return send_queries.send_by_form_key(session, form_key), False
    send.form_key, send.created_by_id = form_key, created_by_id
    session.flush()
    queue(session, send)
    return send, True


def draft(session: Session) -> Send | None:
    """A Send of what is new now, for a preview or a plan: the caller rolls it back, never commits it.

    It carries the waiting editors' note; unlike compose_next it takes no lock, leaves the note in
    place and stores no web version.
    """
    now = clock.now()
    articles = queries.new_articles(session, now)
    if not articles:
        return None
    return create_send(session, SendKind.digest, articles, slug_text=f"preview-{now:%Y-%m-%d}", created_at=now,
                       editor_note=next_note(session))


def set_note(session: Session, note: str) -> None:
    """Keep the editors' note for the next digest (empty: none); the caller commits."""
    set_setting(session, NOTE_SETTING, note.strip())


def next_note(session: Session) -> str:
    return setting(session, NOTE_SETTING)


def set_held(session: Session, article: Article, is_held: bool) -> None:
    """Hold an article back from the next digest, or let it go in again; the caller commits."""
    article.is_held = is_held
