"""Alert composition: one article, urgent, to the readers of some topics. Pure, like digest composition."""

from __future__ import annotations

from mailer import emails
from mailer.digests.compose import (PREHEADER_LENGTH, SUBJECT_TITLE_LENGTH, ArticleView, DigestParts,
                                    DigestSettings, TopicView, image_alt, shorten, summary_of)


def reaches(topic_set: frozenset[str], audience: frozenset[str]) -> bool:
    """Whether a reader following `topic_set` gets an alert to the topics `audience`.

    A reader who chose no topic follows everything, so every alert reaches them.
    """
    return not topic_set or bool(topic_set & audience)


def compose_alert(article: ArticleView, topic_set: frozenset[str] | set[str], settings: DigestSettings,
                  audience: tuple[TopicView, ...]) -> DigestParts | None:
    """Render the alert for readers following `topic_set` (empty: all), or None when it does not reach them.

    The calls to act come first, as big buttons, then the summary and "Read more"; the footer is
    a digest's.
    """
    topic_set = frozenset(topic_set)
    if not reaches(topic_set, frozenset(t.slug for t in audience)):
        return None
    placeholders = settings.placeholders
    preheader = shorten(summary_of(article), PREHEADER_LENGTH)
    rendered = emails.render(
        "alert", settings.config,
        article=article,
        summary_of=summary_of,
        image_alt=image_alt,
        subject_title_length=SUBJECT_TITLE_LENGTH,
        preheader=preheader,
        followed_topics=[t.title for t in audience if t.slug in topic_set],
        archive_url=settings.archive_url,
        is_archive=settings.is_archive,
        subscribe_url=emails.absolute_url(settings.config, "/subscribe"),
        unsubscribe_url=placeholders.url("unsubscribe_url"),
        preferences_url=placeholders.url("preferences_url"),
        open_pixel_url=(placeholders.url("open_pixel_url")
                        if settings.config["tracking"]["opens"] and not settings.is_archive else ""),
    )
    return DigestParts(subject=rendered.subject, preheader=preheader, text=rendered.text,
                       html=rendered.html, article_ids=(article.id,))
