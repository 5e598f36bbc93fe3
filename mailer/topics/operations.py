"""Verbs on topics: editors create, rename, show, hide, merge and delete them; hashtags and feed categories
create them on the fly (hidden from the public form until an editor shows them)."""

from __future__ import annotations

import re
import unicodedata

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mailer import clock
from mailer.articles.models import ArticleTopic
from mailer.articles.rendering import CONTROL_CHARACTERS
from mailer.sends.models import SendTopic
from mailer.errors import TopicError
from mailer.feeds.models import FeedTopic
from mailer.topics.models import SubscriberTopic, Topic

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


def topic_slug(label: str) -> str:
    """The one slug of a topic's idea, however it is written: a feed category `ChechenAntiGayPurge`, a hashtag
    `#ChechenAntiGayPurge`, a category "Chechen Anti-Gay Purge" and the slug `chechen-anti-gay-purge` are all
    "chechen-anti-gay-purge". Words are split at spaces and punctuation, inside CamelCase, and between
    letters and digits ("#Refugees2026" -> "refugees-2026"); "" when no letter or digit is left.
    Feeds, file imports and the workspace all name topics through this function.
    """
    slug = "-".join(word.lower() for word in hashtag_words(label or ""))
    if len(slug) > MAX_SLUG:
        cut = slug[:MAX_SLUG + 1]
        slug = cut.rsplit("-", 1)[0] if "-" in cut else slug[:MAX_SLUG]
    return slug


def slug_for_hashtag(hashtag: str) -> str:
    """The topic slug of a hashtag: "#ChechenAntiGayPurge" -> "chechen-anti-gay-purge" (see topic_slug)."""
    return topic_slug(hashtag)


def title_for_hashtag(hashtag: str) -> str:
    """A readable title for a hashtag: "#LGBTIQRights" -> "LGBTIQ Rights" (acronyms keep their capitals)."""
    return " ".join(word if word[0].isupper() else word.capitalize() for word in hashtag_words(hashtag))


def title_for_slug(slug: str) -> str:
    """A readable title when an editor gave none: "lgbtiq-rights" -> "Lgbtiq Rights"."""
    return " ".join(word.capitalize() for word in slug.split("-"))


def validate_slug(slug: str) -> str:
    """The slug unchanged if it is lower-case letters, digits and single hyphens; TopicError otherwise
    (suggesting the slug `topic_slug` makes of what was typed)."""
    slug = (slug or "").strip()
    if not SLUG_RE.fullmatch(slug):
        suggestion = topic_slug(slug) or "lgbtiq-rights"
        raise TopicError(f"invalid topic slug {slug!r}: use lower-case letters, digits and single hyphens, "
                         f"like {suggestion}")
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
    """The topic with this slug, created (with `title`) if missing, hidden from the public form: nobody
    chose it for readers yet, so an editor shows it once it is worth offering.

    Safe when another process creates the same slug at the same moment: the insert runs in a savepoint
    and, if the unique slug is taken by then, we take the row the other process wrote.
    """
    slug = validate_slug(slug)
    topic = find_topic(session, slug)
    if topic is not None:
        return topic
    topic = Topic(slug=slug, title=clean_title(title) or title_for_slug(slug), is_hidden=True,
                  created_at=clock.now())
    try:
        with session.begin_nested():
            session.add(topic)
    except IntegrityError:
        topic = find_topic(session, slug)
        if topic is None:
            raise
    return topic


def _title_for_label(label: str) -> str:
    if label.startswith("#") or (" " not in label and not SLUG_RE.fullmatch(label)):
        return title_for_hashtag(label)  # "#LGBTIQRights", "ChechenAntiGayPurge": "LGBTIQ Rights"
    if SLUG_RE.fullmatch(label):
        return title_for_slug(label)
    return clean_title(label[:MAX_TITLE])  # a category's own words: "Chechen Anti-Gay Purge"


def topic_for_label(session: Session, label: str) -> Topic:
    """The topic for a hashtag ("#LGBTIQRights"), a slug ("lgbtiq-rights") or a category ("Human Rights",
    "ChechenAntiGayPurge"), created under `topic_slug(label)` if missing. TopicError when nothing usable
    for a slug is left (e.g. only punctuation).

    Topics made before there was one slug function keep working (no migration renames them): a label
    that is itself the slug of a stored topic ("covid19") names that topic, and a topic stored under the
    old slug of a category ("chechenantigaypurge", from `ChechenAntiGayPurge`) is found when none has the
    new slug yet. Where both exist, the new one gets new articles: merge the old one into it
    (`mailer topics merge OLD NEW`, or the Topics room).
    """
    label = " ".join((label or "").split())
    slug = topic_slug(label)
    if not slug:
        raise TopicError(f"cannot make a topic of {label!r}: it has no letters or digits we can use in a slug")
    for known in dict.fromkeys(s for s in (label if SLUG_RE.fullmatch(label) else "", slug, slugify(label)) if s):
        topic = find_topic(session, known)
        if topic is not None:
            return topic
    return ensure_topic(session, slug, _title_for_label(label))


def rename_topic(session: Session, topic: Topic, title: str) -> Topic:
    """Give `topic` a new title. TopicError when the title is empty or too long."""
    title = clean_title(title)
    if not title:
        raise TopicError("a topic needs a title readers can see")
    topic.title = title
    session.flush()
    return topic


def describe_topic(session: Session, topic: Topic, description: str) -> Topic:
    """Set the line shown under the topic on the public form (empty removes it)."""
    topic.description = (description or "").strip()
    session.flush()
    return topic


def set_hidden(session: Session, topic: Topic, is_hidden: bool) -> Topic:
    """Hide `topic` from the public signup form, or show it there; its followers keep it either way."""
    topic.is_hidden = is_hidden
    session.flush()
    return topic


def follower_count(session: Session, topic: Topic) -> int:
    """How many subscribers (in any state) follow `topic`."""
    return session.scalar(select(func.count()).select_from(SubscriberTopic)
                          .where(SubscriberTopic.topic_id == topic.id))


def merge_topics(session: Session, source: Topic, target: Topic) -> Topic:
    """Fold `source` into `target`: its followers, articles, feeds and alerts get `target`; `source` goes.

    A row that already names `target` is not copied twice (each link table's key is the pair).
    """
    if source.id == target.id:
        raise TopicError(f"cannot merge topic {source.slug} into itself: choose another topic")
    session.flush()
    for table, owner in ((SubscriberTopic.__table__, "subscriber_id"), (ArticleTopic.__table__, "article_id"),
                         (FeedTopic.__table__, "feed_id"), (SendTopic.__table__, "send_id")):
        has_target = select(table.c[owner]).where(table.c.topic_id == target.id)
        session.execute(delete(table).where(table.c.topic_id == source.id, table.c[owner].in_(has_target)))
        session.execute(update(table).where(table.c.topic_id == source.id).values(topic_id=target.id))
    session.execute(delete(Topic).where(Topic.id == source.id))
    # Collections loaded before (an article's topics, a reader's) still name `source`: read them again.
    session.expire_all()
    return target


def delete_topic(session: Session, topic: Topic) -> None:
    """Delete a topic nobody follows (its articles and feeds simply lose it). TopicError when followed."""
    followers = follower_count(session, topic)
    if followers:
        raise TopicError(f"topic {topic.slug} has {followers} follower(s): merge it into another topic "
                         f"instead, so they keep getting its articles")
    session.delete(topic)
    session.flush()
