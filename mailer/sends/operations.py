"""Verbs of sends: add a digest or an alert with its tracked links, queue it, preview it, archive it.

A digest and an alert share one path: `create_send` adds the send with its tracked links,
`queue` renders it once per topic set and puts a personalised copy per reader in the outbox, and
the web version is stored on the send. They differ only in composition (`_composer`).

Everything here only adds rows to the caller's session; the caller commits (composing and queueing
with `--send-now` is one transaction, so a crash leaves either a queued digest or nothing). What is
new for a digest, and who an alert is for, are the digests' and alerts' own rules.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import unicodedata
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from datetime import datetime, timedelta
from dataclasses import dataclass, replace

from flask import current_app
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from mailer import clock, emails
from mailer.config import Config
from mailer.alerts.compose import compose_alert
from mailer.articles import queries as article_queries
from mailer.articles.models import Article
from mailer.digests.compose import (ActionView, ArticleView, DigestParts, DigestSettings, Placeholders, TopicView,
                                    articles_for, compose_digest, personalise)
from mailer.links.models import Link
from mailer.errors import DigestError
from mailer.links.queries import OPEN
from mailer.outbox.models import BULK_PRIORITY, URGENT_PRIORITY
from mailer.outbox.models import OutboxMessage, OutboxState
from mailer.outbox.operations import enqueue
from mailer.sends import delivery, queries
from mailer.sends.models import Send, SendArticle, SendKind, SendVariant

log = logging.getLogger(__name__)

READ = "read"  # the Link kind of an article's "Read more"
SLUG_LENGTH = 80
# Every link of a preview goes nowhere: no token of a real reader may appear in it.
PREVIEW_LINK = "#"
# The open pixel of a preview: a blank image that loads nothing ("#" would fetch the page itself).
PREVIEW_PIXEL = "data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7"
TEST_SUBJECT_PREFIX = "[Test] "
# "Unsubscribed within 7 days" of a send, as the workspace shows it.
UNSUBSCRIBE_WINDOW = timedelta(days=7)


@dataclass(frozen=True)
class TopicSetPlan:
    """One render of a digest: the topics a group follows, how many get it, and how many articles."""

    topic_slugs: frozenset[str]
    recipients: int
    articles: int


def _config() -> Config:
    return current_app.config["MAILER"]


def preview(session: Session, send: Send, topic_set: frozenset[str]) -> emails.Rendered | None:
    """`send` as readers following `topic_set` get it, composed as queue() does, every link "#".

    None when nothing in it is for those topics (they would get no mail).
    """
    placeholders, settings = preview_settings(_config(), send.editor_note)
    settings = replace(settings, **_issue(session, send))
    return finish_preview(_composer(send)(article_views(session, send, placeholders), topic_set, settings),
                          placeholders)


def preview_settings(config: Config, editor_note: str = "") -> tuple[Placeholders, DigestSettings]:
    """The placeholders and settings a preview is composed with: its own links all go nowhere."""
    placeholders = Placeholders(secrets.token_hex(8))
    return placeholders, DigestSettings(config, PREVIEW_LINK, placeholders, editor_note=editor_note)


def finish_preview(parts: DigestParts | None, placeholders: Placeholders) -> emails.Rendered | None:
    """A composed preview with every personal link "#" and a blank open pixel; None stays None."""
    if parts is None:
        return None
    return personalise(parts, placeholders,
                       lambda name: PREVIEW_PIXEL if name == "open_pixel_url" else PREVIEW_LINK)


def queue_test(session: Session, rendered: emails.Rendered, to: str) -> OutboxMessage:
    """Put one preview in the outbox for an editor, subject marked "[Test]": no send, no archive."""
    config = _config()
    message = emails.build(config, to=to, rendered=emails.Rendered(
        subject=TEST_SUBJECT_PREFIX + rendered.subject, text=rendered.text, html=rendered.html),
        # An editor's copy has no subscription to end: its unsubscribe goes to the workspace.
        unsubscribe_url=emails.absolute_url(config, "/admin/digest/"), is_bulk=False)
    return enqueue(session, kind="test", message=message, dedupe_key=f"test:{message['Message-ID']}")


def create_send(session: Session, kind: SendKind, articles: Sequence[Article], *, slug_text: str,
                **fields) -> Send:
    """Add a send carrying `articles`, with one Link row per trackable link; nothing is queued.

    Every "Read more" and call to act becomes a Link, so clicks are counted per send and the
    mail only ever points at /l/ tokens; `fields` are further Send columns (window, topics...).
    """
    send = Send(kind=kind, slug=_unique_slug(session, slug_text), subject="", **fields)
    session.add(send)
    session.flush()
    for position, article in enumerate(articles):
        session.add(SendArticle(send_id=send.id, article_id=article.id, position=position))
        if article.canonical_url:
            session.add(Link(send_id=send.id, article_id=article.id, url=article.canonical_url,
                             label=article.title[:300], kind=READ))
        for action in article.actions:
            session.add(Link(send_id=send.id, article_id=article.id, url=action.url, label=action.label,
                             kind=action.kind.value))
    if _config()["tracking"]["opens"]:
        session.add(Link(send_id=send.id, url="", label="open", kind=OPEN))
    session.flush()
    session.expire(send, ["articles"])
    return send


def plan(session: Session, send: Send) -> list[TopicSetPlan]:
    """Who would get this digest, per topic set; a group whose topics have nothing new gets no mail.

    Counted in the database (readers per topic key), so a plan of a million readers loads none of them.
    """
    views = article_views(session, send, Placeholders("plan"))
    readers: Counter = Counter()
    for key, count in queries.readers_per_topic_key(session):
        readers[queries.topic_set_of(key)] += count
    return [TopicSetPlan(topic_set, count, len(articles_for(views, topic_set)))
            for topic_set, count in sorted(readers.items(), key=lambda item: sorted(item[0]))]


def queue(session: Session, send: Send, *, skip=None) -> int:
    """Queue the send to every eligible subscriber it has something for; return how many were queued.

    Renders once per topic set that eligible readers follow (a digest: the new articles in those
    topics; an alert: to readers of its topics) and stores each render as a SendVariant with
    placeholders; then one INSERT … SELECT adds an outbox row (ids and state, no bytes) per reader.
    The worker fills in each reader's links when it sends. A reader already holding this send in the
    outbox is skipped (a unique constraint too), and so is anyone `skip` (a SELECT of subscriber
    ids) returns. An alert's rows go ahead of any digest rows still waiting in the outbox.
    """
    # Lock the send (PostgreSQL; SQLite's BEGIN IMMEDIATE already serialises) so two `send`s queue once.
    session.execute(select(Send.id).where(Send.id == send.id).with_for_update())
    session.refresh(send, ["queued_at"])
    if send.queued_at is not None:
        raise DigestError(f"send {send.id} was already queued at {send.queued_at:%Y-%m-%d %H:%M} UTC")
    config = _config()
    placeholders = Placeholders(secrets.token_hex(8))
    views = article_views(session, send, placeholders)
    base_settings = DigestSettings(config, archive_url(config, send), placeholders, editor_note=send.editor_note,
                                   **_issue(session, send))
    compose = _composer(send)
    renders: dict[frozenset[str], DigestParts | None] = {}
    priority = URGENT_PRIORITY if send.kind == SendKind.alert else BULK_PRIORITY
    now = clock.now()

    def add_variants(keys: Collection[str]) -> int:
        added = 0
        for key in sorted(keys):
            topic_set = queries.topic_set_of(key)
            if renders.get(topic_set, True) is None:  # nothing for the topics these readers follow
                continue
            variant = SendVariant(send_id=send.id, topic_key=key, subject="", text="", html="",
                                  placeholder=placeholders.marker)
            session.add(variant)
            session.flush()
            if topic_set not in renders:
                # "View in your browser" opens this render, the one these readers get, without their tokens.
                settings = replace(base_settings, archive_url=variant_url(config, send, variant.id))
                renders[topic_set] = compose(views, topic_set, settings)
            parts = renders[topic_set]
            if parts is None:
                session.delete(variant)
                continue
            variant.subject, variant.text, variant.html = parts.subject, parts.text, parts.html
            added += 1
        session.flush()
        return added

    add_variants(queries.topic_keys(session))
    queries.fan_out(session, send, priority=priority, now=now, skip=skip)
    # A key the fan-out did not match (SQLite wrote a topic list in another order): give it a variant
    # of its own and fan out once more, so nobody is left out.
    known = set(session.scalars(select(SendVariant.topic_key).where(SendVariant.send_id == send.id)))
    if add_variants(queries.unqueued_keys(session, send.id, skip) - known):
        queries.fan_out(session, send, priority=priority, now=now, skip=skip)
    counts = queries.variant_counts(session, send.id)
    queued = sum(counts.values())
    for variant in session.scalars(select(SendVariant).where(SendVariant.send_id == send.id)):
        variant.recipients_count = counts.get(variant.id, 0)
    send.queued_at = now
    send.recipients_count = queued
    _store_archive(session, send)  # articles may have been edited since composing
    variants = sum(1 for count in counts.values() if count)
    log.info("queued %s %d to %d reader(s) in %d variant(s)", send.kind.value, send.id, queued, variants,
             extra={"send_id": send.id, "kind": send.kind.value, "readers": queued, "variants": variants})
    return queued


def article_views(session: Session, send: Send, placeholders: Placeholders) -> list[ArticleView]:
    """The send's articles as composition sees them, every link replaced by its tracked placeholder.

    Links come from the send's Link rows, so what was composed is what is tracked even if an
    article's calls to act change afterwards.
    """
    links_by_article: dict[int, list[Link]] = {}
    for link in queries.links_of(session, send.id):
        if link.article_id is not None:
            links_by_article.setdefault(link.article_id, []).append(link)
    full = article_queries.full_content_ids(session, [article.id for article in send.articles])
    views = []
    for article in send.articles:
        links = links_by_article.get(article.id, [])
        read = next((link for link in links if link.kind == READ), None)
        views.append(ArticleView(
            id=article.id,
            title=article.title,
            summary=article.summary,
            body_html=article.body_html,
            url=placeholders.link(read.id) if read else "",
            image_url=article.image_url,
            image_alt=article.image_alt,
            is_full=article.id in full,
            published_at=article.published_at,
            topics=tuple(TopicView(t.slug, t.title) for t in article.topics),
            actions=tuple(ActionView(link.label, placeholders.link(link.id), link.kind)
                          for link in links if link.kind != READ),
        ))
    return views


def archive_url(config: Config, send: Send) -> str:
    return emails.absolute_url(config, f"/archive/{send.slug}")


def variant_url(config: Config, send: Send, variant_id: int) -> str:
    """The web version of one variant: the send as the readers of one topic set got it."""
    return emails.absolute_url(config, f"/archive/{send.slug}/{variant_id}")


def variant_web_version(session: Session, send: Send, variant: SendVariant) -> emails.Rendered | None:
    """A variant as a public page: composed again for its topic set as the web version, with anonymous
    tracked links and no personal ones (the mail's own render holds the readers' placeholders)."""
    # The same render as /archive/<slug>, so both pages carry the mail's issue heading.
    rendered, _ = _web_version(session, send, queries.topic_set_of(variant.topic_key),
                               variant_url(_config(), send, variant.id))
    return rendered


def _store_archive(session: Session, send: Send) -> None:
    """Render the web version (every article, anonymous link tokens, no personal links) onto the send."""
    # The empty topic set follows everything: the web version shows all a send carries.
    rendered, parts = _web_version(session, send, frozenset(), archive_url(_config(), send))
    if rendered is None:
        raise DigestError(f"send {send.id} carries no articles")
    send.subject, send.preheader = rendered.subject, parts.preheader
    send.archive_html, send.archive_text = rendered.html, rendered.text


def _web_version(session: Session, send: Send, topic_set: frozenset[str],
                 url: str) -> tuple[emails.Rendered | None, DigestParts | None]:
    """`send` for readers of `topic_set` as a public page at `url`: anonymous tracked links, no personal
    ones. (None, None) when nothing in it is for those topics."""
    config = _config()
    placeholders = Placeholders(secrets.token_hex(8))
    settings = DigestSettings(config, url, placeholders, is_archive=True, editor_note=send.editor_note,
                              **_issue(session, send))
    parts = _composer(send)(article_views(session, send, placeholders), topic_set, settings)
    if parts is None:
        return None, None
    anonymous: dict[str, str] = {}

    def value_of(name: str) -> str:
        if name not in anonymous:
            anonymous[name] = delivery.tracked_url(config, send.id, name, None)
        return anonymous[name]

    return personalise(parts, placeholders, value_of), parts


def _issue(session: Session, send: Send) -> dict:
    """A digest's heading: its issue number (digests so far, this one included) and its date."""
    if send.kind != SendKind.digest:
        return {}
    return {"issue_number": queries.digest_number(session, send), "issued_at": send.created_at}


