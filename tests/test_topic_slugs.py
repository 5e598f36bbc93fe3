"""One topic per idea: a feed category `ChechenAntiGayPurge`, a hashtag `#ChechenAntiGayPurge` in a file and a
category "Chechen Anti-Gay Purge" name one topic, through the real feed poll and file import; topics stored
under the old slugs keep their readers."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from mailer.articles.models import Article
from mailer.errors import TopicError
from mailer.topics import operations
from mailer.topics.models import Topic
from tests import factories
from tests.test_feed_actions import atom
from tests.test_feeds import add, feed_server, static  # noqa: F401  (feed_server is a fixture)

CHECHNYA_MD = Path(__file__).parent / "fixtures" / "chechnya.md"


@pytest.mark.parametrize("label", ["ChechenAntiGayPurge", "#ChechenAntiGayPurge", "Chechen Anti-Gay Purge",
                                   "chechen-anti-gay-purge", "  Chechen   anti gay purge ", "#chechen_anti_gay_purge"])
def test_every_way_of_writing_the_idea_has_one_slug(label):
    assert operations.topic_slug(label) == "chechen-anti-gay-purge"


@pytest.mark.parametrize("label, slug", [("#LGBTIQRights", "lgbtiq-rights"), ("LGBTIQ Rights", "lgbtiq-rights"),
                                         ("#Refugees2026", "refugees-2026"), ("Café Société", "cafe-societe"),
                                         ("???", ""), ("x" * 200, "x" * 80)])
def test_topic_slug_of_other_labels(label, slug):
    assert operations.topic_slug(label) == slug


def _category_entry(category: str) -> str:
    return f"""<entry><title>Purge resumes</title><id>urn:x:purge</id><updated>2026-11-22T08:00:00Z</updated>
      <category term="{category}"/><content type="html">&lt;p&gt;News.&lt;/p&gt;</content></entry>"""


def test_a_feed_category_a_files_hashtag_and_a_category_name_are_one_topic(runner, session, feed_server):
    feed_server.routes["/feed.atom"] = static(atom(_category_entry("ChechenAntiGayPurge")))
    add(runner, feed_server.url("/feed.atom"))
    assert runner.invoke(["feeds", "poll"]).exit_code == 0
    assert runner.invoke(["articles", "import", str(CHECHNYA_MD)]).exit_code == 0
    by_name = operations.topic_for_label(session, "Chechen Anti-Gay Purge")
    session.commit()

    slugs_of = {a.title: [t.slug for t in a.topics] for a in session.scalars(select(Article))}
    assert slugs_of["Purge resumes"] == ["chechen-anti-gay-purge"]
    assert "chechen-anti-gay-purge" in slugs_of["Two Dead And At Least 40 Detained As Chechen LGBT Purge Resumes"]
    assert by_name.slug == "chechen-anti-gay-purge"
    assert session.scalar(select(func.count()).select_from(Topic).where(Topic.slug.like("chechen%"))) == 1
    # The feed came first: its CamelCase category reads as words, not as one run-together name.
    assert by_name.title == "Chechen Anti Gay Purge"


def test_a_topic_under_the_old_slug_keeps_getting_the_idea(runner, session, feed_server):
    # Before one slug function, the feed's category made `chechenantigaypurge`, and readers follow it.
    old = factories.topic(session, "chechenantigaypurge")
    factories.subscriber(session, "reader@example.org", topics=["chechenantigaypurge"])
    session.commit()
    feed_server.routes["/feed.atom"] = static(atom(_category_entry("ChechenAntiGayPurge")))
    add(runner, feed_server.url("/feed.atom"))
    assert runner.invoke(["feeds", "poll"]).exit_code == 0
    assert runner.invoke(["articles", "import", str(CHECHNYA_MD)]).exit_code == 0
    # Both the category and the file's hashtag find the old topic: no second topic splits its readers.
    assert [t.slug for a in session.scalars(select(Article)) for t in a.topics
            if t.slug.startswith("chechen")] == ["chechenantigaypurge", "chechenantigaypurge"]
    assert operations.topic_for_label(session, "chechenantigaypurge").id == old.id


def test_where_both_slugs_exist_the_new_one_wins_and_merge_joins_them(runner, session):
    factories.topic(session, "chechenantigaypurge")
    factories.topic(session, "chechen-anti-gay-purge")
    factories.subscriber(session, "old@example.org", topics=["chechenantigaypurge"])
    session.commit()
    assert operations.topic_for_label(session, "ChechenAntiGayPurge").slug == "chechen-anti-gay-purge"

    result = runner.invoke(["topics", "merge", "chechenantigaypurge", "chechen-anti-gay-purge"])
    assert result.exit_code == 0, result.output
    assert result.output == "merged topic chechenantigaypurge into chechen-anti-gay-purge (1 follower(s) moved)\n"
    assert [t.slug for t in session.scalars(select(Topic))] == ["chechen-anti-gay-purge"]
    missing = runner.invoke(["topics", "merge", "nope", "chechen-anti-gay-purge"])
    assert missing.exit_code != 0 and missing.output == "mailer: no topic 'nope': see `mailer topics list`\n"


def test_an_invalid_slug_is_refused_with_the_slug_it_would_be(runner, session):
    result = runner.invoke(["topics", "add", "ChechenAntiGayPurge"])
    assert result.exit_code != 0
    assert result.output == ("mailer: invalid topic slug 'ChechenAntiGayPurge': use lower-case letters, digits and "
                             "single hyphens, like chechen-anti-gay-purge\n")
    with pytest.raises(TopicError, match="like lgbtiq-rights"):
        operations.validate_slug("???")
