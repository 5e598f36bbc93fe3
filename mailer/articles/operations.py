"""Verbs that store articles. An article is stored once per GUID (or canonical URL); storing it again updates it."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import urlsplit

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mailer import clock
from mailer.articles.models import ActionKind, ActionLink, Article
from mailer.articles.rendering import (CONTROL_CHARACTERS, first_paragraph, markdown_to_html, plain_text,
                                       sanitise_html, shorten, without_controls)
from mailer.errors import ArticleError
from mailer.feeds.models import Feed
from mailer.topics.models import Topic
from mailer.topics.operations import slugify, topic_for_label

MAX_GUID = 500
MAX_URL = 2000
MAX_TITLE = 500
MAX_SLUG = 80
MAX_SUMMARY = 500
MAX_AUTHOR = 200
MAX_LABEL = 300
MAX_IMAGE_ALT = 500
SLUG_ATTEMPTS = 5

# Words that tell what a call to act asks for, tried in this order (a "petition to donate" is a petition).
KIND_HINTS: list[tuple[ActionKind, re.Pattern]] = [
    (ActionKind.petition, re.compile(r"(?i)petition|\bsign\b|change\.org|avaaz\.org|allout\.org|38degrees\.org\.uk"
                                     r"|actionnetwork\.org/petitions")),
    (ActionKind.donate, re.compile(r"(?i)donat|\bgive\b|\bfund|crowdfund|gofundme|donorbox\.org|givebutter\.com"
                                   r"|justgiving\.com|/donate")),
    (ActionKind.letter, re.compile(r"(?i)\bwrite\b|\bletter\b|\bemail (your|the)\b|writetothem|actionnetwork\.org/letters")),
    (ActionKind.call, re.compile(r"(?i)\bcall\b|\bphone\b|\bring\b")),
    (ActionKind.event, re.compile(r"(?i)\bevent\b|\bjoin\b|\battend\b|\bmarch\b|\bvigil\b|\brsvp\b|\bprotest\b"
                                  r"|actionnetwork\.org/events")),
]


@dataclass(frozen=True)
class ActionDraft:
    """A call to act before it is stored: what the button says, where it goes, what it asks for."""

    label: str
    url: str
    kind: str = ""  # empty: inferred from the label and URL


@dataclass(frozen=True)
class Upserted:
    article: Article
    is_new: bool
    is_changed: bool  # False when storing again changed nothing (a feed served the same entry again)


def web_url(url: str, what: str) -> str:
    """`url` stripped, if it is an absolute http(s) URL; ArticleError naming `what` otherwise.

    This is what keeps javascript:, data: and file: URLs out of buttons and links in mail.
    """
    url = (url or "").strip()
    shown = shorten(url, 80)
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ArticleError(f"{what} must be an http or https address, not {shown!r}")
    if re.search(r"[\s\x00-\x1f\x7f]", url) or not url.isprintable():
        raise ArticleError(f"{what} must not contain spaces or control characters: {shown!r}")
    if len(url) > MAX_URL:
        raise ArticleError(f"{what} is longer than {MAX_URL} characters")
    return url


def one_line(text: str | None, limit: int) -> str:
    """Text on one line (titles and labels end up in subjects and buttons), shortened to `limit`.

    Control characters become spaces: a title goes into Subject headers and onto terminals.
    """
    return shorten(" ".join(CONTROL_CHARACTERS.sub(" ", text or "").split()), limit)


def infer_action_kind(label: str, url: str = "") -> ActionKind:
    """What a call to act asks for, from its words and address: "Sign the petition…" is a petition."""
    for kind, pattern in KIND_HINTS:
        if pattern.search(label):
            return kind
    for kind, pattern in KIND_HINTS:
        if pattern.search(url):
            return kind
    return ActionKind.other


def action_draft(action: ActionDraft | Mapping) -> ActionDraft:
    """A checked action link from a draft or a mapping {label, url, kind}; ArticleError when unusable."""
    if isinstance(action, Mapping):
        unknown = set(action) - {"label", "url", "kind"}
        if unknown:
            raise ArticleError(f"an action link has label, url and kind, not {', '.join(sorted(map(str, unknown)))}")
        action = ActionDraft(label=str(action.get("label") or ""), url=str(action.get("url") or ""),
                             kind=str(action.get("kind") or ""))
    label = one_line(action.label, MAX_LABEL)
    if not label:
        raise ArticleError(f"the action link to {shorten(action.url or '', 80)!r} needs a label")
    url = web_url(action.url, f"the URL of action link {label!r}")
    if not action.kind:
        kind = infer_action_kind(label, url)
    else:
        try:
            kind = ActionKind(action.kind.strip().lower())
        except ValueError:
            raise ArticleError(f"unknown kind {action.kind!r} for action link {label!r}: use one of "
                               f"{', '.join(k.value for k in ActionKind)}") from None
    return ActionDraft(label=label, url=url, kind=kind.value)


def _as_utc(moment: datetime) -> datetime:
    # Front matter and feeds may give a time without a zone; we read it as UTC rather than guess a local one.
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def _find(session: Session, guid: str, canonical_url: str | None) -> Article | None:
    article = session.scalar(select(Article).where(Article.guid == guid))
    if article is None and canonical_url:
        article = session.scalar(select(Article).where(Article.canonical_url == canonical_url)
                                 .order_by(Article.id).limit(1))
    return article


def _unique_slug(session: Session, title: str) -> str:
    """A slug from the title; "-2", "-3"… when another article has it already."""
    base = slugify(title, MAX_SLUG - 4) or "article"
    taken = set(session.scalars(select(Article.slug).where(
        or_(Article.slug == base, Article.slug.like(f"{base}-%")))))
    if base not in taken:
        return base
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


def _resolve_topics(session: Session, topics: Iterable[Topic | str]) -> list[Topic]:
    resolved: dict[int, Topic] = {}
    for topic in topics:
        if not isinstance(topic, Topic):
            topic = topic_for_label(session, topic)
        if topic.id is None:
            session.flush()
        resolved.setdefault(topic.id, topic)
    return sorted(resolved.values(), key=lambda t: t.slug)


def upsert_article(session: Session, *, guid: str | None = None, canonical_url: str | None = None, title: str,
                   summary: str = "", body: str = "", body_is_html: bool = False, image_url: str | None = "",
                   author: str | None = "", published_at: datetime | None = None,
                   topics: Iterable[Topic | str] = (), actions: Iterable[ActionDraft | Mapping] | None = (),
                   feed: Feed | None = None, image_alt: str | None = "", actions_by_editor: bool = False,
                   ) -> Upserted:
    """Store an article, or update the one with the same GUID (or, without a match, the same canonical URL).

    `body` is Markdown (or HTML from a feed with `body_is_html`); either way it is sanitised with nh3.
    `summary` is kept as plain text; without one, the body's first paragraph is the summary.
    `topics` are Topic rows or labels (slugs, "#Hashtags", category names), created when missing.
    `published_at` may lie in the future: the article is stored, and digests leave it out until then;
    None means now for a new article and "unchanged" for a stored one.
    `actions` None leaves a stored article's action links as they are. `actions_by_editor`: a person
    chose these actions (the workspace, a file), so a later poll of a feed keeps them (`actions_edited`);
    a feed's update (`feed` given) never replaces actions an editor changed.
    Raises ArticleError (nothing stored) for a missing title, a non-http(s) URL or a bad action link.
    """
    canonical_url = web_url(canonical_url, "the article's URL") if canonical_url else None
    guid = without_controls(guid or "").strip() or canonical_url
    body = without_controls(body or "")
    if not guid:
        raise ArticleError("an article needs a GUID or a canonical URL, so that storing it again updates it")
    if len(guid) > MAX_GUID:
        guid = "sha256:" + hashlib.sha256(guid.encode()).hexdigest()
    title = one_line(title, MAX_TITLE)
    if not title:
        raise ArticleError("an article needs a title")
    image_url = web_url(image_url, f"the image of {title!r}") if image_url else ""
    action_drafts = None if actions is None else [action_draft(a) for a in actions]
    base_url = canonical_url or (feed.url if feed else None)
    body_html = sanitise_html(body, base_url) if body_is_html else markdown_to_html(body, base_url)
    summary = shorten(plain_text(summary) if summary else first_paragraph(body_html), MAX_SUMMARY)
    topic_rows = _resolve_topics(session, topics)
    values = {
        "canonical_url": canonical_url,
        "title": title,
        "summary": summary,
        "body_source": body,
        "body_html": body_html,
        "image_url": image_url,
        "image_alt": one_line(image_alt, MAX_IMAGE_ALT) if image_url else "",
        "author": one_line(author, MAX_AUTHOR),
    }
    if published_at is not None:
        values["published_at"] = _as_utc(published_at)

    article = _find(session, guid, canonical_url)
    if article is not None:
        return _update(article, values, topic_rows, action_drafts, feed, actions_by_editor)
    values.setdefault("published_at", clock.now())
    action_drafts = action_drafts or []
    for _ in range(SLUG_ATTEMPTS):
        article = Article(guid=guid, slug=_unique_slug(session, title), feed_id=feed.id if feed else None,
                          created_at=clock.now(), updated_at=clock.now(), **values)
        article.topics = topic_rows
        article.actions = [_action_link(d, i) for i, d in enumerate(action_drafts)]
        article.actions_edited = actions_by_editor and bool(action_drafts)
        try:
            with session.begin_nested():
                session.add(article)
            return Upserted(article, is_new=True, is_changed=True)
        except IntegrityError:
            # Another process stored this article (same GUID) or took our slug between our read and write.
            existing = _find(session, guid, canonical_url)
            if existing is not None:
                return _update(existing, values, topic_rows, action_drafts, feed, actions_by_editor)
    raise ArticleError(f"could not find a free slug for {title!r}; try again")


def _action_link(draft: ActionDraft, position: int) -> ActionLink:
    return ActionLink(label=draft.label, url=draft.url, kind=ActionKind(draft.kind), position=position)


def _update(article: Article, values: dict, topics: list[Topic], actions: list[ActionDraft] | None,
            feed: Feed | None, actions_by_editor: bool) -> Upserted:
    """Apply what changed; the slug stays, so archive links keep working when a title is corrected.

    A feed's actions (`feed` given) do not replace those an editor changed; an editor's change marks them.
    """
    is_changed = False
    for name, value in values.items():
        if getattr(article, name) != value:
            setattr(article, name, value)
            is_changed = True
    if [t.id for t in article.topics] != [t.id for t in topics]:
        article.topics = topics
        is_changed = True
    keeps_editors_actions = feed is not None and article.actions_edited and not actions_by_editor
    if actions is not None and not keeps_editors_actions and (
            [(a.label, a.url, a.kind.value) for a in article.actions] != [(d.label, d.url, d.kind) for d in actions]):
        article.actions = [_action_link(d, i) for i, d in enumerate(actions)]
        article.actions_edited = article.actions_edited or actions_by_editor
        is_changed = True
    if feed is not None and article.feed_id is None:
        article.feed_id = feed.id
        is_changed = True
    if is_changed:
        article.updated_at = clock.now()
    return Upserted(article, is_new=False, is_changed=is_changed)


# Articles written in the workspace are keyed like imported files ("file:<slug>"), with their own prefix.
WORKSPACE_GUID_PREFIX = "admin:"


def create_in_workspace(session: Session, *, title: str, canonical_url: str | None = None,
                        **fields) -> Upserted:
    """Store a new article written in the workspace, keyed "admin:<slug>".

    Refuses (ArticleError) a canonical URL another article has: storing would update that one instead.
    Other keywords are upsert_article's.
    """
    canonical_url = web_url(canonical_url, "the article's URL") if canonical_url else None
    if canonical_url:
        existing = session.scalar(select(Article.id).where(Article.canonical_url == canonical_url).limit(1))
        if existing is not None:
            raise ArticleError(f"article {existing} already has the URL {shorten(canonical_url, 80)!r}: edit that one")
    guid = WORKSPACE_GUID_PREFIX + _unique_slug(session, one_line(title, MAX_TITLE) or "article")
    if session.scalar(select(Article.id).where(Article.guid == guid)) is not None:
        raise ArticleError("another article was just stored under the same title; save again")
    fields.setdefault("actions_by_editor", True)  # a feed that later carries the same URL keeps the editor's
    return upsert_article(session, guid=guid, canonical_url=canonical_url, title=title, **fields)


def edit(session: Session, article: Article, **fields) -> Upserted:
    """Store an editor's changes to a stored article (from a feed, a file or the workspace) through upsert_article.

    The GUID, slug, author, image text and feed stay; `published_at` None keeps the publication time.
    Changed action links are the editor's from then on: later polls of the article's feed keep them.
    """
    fields.setdefault("author", article.author)
    # The feed's words for the image stay while the image does.
    fields.setdefault("image_alt", article.image_alt if fields.get("image_url", article.image_url) == article.image_url
                      else "")
    return upsert_article(session, guid=article.guid, actions_by_editor=True, **fields)


def return_actions_to_feed(session: Session, article: Article) -> None:
    """Let the article's feed set its action links again from its next poll (undoes `actions_edited`)."""
    article.actions_edited = False
    article.updated_at = clock.now()
    feed = session.get(Feed, article.feed_id) if article.feed_id is not None else None
    if feed is not None:
        # Forget the validators: the next poll reads the whole feed, not "304 Not Modified".
        feed.etag = feed.last_modified = ""


def unpublish(session: Session, article: Article) -> None:
    """Withdraw an article: no later digest or alert carries it (sends that did keep it)."""
    if article.unpublished_at is None:
        article.unpublished_at = clock.now()


def publish_again(session: Session, article: Article) -> None:
    """Undo `unpublish`: the next digest carries the article, if no digest has yet."""
    article.unpublished_at = None
