"""Digest composition: pure functions from article views to message parts. No database, no Flask, no I/O.

A digest is rendered once per distinct topic set with placeholders where per-recipient URLs go
(unsubscribe, preferences, tracked links); `personalise` (or, when queueing, emails.BulkMessage)
then fills them in by string substitution, so a hundred thousand recipients cost one template
render per topic set, not one each.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Iterable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import nh3

from mailer import emails
from mailer.config import Config

PREHEADER_LENGTH = 140
SUMMARY_LENGTH = 300
# A subject is one line a reader scans; a runaway title must not make it longer than that.
SUBJECT_TITLE_LENGTH = 150
# The heading for articles that carry no topic (only subscribers who follow everything see them).
UNTOPICAL_HEADING = "More news"


@dataclass(frozen=True)
class TopicView:
    slug: str
    title: str


@dataclass(frozen=True)
class ActionView:
    """A call to act, shown as a button. `url` is final or a placeholder filled in per recipient."""

    label: str
    url: str
    kind: str = "other"


@dataclass(frozen=True)
class ArticleView:
    """What composition needs to know about an article; built from the model by the caller."""

    id: int
    title: str
    summary: str
    url: str  # the "Read more" target (final or a placeholder); empty when the article has none
    published_at: datetime
    body_html: str = ""
    image_url: str = ""
    image_alt: str = ""  # the feed's words for the image; the title stands in when empty
    topics: tuple[TopicView, ...] = ()
    actions: tuple[ActionView, ...] = ()
    is_full: bool = False  # the digest carries the whole post (its feed's `full_content`), not the summary


@dataclass(frozen=True)
class Placeholders:
    """Stand-ins for per-recipient URLs. `marker` is random per send so article text cannot forge one."""

    marker: str

    def url(self, name: str) -> str:
        return f"%%{self.marker}:{name}%%"

    def link(self, link_id: int) -> str:
        return self.url(f"link-{link_id}")

    @property
    def pattern(self) -> re.Pattern:
        return re.compile(rf"%%{re.escape(self.marker)}:([\w-]+)%%")


@dataclass(frozen=True)
class DigestSettings:
    """Site-wide inputs of a render: the config, where the web version lives, and the placeholders."""

    config: Config
    archive_url: str
    placeholders: Placeholders
    is_archive: bool = False  # the public web version: no personal links, a sign-up link instead
    editor_note: str = ""  # the editors' words at the top of a digest (plain text); empty: none
    issue_number: int | None = None  # "Issue 12": how many digests there have been, this one included
    issued_at: datetime | None = None  # when the digest was made; its date heads the mail


@dataclass(frozen=True)
class TopicSection:
    title: str
    articles: tuple[ArticleView, ...]


@dataclass(frozen=True)
class DigestParts:
    """One render for one topic set, placeholders still in."""

    subject: str
    preheader: str
    text: str
    html: str
    article_ids: tuple[int, ...]


def articles_for(articles: Iterable[ArticleView], topic_set: frozenset[str]) -> list[ArticleView]:
    """The articles a subscriber following `topic_set` gets; an empty set follows everything."""
    if not topic_set:
        return list(articles)
    return [a for a in articles if any(t.slug in topic_set for t in a.topics)]


def group_by_topic(articles: list[ArticleView], topic_set: frozenset[str]) -> list[TopicSection]:
    """Sections in order of first appearance; an article sits under its first followed topic, once."""
    sections: dict[str, list[ArticleView]] = {}
    for article in articles:
        followed = [t for t in article.topics if not topic_set or t.slug in topic_set]
        heading = followed[0].title if followed else UNTOPICAL_HEADING
        sections.setdefault(heading, []).append(article)
    return [TopicSection(title, tuple(items)) for title, items in sections.items()]


def summary_of(article: ArticleView) -> str:
    """The article's summary, or the start of its body as plain text when it has none."""
    if article.summary.strip():
        return " ".join(article.summary.split())
    text = " ".join(html.unescape(nh3.clean(article.body_html, tags=set())).split())
    return shorten(text, SUMMARY_LENGTH)


def image_alt(article: ArticleView) -> str:
    """What the article's image says to a reader who cannot see it: the feed's alt text, else the title."""
    return " ".join((article.image_alt or article.title).split())


_BLOCK_END = re.compile(r"(?i)</(p|li|h[1-6]|blockquote|pre|tr|figcaption|dd|dt)\s*>|<br\s*/?>|<hr\b[^>]*>")
_LIST_ITEM = re.compile(r"(?i)<li\b[^>]*>")
_LINK = re.compile(r'(?is)<a\b[^>]*\bhref="(https?://[^"]+)"[^>]*>(.*?)</a>')


