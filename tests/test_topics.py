"""Topics: hashtags to slugs and titles, get-or-create, and `mailer topics add/list`."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from mailer.errors import TopicError
from mailer.topics import operations
from mailer.topics.models import Topic


@pytest.mark.parametrize("hashtag, slug, title", [
    ("#ChechenAntiGayPurge", "chechen-anti-gay-purge", "Chechen Anti Gay Purge"),
    ("#LGBTIQRights", "lgbtiq-rights", "LGBTIQ Rights"),
    ("#HIV_AIDS", "hiv-aids", "HIV AIDS"),
    ("#refugees2026", "refugees-2026", "Refugees 2026"),
    ("#Café", "cafe", "Cafe"),
])
def test_hashtag_becomes_slug_and_readable_title(hashtag, slug, title):
    assert operations.slug_for_hashtag(hashtag) == slug
    assert operations.title_for_hashtag(hashtag) == title


def test_ensure_topic_creates_once(session):
    first = operations.ensure_topic(session, "lgbtiq-rights", "LGBTIQ Rights")
    again = operations.ensure_topic(session, "lgbtiq-rights", "Another title")
    session.commit()
    assert first.id == again.id
    assert session.scalar(select(func.count()).select_from(Topic)) == 1
    assert session.get(Topic, first.id).title == "LGBTIQ Rights"


def test_ensure_topic_takes_the_row_another_process_wrote(session, monkeypatch):
    # Another process inserts the slug between our look-up and our insert: our insert hits the
    # unique constraint, and we must hand back the other process's row rather than fail.
    session.add(Topic(slug="ukraine", title="Ukraine (theirs)"))
    session.commit()
    real_find = operations.find_topic
    calls = []

    def find_after_race(session_, slug):
        calls.append(slug)
        return None if len(calls) == 1 else real_find(session_, slug)

    monkeypatch.setattr(operations, "find_topic", find_after_race)
    topic = operations.ensure_topic(session, "ukraine", "Ukraine (ours)")
    session.commit()
    assert topic.title == "Ukraine (theirs)"
    assert session.scalar(select(func.count()).select_from(Topic)) == 1


def test_topic_for_label_accepts_hashtags_slugs_and_category_names(session):
    assert operations.topic_for_label(session, "#LGBTIQRights").slug == "lgbtiq-rights"
    assert operations.topic_for_label(session, "lgbtiq-rights").title == "LGBTIQ Rights"
    human = operations.topic_for_label(session, "Human  Rights")
    assert (human.slug, human.title) == ("human-rights", "Human Rights")
    with pytest.raises(TopicError):
        operations.topic_for_label(session, "???")


def test_cli_add_and_list(runner, session):
    result = runner.invoke(["topics", "add", "ukraine", "--title", "Ukraine", "--description", "War and refugees"])
    assert result.exit_code == 0, result.output
    assert runner.invoke(["topics", "add", "lgbtiq-rights"]).exit_code == 0

    listing = runner.invoke(["topics", "list"])
    assert listing.exit_code == 0
    lines = listing.output.splitlines()
    assert len(lines) == 2 and "lgbtiq-rights  Lgbtiq Rights" in lines[0] and "ukraine  Ukraine" in lines[1]

    rows = json.loads(runner.invoke(["topics", "list", "--json"]).output)
    assert [(r["slug"], r["title"], r["description"]) for r in rows] == [
        ("lgbtiq-rights", "Lgbtiq Rights", ""), ("ukraine", "Ukraine", "War and refugees")]


@pytest.mark.parametrize("slug", ["Ukraine", "two words", "trailing-", "a--b", "x" * 81, "-"])
def test_cli_rejects_invalid_slug_in_one_line(runner, session, slug):
    result = runner.invoke(["topics", "add", slug])
    assert result.exit_code == 2
    assert result.output.startswith("mailer: invalid topic slug") and result.output.count("\n") == 1
    assert session.scalar(select(func.count()).select_from(Topic)) == 0


def test_cli_refuses_a_second_topic_with_the_same_slug(runner, session):
    assert runner.invoke(["topics", "add", "ukraine", "--title", "Ukraine"]).exit_code == 0
    result = runner.invoke(["topics", "add", "ukraine", "--title", "Other"])
    assert result.exit_code == 2 and result.output == "mailer: topic ukraine already exists\n"
    assert session.scalar(select(Topic.title)) == "Ukraine"