def _composer(send: Send) -> Callable[[list[ArticleView], frozenset[str], DigestSettings], DigestParts | None]:
    """How this send is rendered for one topic set: a digest of its articles, or an alert to its topics."""
    if send.kind == SendKind.alert:
        audience = tuple(TopicView(t.slug, t.title) for t in send.topics)
        return lambda views, topic_set, settings: compose_alert(views[0], topic_set, settings, audience)
    return compose_digest


def slugify(text: str) -> str:
    """A URL slug in ASCII: 'Two Dead… Purge' -> 'two-dead-purge'."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:SLUG_LENGTH].rstrip("-")


def _unique_slug(session: Session, text: str) -> str:
    base = slugify(text) or "digest"
    slug, n = base, 1
    while session.scalar(select(Send.id).where(Send.slug == slug)) is not None:
        n += 1
        slug = f"{base}-{n}"
    return slug



# Finished messages: what retention deletes and counts. Queued or sending rows are never touched.
FINISHED = (OutboxState.sent, OutboxState.failed, OutboxState.cancelled)


def reduce_old_rows(session: Session, now: datetime, keep_days: int, batch: int = 2000) -> int:
    """Delete up to `batch` finished outbox rows older than `keep_days`, counting a send's rows on the
    send first (its figures do not change); return how many went. The caller commits, and calls again
    until it returns 0: small batches keep every other writer waiting only briefly.

    One-off mail (confirmations, tests) holds whole messages, addresses included: it just goes.
    """
    cutoff = now - timedelta(days=keep_days)
    old = (OutboxMessage.state.in_(FINISHED), OutboxMessage.created_at < cutoff)
    rows = session.execute(select(OutboxMessage.id, OutboxMessage.send_id, OutboxMessage.state)
                           .where(*old).order_by(OutboxMessage.id).limit(batch)).all()
    if not rows:
        return 0
    by_send: dict[int, Counter] = {}
    for _, send_id, state in rows:
        if send_id is not None:
            by_send.setdefault(send_id, Counter())[state.value] += 1
    for send_id, counts in by_send.items():
        send = session.get(Send, send_id)
        reduced = Counter(json.loads(send.reduced_counts or "{}"))
        if "unsubscribed_7d" not in reduced:  # frozen before the rows it is counted from go
            reduced["unsubscribed_7d"] = queries.unsubscribed_after(session, send, UNSUBSCRIBE_WINDOW)
        reduced.update(counts)
        send.reduced_counts = json.dumps(dict(reduced), sort_keys=True)
    session.execute(delete(OutboxMessage).where(OutboxMessage.id.in_([row_id for row_id, _, _ in rows])))
    return len(rows)
