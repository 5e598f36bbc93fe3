"""Digest composition as a pure function: no database, no app. Snapshots of subject, text and HTML."""

from __future__ import annotations

import dataclasses
import os
import re
import secrets
from datetime import timedelta
from pathlib import Path

import pytest

from mailer import clock, config as config_module
from mailer.digests.compose import (ActionView, ArticleView, DigestSettings, Placeholders, TopicView,
                                    compose_digest, personalise)
from tests import factories

SNAPSHOTS = Path(__file__).parent / "snapshots"
BASE = "https://news.example.org"
RECIPIENT_VALUES = {"unsubscribe_url": f"{BASE}/unsubscribe/MANAGE-TOKEN-7",
                    "preferences_url": f"{BASE}/preferences/MANAGE-TOKEN-7"}


def assert_matches_snapshot(name: str, content: str) -> None:
    """Compare with tests/snapshots/<name>; UPDATE_SNAPSHOTS=1 rewrites it instead."""
    path = SNAPSHOTS / name
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(content)
    assert path.exists(), f"no snapshot {path.name}: run with UPDATE_SNAPSHOTS=1 and review it"
    assert content == path.read_text(), f"{path.name} changed: review, then UPDATE_SNAPSHOTS=1"


def make_config(**sections):
    overrides = {"site": {"base_url": BASE, "postal_address": "Accidentally Alex, 1 Example Street, London"}}
    overrides.update(sections)
    return config_module.load(path=None, environ={}, overrides=overrides)


def views(placeholders: Placeholders, specs=factories.FIXED_ARTICLES) -> list[ArticleView]:
    """The fixed articles as composition sees them; link ids numbered in order, as a send would."""
    next_id = iter(range(1, 100))
    result = []
    for i, spec in enumerate(specs, start=1):
        result.append(ArticleView(
            id=i, title=spec["title"], summary=spec["summary"], url=placeholders.link(next(next_id)),
            published_at=clock.now() - spec["age"], image_url=spec.get("image_url", ""),
            topics=tuple(TopicView(s, factories.TOPIC_TITLES[s]) for s in spec["topics"]),
            actions=tuple(ActionView(label, placeholders.link(next(next_id)), kind.value)
                          for label, url, kind in spec["actions"])))
    return result


def settings(placeholders: Placeholders, config=None, **kw) -> DigestSettings:
    return DigestSettings(config or make_config(), f"{BASE}/archive/2026-11-23-two-dead", placeholders, **kw)


def fill(name: str) -> str:
    return RECIPIENT_VALUES.get(name) or f"{BASE}/l/{name.upper()}-FOR-7"


@pytest.fixture
def placeholders():
    return Placeholders("5e1ec7ed")


def test_digest_for_two_topics_matches_snapshots(frozen_clock, placeholders):
    parts = compose_digest(views(placeholders), {"lgbtiq-rights", "ukraine"}, settings(placeholders))
    rendered = personalise(parts, placeholders, fill)
    assert_matches_snapshot("digest_two_topics.subject.txt", rendered.subject + "\n")
    assert_matches_snapshot("digest_two_topics.txt", rendered.text)
    assert_matches_snapshot("digest_two_topics.html", rendered.html)


def test_digest_shows_only_followed_topics_lead_first_with_buttons(frozen_clock, placeholders):
    parts = compose_digest(views(placeholders), {"lgbtiq-rights", "ukraine"}, settings(placeholders))
    rendered = personalise(parts, placeholders, fill)
    assert rendered.subject == ("Accidentally Alex update: Two Dead And At Least 40 Detained As Chechen "
                                "LGBT Purge Resumes and 1 more")
    assert "Climate March" not in rendered.text and "Climate March" not in rendered.html
    assert rendered.text.index("Two Dead") < rendered.text.index("Winter Aid")
    assert '<img src="https://accidentallyalex.example/images/grozny.jpg"' in rendered.html
    buttons = re.findall(r'<a [^>]*class="action action-(\w+)"[^>]*style="([^"]+)"[^>]*>([^<]+)</a>', rendered.html)
    assert [(kind, label) for kind, _, label in buttons] == [
        ("petition", "Sign the petition for Russia to intervene"),
        ("donate", "Donate to The Russian LGBT Network"),
        ("donate", "Donate to the winter appeal")]
    assert all("display: inline-block" in style and "background-color" in style for _, style, _ in buttons)
    assert f"Sign the petition for Russia to intervene: {BASE}/l/LINK-2-FOR-7" in rendered.text
    assert "about LGBTIQ Rights, Ukraine" in rendered.text
    assert f'href="{BASE}/archive/2026-11-23-two-dead"' in rendered.html
    assert "%%" not in rendered.text + rendered.html