def text_of(body_html: str) -> str:
    """A post's sanitised HTML as plain-text paragraphs for the text part: a blank line between blocks,
    list items as "- ", a link's address after its words ("the bill (https://…)")."""

    def link(match: re.Match) -> str:
        words = match.group(2)
        url = html.unescape(match.group(1))
        return words if html.unescape(nh3.clean(words, tags=set())).strip() == url else f"{words} ({url})"

    marked = _LIST_ITEM.sub("\n\n- ", _LINK.sub(link, body_html or ""))
    marked = _BLOCK_END.sub("\n\n", marked)
    text = html.unescape(nh3.clean(marked, tags=set()))
    paragraphs = [" ".join(block.split()) for block in re.split(r"\n\s*\n", text)]
    return "\n\n".join(p for p in paragraphs if p)


def issue_line(settings: DigestSettings) -> str:
    """ "Issue 12 · 23 November 2026" (in the schedule's time zone), or what of it is known; "" for neither."""
    parts = []
    if settings.issue_number:
        parts.append(f"Issue {settings.issue_number}")
    if settings.issued_at is not None:
        try:
            zone = ZoneInfo(settings.config["scheduler"]["timezone"])
        except (KeyError, ZoneInfoNotFoundError, ValueError):
            zone = timezone.utc
        day = settings.issued_at.astimezone(zone)
        parts.append(f"{day.day} {day:%B %Y}")
    return " · ".join(parts)


def shorten(text: str, limit: int) -> str:
    """`text` cut at a word boundary to at most `limit` characters, with an ellipsis when cut."""
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0].rstrip(",.;:") + "…"


def compose_digest(articles: Iterable[ArticleView], topic_set: frozenset[str] | set[str],
                   settings: DigestSettings) -> DigestParts | None:
    """Render the digest for subscribers following `topic_set` (empty: all), or None when nothing matches.

    A heading names the issue and its date (when the settings know them). The newest article leads;
    the rest follow grouped by topic, each with its image, its summary (or the whole post when its feed
    sends full posts), "Read more" and its calls to act as buttons.
    """
    topic_set = frozenset(topic_set)
    chosen = sorted(articles_for(articles, topic_set), key=lambda a: (a.published_at, a.id), reverse=True)
    if not chosen:
        return None
    lead, rest = chosen[0], chosen[1:]
    followed = sorted({t.title for a in chosen for t in a.topics if t.slug in topic_set})
    placeholders = settings.placeholders
    preheader = _preheader(lead, rest)
    rendered = emails.render(
        "digest", settings.config,
        lead=lead,
        sections=group_by_topic(rest, topic_set),
        more=len(rest),
        summary_of=summary_of,
        text_of=text_of,
        image_alt=image_alt,
        issue_line=issue_line(settings),
        subject_title_length=SUBJECT_TITLE_LENGTH,
        preheader=preheader,
        followed_topics=followed,
        archive_url=settings.archive_url,
        is_archive=settings.is_archive,
        editor_note=settings.editor_note.strip(),
        subscribe_url=emails.absolute_url(settings.config, "/subscribe"),
        unsubscribe_url=placeholders.url("unsubscribe_url"),
        preferences_url=placeholders.url("preferences_url"),
        open_pixel_url=placeholders.url("open_pixel_url") if _tracks_opens(settings) else "",
    )
    return DigestParts(subject=rendered.subject, preheader=preheader, text=rendered.text,
                       html=rendered.html, article_ids=tuple(a.id for a in chosen))


def _tracks_opens(settings: DigestSettings) -> bool:
    return settings.config["tracking"]["opens"] and not settings.is_archive


def _preheader(lead: ArticleView, rest: list[ArticleView]) -> str:
    """The grey line mail clients show after the subject."""
    if rest:
        also = "Also: " + "; ".join(a.title for a in rest)
        return shorten(also, PREHEADER_LENGTH)
    return shorten(summary_of(lead), PREHEADER_LENGTH)


def personalise(parts: DigestParts, placeholders: Placeholders,
                value_of: Callable[[str], str]) -> emails.Rendered:
    """Fill every placeholder with `value_of(name)`: the per-recipient step, a substitution, not a render.

    Values are URLs we build ourselves (signed tokens: URL-safe characters only), so they are safe in
    HTML attributes without escaping.
    """
    pattern = placeholders.pattern

    def fill(text: str) -> str:
        return pattern.sub(lambda m: value_of(m.group(1)), text)

    return emails.Rendered(subject=parts.subject, text=fill(parts.text), html=fill(parts.html))
