"""Verbs of alerts: send one article, now, to the readers of its topics, ahead of any queued digest.

An alert is a Send of kind `alert` and goes through the sends' machinery (mailer.sends) (tracked links, one
render per topic set, BulkMessage, the archive); only its composition and its audience differ.
It never counts as having carried its article for digests: the next digest still lists it, as
the record of what was published that week.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

from mailer import clock
from mailer.alerts import queries
from mailer.articles.models import Article
from mailer.sends import operations as send_operations
from mailer.sends.models import Send, SendKind
from mailer.errors import AlertError, NotFound, TopicError
from mailer.topics.models import Topic

# Held for the transaction on PostgreSQL (with the article id), so two alerts of one article at the
# same moment cannot both pass the check for an earlier one. SQLite's BEGIN IMMEDIATE serialises.
ALERT_LOCK = 0x616C7274  # "alrt"


def article_to_alert(session: Session, article_id: int) -> Article:
    """The article with this id, published by now and not unpublished; otherwise a reason the editor can act on."""
    article = queries.article_with_links(session, article_id)
    if article is None:
        raise NotFound(f"no article with id {article_id} (`mailer articles list` shows them)")
    if article.unpublished_at is not None:
        raise AlertError(f"article {article_id} was unpublished {article.unpublished_at:%Y-%m-%d %H:%M} UTC: "
                         "publish it again in the workspace before alerting readers to it")
    if article.published_at > clock.now():
        raise AlertError(f"article {article_id} is to be published {article.published_at:%Y-%m-%d %H:%M} UTC: "
                         "an alert cannot go out before its article")
    return article


def alert_topics(session: Session, article: Article, slugs: list[str] | None) -> list[Topic]:
    """The topics an alert goes to: `slugs` when given (each must exist), else the article's own."""
    if slugs is None:
        return list(article.topics)
    wanted = list(dict.fromkeys(slugs))
    if not wanted:
        raise TopicError("--topics names no topic (give slugs separated by commas, e.g. --topics ukraine,climate)")
    found = queries.topics_by_slug(session, wanted)
    unknown = [slug for slug in wanted if slug not in found]
    if unknown:
        raise TopicError(f"no topic {', '.join(unknown)} (`mailer topics list` shows them)")
    return sorted(found.values(), key=lambda t: t.slug)


def send_alert(session: Session, article: Article, topics: list[Topic], *, again: bool = False) -> Send | None:
    """Queue the alert to everyone it reaches, ahead of queued digests; None when it reaches nobody.

    Refuses an article already alerted to exactly these topics unless `again`: a second run of the
    same command (a retried cron job, two editors) must not mail people twice. To other topics, it
    goes only to readers no earlier alert of the article reached (with `again`: to all of them).
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key, :article)"),
                        {"key": ALERT_LOCK, "article": article.id})
    slugs = frozenset(t.slug for t in topics)
    earlier = queries.same_alert(session, article.id, slugs)
    if earlier is not None and not again:
        raise AlertError(f"article {article.id} already went out as alert {earlier.id} to "
                         f"{', '.join(sorted(slugs)) or 'readers who follow every topic'} "
                         f"on {earlier.created_at:%Y-%m-%d %H:%M} UTC; add --again to send it once more")
    reached = set() if again else queries.already_alerted(session, article.id)
    if all(recipient.id in reached for recipient in queries.audience(session, slugs)):
        return None
    now = clock.now()
    send = send_operations.create_send(session, SendKind.alert, [article],
                                       slug_text=f"{now:%Y-%m-%d}-urgent-{article.title}", created_at=now,
                                       topics=topics)
    send_operations.queue(session, send, skip=reached)
    return send


def describe(topics: list[Topic]) -> str:
    """Who an alert to `topics` reaches, in words."""
    if not topics:
        return "readers who follow every topic"
    return ", ".join(t.slug for t in topics) + " (and readers who follow every topic)"