def test_subscriber_without_topics_gets_every_article(frozen_clock, placeholders):
    parts = compose_digest(views(placeholders), frozenset(), settings(placeholders))
    assert parts.article_ids == (1, 2, 3)
    assert parts.subject.endswith("and 2 more")
    assert "You get this email because you signed up for updates from Accidentally Alex." in parts.text


def test_nothing_in_followed_topics_composes_nothing(frozen_clock, placeholders):
    assert compose_digest(views(placeholders), {"gardening"}, settings(placeholders)) is None
    assert compose_digest([], frozenset(), settings(placeholders)) is None


def test_a_single_article_subject_is_just_its_title(frozen_clock, placeholders):
    parts = compose_digest(views(placeholders), {"climate"}, settings(placeholders))
    assert parts.subject == "Accidentally Alex update: Climate March On Saturday"
    assert parts.preheader == "Meet at noon by the river."


def test_article_text_is_escaped_and_cannot_forge_a_placeholder(frozen_clock):
    placeholders = Placeholders(secrets.token_hex(8))  # as a send makes them: unknown to article authors
    hostile = dict(factories.CLIMATE, title='<script>alert(1)</script> "quoted"',
                   summary="%%5e1ec7ed:unsubscribe_url%% and %%5e1ec7ed:link-1%%")
    rendered = personalise(compose_digest(views(placeholders, [hostile]), frozenset(), settings(placeholders)),
                           placeholders, fill)
    assert "<script>" not in rendered.html and "&lt;script&gt;" in rendered.html
    assert "%%5e1ec7ed:unsubscribe_url%% and %%5e1ec7ed:link-1%%" in rendered.text


def test_summary_falls_back_to_the_body_as_plain_text(frozen_clock, placeholders):
    bare = dict(factories.CLIMATE, summary="")
    view = views(placeholders, [bare])[0]
    view = dataclasses.replace(view, body_html="<p>Bring <b>banners</b> &amp; friends.</p>")
    parts = compose_digest([view], frozenset(), settings(placeholders))
    assert "Bring banners & friends." in parts.text


def test_no_open_pixel_unless_tracking_opens(frozen_clock, placeholders):
    plain = compose_digest(views(placeholders), frozenset(), settings(placeholders))
    assert "open_pixel_url" not in plain.html and 'height="1"' not in plain.html
    tracked = compose_digest(views(placeholders), frozenset(),
                             settings(placeholders, make_config(tracking={"opens": True})))
    assert f'<img src="{placeholders.url("open_pixel_url")}"' in tracked.html


def test_archive_version_has_no_personal_links(frozen_clock, placeholders):
    parts = compose_digest(views(placeholders), frozenset(), settings(placeholders, is_archive=True))
    for name in ("unsubscribe_url", "preferences_url", "open_pixel_url"):
        assert placeholders.url(name) not in parts.text + parts.html
    assert f'href="{BASE}/subscribe"' in parts.html and "View in your browser" not in parts.html


def test_newest_article_leads(frozen_clock, placeholders):
    older, newer = views(placeholders)[:2]
    newer = dataclasses.replace(newer, published_at=clock.now() - timedelta(minutes=5))
    parts = compose_digest([older, newer], frozenset(), settings(placeholders))
    assert parts.subject.startswith("Accidentally Alex update: Winter Aid")


def test_a_runaway_title_is_cut_short_in_the_subject(frozen_clock, placeholders):
    long_title = "Long " * 200
    parts = compose_digest(views(placeholders, [dict(factories.CLIMATE, title=long_title)]), frozenset(),
                           settings(placeholders))
    assert len(parts.subject) < 200 and parts.subject.endswith("…")
    assert long_title.strip() in parts.html  # the article itself keeps its whole title
