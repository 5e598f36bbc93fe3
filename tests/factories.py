"""Rows for tests, made directly with the models: topics, articles with calls to act, subscribers."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select

from mailer import clock
from mailer.articles.models import ActionKind, ActionLink, Article
from mailer.topics.models import Topic
from subscribers.models import Subscriber, SubscriberState, Suppression

TOPIC_TITLES = {
    "chechen-anti-gay-purge": "Chechen Anti Gay Purge",
    "lgbtiq-rights": "LGBTIQ Rights",
    "ukraine": "Ukraine",
    "climate": "Climate",
}

PETITION_URL = "https://www.change.org/p/russia-intervene-chechnya"
DONATE_URL = "https://lgbtnet.org/en/donate"

# The fixed articles of the snapshot and flow tests; `age` is how long before now each was published.
CHECHNYA = dict(
    slug="two-dead-chechen-lgbt-purge-resumes",
    title="Two Dead And At Least 40 Detained As Chechen LGBT Purge Resumes",
    summary=("Reports from Grozny say police have again rounded up men suspected of being gay. "
             "Two are dead and at least 40 detained, the Russian LGBT Network says."),
    canonical_url="https://accidentallyalex.example/2026/11/chechen-lgbt-purge-resumes",
    image_url="https://accidentallyalex.example/images/grozny.jpg",
    topics=("chechen-anti-gay-purge", "lgbtiq-rights"),
    actions=(("Sign the petition for Russia to intervene", PETITION_URL, ActionKind.petition),
             ("Donate to The Russian LGBT Network", DONATE_URL, ActionKind.donate)),
    age=timedelta(hours=3),
)
UKRAINE = dict(
    slug="winter-aid-for-refugees",
    title="Winter Aid For Refugees From Ukraine",
    summary="Shelters in Lviv need generators and blankets before the first frost.",
    canonical_url="https://accidentallyalex.example/2026/11/winter-aid",
    topics=("ukraine",),
    actions=(("Donate to the winter appeal", "https://example.org/winter-appeal", ActionKind.donate),),
    age=timedelta(days=1),
)
CLIMATE = dict(
    slug="climate-march-saturday",
    title="Climate March On Saturday",
    summary="Meet at noon by the river.",
    canonical_url="https://accidentallyalex.example/2026/11/climate-march",
    topics=("climate",),
    actions=(("Join the march", "https://example.org/march", ActionKind.event),),
    age=timedelta(days=2),
)
FIXED_ARTICLES = (CHECHNYA, UKRAINE, CLIMATE)


def topic(session, slug: str) -> Topic:
    found = session.scalar(select(Topic).where(Topic.slug == slug))
    if found is None:
        found = Topic(slug=slug, title=TOPIC_TITLES.get(slug, slug.replace("-", " ").title()))
        session.add(found)
        session.flush()
    return found


def article(session, *, slug: str, title: str, summary: str = "", canonical_url: str | None = None,
            image_url: str = "", topics=(), actions=(), age: timedelta = timedelta(hours=1),
            published_at: datetime | None = None, body_html: str = "") -> Article:
    row = Article(guid=canonical_url or f"file:{slug}", canonical_url=canonical_url, slug=slug, title=title,
                  summary=summary, body_html=body_html, image_url=image_url,
                  published_at=published_at or clock.now() - age)
    row.topics = [topic(session, s) for s in topics]
    row.actions = [ActionLink(label=label, url=url, kind=kind, position=i)
                   for i, (label, url, kind) in enumerate(actions)]
    session.add(row)
    session.flush()
    return row


def fixed_articles(session) -> list[Article]:
    return [article(session, **spec) for spec in FIXED_ARTICLES]


def subscriber(session, email: str, *, topics=(), state=SubscriberState.confirmed, is_paused=False,
               suppressed: str | None = None, name: str = "") -> Subscriber:
    row = Subscriber(email=email, name=name, state=state, is_paused=is_paused,
                     confirmed_at=clock.now() if state == SubscriberState.confirmed else None)
    row.topics = [topic(session, s) for s in topics]
    session.add(row)
    if suppressed:
        session.add(Suppression(email=email, reason=suppressed))
    session.flush()
    return row


def deliver(config) -> list:
    """Run one delivery pass into memory (the worker builds each send's messages then); the envelopes."""
    from mailer.outbox.backends import MemoryBackend
    from mailer.outbox.worker import run_once

    memory = MemoryBackend()
    run_once(config, memory)
    return memory.sent
