"""Verbs that create topics: by editors (`mailer topics add`), and on the fly from hashtags and feed categories."""

from __future__ import annotations

import re
import unicodedata

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mailer import clock
from mailer.articles.rendering import CONTROL_CHARACTERS
from mailer.errors import TopicError
from mailer.topics.models import Topic

MAX_SLUG = 80
MAX_TITLE = 200
SLUG_RE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
# Words inside a hashtag: an acronym before a capitalised word (LGBTIQ|Rights), a capitalised or lower-case
# word, a trailing acronym, or a number.
_HASHTAG_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")


def _ascii(text: str) -> str:
    """Fold accents away (Café -> Cafe) so slugs stay plain ASCII in URLs and forms."""
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")


def slugify(text: str, max_length: int = MAX_SLUG) -> str:
    """A URL slug for free text: lower case ASCII words joined by hyphens, cut at a word boundary."""
    slug = re.sub(r"[^a-z0-9]+", "-", _ascii(text).lower()).strip("-")
    if len(slug) > max_length:
        cut = slug[:max_length + 1]  # one more, so a word ending exactly at the limit is kept whole
        slug = cut.rsplit("-", 1)[0] if "-" in cut else slug[:max_length]
    return slug


def hashtag_words(hashtag: str) -> list[str]:
    """The words of a CamelCase hashtag: "#ChechenAntiGayPurge" -> ["Chechen", "Anti", "Gay", "Purge"]."""
    return _HASHTAG_WORD.findall(_ascii(hashtag.lstrip("#")))


def slug_for_hashtag(hashtag: str) -> str:
    """The topic slug of a hashtag: "#ChechenAntiGayPurge" -> "chechen-anti-gay-purge"."""
    return "-".join(word.lower() for word in hashtag_words(hashtag))[:MAX_SLUG].strip("-")


def title_for_hashtag(hashtag: str) -> str:
    """A readable title for a hashtag: "#LGBTIQRights" -> "LGBTIQ Rights" (acronyms keep their capitals)."""
    return " ".join(word if word[0].isupper() else word.capitalize() for word in hashtag_words(hashtag))


def title_for_slug(slug: str) -> str:
    """A readable title when an editor gave none: "lgbtiq-rights" -> "Lgbtiq Rights"."""
    return " ".join(word.capitalize() for word in slug.split("-"))


def validate_slug(slug: str) -> str:
    """The slug unchanged if it is lower-case letters, digits and single hyphens; TopicError otherwise."""
    slug = (slug or "").strip()
    if not SLUG_RE.fullmatch(slug):
        raise TopicError(f"invalid topic slug {slug!r}: use lower-case letters, digits and single hyphens, "
                         f"like lgbtiq-rights")
    if len(slug) > MAX_SLUG:
        raise TopicError(f"invalid topic slug {slug!r}: at most {MAX_SLUG} characters")
    return slug


def clean_title(title: str | None) -> str:
    """A title on one line (it may end up in a subject), at most MAX_TITLE characters, no control characters."""
    title = " ".join(CONTROL_CHARACTERS.sub(" ", title or "").split())
    if len(title) > MAX_TITLE:
        raise TopicError(f"a topic title can be at most {MAX_TITLE} characters")
    return title


def find_topic(session: Session, slug: str) -> Topic | None:
    """The topic with this slug, or None."""
    return session.scalar(select(Topic).where(Topic.slug == slug))


def add_topic(session: Session, slug: str, title: str | None = None, description: str = "") -> Topic:
    """Create a topic an editor named. TopicError when the slug is invalid or already taken."""
    slug = validate_slug(slug)
    if find_topic(session, slug) is not None:
        raise TopicError(f"topic {slug} already exists")
    topic = Topic(slug=slug, title=clean_title(title) or title_for_slug(slug),
                  description=(description or "").strip(), created_at=clock.now())
    session.add(topic)
    session.flush()
    return topic


def ensure_topic(session: Session, slug: str, title: str | None = None) -> Topic:
    """The topic with this slug, created (with `title`) if missing.

    Safe when another process creates the same slug at the same moment: the insert runs in a savepoint
    and, if the unique slug is taken by then, we take the row the other process wrote.
    """
    slug = validate_slug(slug)
    topic = find_topic(session, slug)
    if topic is not None:
        return topic
    topic = Topic(slug=slug, title=clean_title(title) or title_for_slug(slug), created_at=clock.now())
    try:
        with session.begin_nested():
            session.add(topic)
    except IntegrityError:
        topic = find_topic(session, slug)
        if topic is None:
            raise
    return topic


def topic_for_label(session: Session, label: str) -> Topic:
    """The topic for a hashtag ("#LGBTIQRights"), a slug ("lgbtiq-rights") or a category ("Human Rights"),
    created if missing. TopicError when nothing usable for a slug is left (e.g. only punctuation)."""
    label = " ".join((label or "").split())
    if label.startswith("#"):
        slug, title = slug_for_hashtag(label), title_for_hashtag(label)
    elif SLUG_RE.fullmatch(label):
        slug, title = label, title_for_slug(label)
    else:
        slug, title = slugify(label), label[:MAX_TITLE]
    if not slug:
        raise TopicError(f"cannot make a topic of {label!r}: it has no letters or digits we can use in a slug")
    return ensure_topic(session, slug, title)
