"""The workspace's Feeds room: list, add with default topics, poll one now, change its topics, remove it
(its articles stay); every change audited with it, bad input a 400 that saves nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from mailer.articles.models import Article
from mailer.editors.models import AuditEvent
from mailer.feeds import operations
from mailer.feeds.models import Feed
from tests import factories
from tests.editors import csrf_token, make_editor, post_form, sign_in
from tests.test_feeds import ATOM, conditional_atom, feed_server, static  # noqa: F401 (feed_server is a fixture)

INDEX = "/admin/feeds/"


@pytest.fixture
def editor_client(client):
    make_editor()
    sign_in(client)
    return client


def _count(session, model) -> int:
    session.expire_all()
    return session.scalar(select(func.count()).select_from(model))


def _actions(session) -> list[str]:
    return list(session.scalars(select(AuditEvent.action).where(AuditEvent.action.like("feed.%"))
                                .order_by(AuditEvent.id)))


def _feed(session) -> Feed:
    session.expire_all()
    return session.scalar(select(Feed))


def _page(feed: Feed) -> str:
    return f"/admin/feeds/{feed.id}"


def _post(client, page: str, target: str, **data):
    """tests.editors.post_form, for a form with a field called `url` (post_form's own argument)."""
    return client.post(target, data={"csrf_token": csrf_token(client, page), **data})


def _text(response) -> str:
    return response.get_data(as_text=True)


def test_the_room_needs_a_signed_in_editor(client):
    response = client.get(INDEX)
    assert response.status_code == 302 and "/admin/login" in response.location


def test_add_poll_list_retopic_and_remove_a_feed(editor_client, session, feed_server, frozen_clock):
    client = editor_client
    feed_server.routes["/feed.atom"] = conditional_atom
    factories.topic(session, "news")
    factories.topic(session, "ukraine")
    session.commit()
    url = feed_server.url("/feed.atom")

    empty = client.get(INDEX)
    assert empty.status_code == 200
    assert 'name="topics" value="news"' in _text(empty)

    added = _post(client, INDEX, INDEX, url=url, topics=["news"])
    assert added.status_code == 302
    feed = _feed(session)
    assert (feed.url, [t.slug for t in feed.topics], feed.last_polled_at) == (url, ["news"], None)
    assert _actions(session) == ["feed.create"]

    polled = post_form(client, INDEX, f"{_page(feed)}/poll")
    assert polled.status_code == 302
    shown = _text(client.get(polled.location))
    assert "Polled: 5 new article(s), 0 updated, 0 unchanged." in shown
    assert _count(session, Article) == 5
    assert all(a.feed_id == feed.id for a in session.scalars(select(Article)))
    assert _actions(session) == ["feed.create", "feed.poll"]
    again = post_form(client, _page(feed), f"{_page(feed)}/poll")
    assert "has not changed since the last poll" in _text(client.get(again.location))

    listed = _text(client.get(INDEX))
    assert (f'<td class="url">{url}</td>\n    <td>Accidentally Alex</td>\n    <td>2026-11-23 09:00</td>\n'
            "    <td>none</td>\n    <td>5</td>\n    <td>news</td>") in listed
    assert '<div class="table-wrap">' in listed and "<script" not in listed and "style=" not in listed
    edit = _text(client.get(_page(feed)))
    assert "<script" not in edit and "style=" not in edit and "5 article(s)" in edit

    retopic = post_form(client, _page(feed), f"{_page(feed)}/topics", topics=["ukraine", "news"])
    assert retopic.status_code == 302
    assert [t.slug for t in _feed(session).topics] == ["news", "ukraine"]
    cleared = post_form(client, _page(feed), f"{_page(feed)}/topics")
    assert cleared.status_code == 302 and _feed(session).topics == []

    removed = post_form(client, _page(feed), f"{_page(feed)}/delete")
    assert removed.status_code == 302
    assert "the 5 article(s) it brought stay" in _text(client.get(removed.location))
    assert _count(session, Feed) == 0 and _count(session, Article) == 5
    assert session.scalar(select(func.count()).where(Article.feed_id.is_not(None))) == 0
    assert _actions(session) == ["feed.create", "feed.poll", "feed.poll", "feed.topics", "feed.topics",
                                 "feed.delete"]
    assert session.scalar(select(AuditEvent.object_id).where(AuditEvent.action == "feed.delete")) == str(feed.id)


def test_the_database_itself_sets_articles_loose_when_their_feed_goes(session):
    feed = operations.add_feed(session, "https://blog.example.org/feed")
    article = factories.article(session, slug="kept", title="Kept")
    article.feed_id = feed.id
    session.commit()
    session.execute(Feed.__table__.delete())  # below the ORM: the FK's ON DELETE SET NULL
    session.commit()
    assert _count(session, Article) == 1 and session.scalar(select(Article.feed_id)) is None


@pytest.mark.parametrize("url, topics, reason", [
    ("ftp://blog.example.org/feed", [], "a feed URL"),
    ("javascript:alert(1)", [], "a feed URL"),
    ("https://blog.example.org/feed", ["no-such-topic"], "unknown topic &#39;no-such-topic&#39;"),
    ("https://existing.example.org/feed", [], "is already feed"),
    ("", [], "Give the feed&#39;s address."),
])
def test_a_bad_new_feed_is_a_400_with_the_reason_by_the_form(editor_client, session, url, topics, reason):
    operations.add_feed(session, "https://existing.example.org/feed")
    factories.topic(session, "news")
    session.commit()
    response = _post(editor_client, INDEX, INDEX, url=url, topics=["news", *topics])
    assert response.status_code == 400
    html = _text(response)
    assert 'class="error" role="alert" id="add-error"' in html and reason in html
    assert html.index("add-error") < html.index('<form method="post" class="narrow"')
    assert _count(session, Feed) == 1 and _actions(session) == []


def test_an_unknown_topic_on_an_existing_feed_changes_nothing(editor_client, session):
    feed = operations.add_feed(session, "https://blog.example.org/feed", ["news"])
    session.commit()
    response = post_form(editor_client, _page(feed), f"{_page(feed)}/topics", topics=["news", "invented"])
    assert response.status_code == 400
    assert "unknown topic &#39;invented&#39;" in _text(response)
    assert [t.slug for t in _feed(session).topics] == ["news"] and _actions(session) == []


def test_a_feed_that_is_not_xml_records_its_error_and_shows_it(editor_client, session, feed_server):
    feed_server.routes["/page.html"] = static(b"<html><body>Just a web page</body></html>", content_type="text/html")
    feed = operations.add_feed(session, feed_server.url("/page.html"))
    session.commit()
    polled = post_form(editor_client, _page(feed), f"{_page(feed)}/poll")
    assert polled.status_code == 302
    shown = _text(editor_client.get(polled.location))
    assert "Poll failed: not an RSS or Atom feed" in shown
    assert '<p class="error" role="alert">The last poll failed: not an RSS or Atom feed' in shown
    feed = _feed(session)
    assert feed.last_error.startswith("not an RSS or Atom feed") and feed.last_polled_at is not None
    assert '<strong class="error">not an RSS or Atom feed' in _text(editor_client.get(INDEX))
    assert _count(session, Article) == 0 and _actions(session) == ["feed.poll"]

    feed_server.routes["/page.html"] = static(ATOM)  # fixed: the error goes
    post_form(editor_client, _page(feed), f"{_page(feed)}/poll")
    assert _feed(session).last_error == "" and _count(session, Article) == 5


def test_unknown_feeds_are_404_and_posts_need_the_csrf_token(editor_client, session):
    assert editor_client.get("/admin/feeds/999").status_code == 404
    for action in ("poll", "delete", "topics"):
        assert post_form(editor_client, INDEX, f"/admin/feeds/999/{action}").status_code == 404
    feed = operations.add_feed(session, "https://blog.example.org/feed")
    session.commit()
    for action in ("poll", "delete", "topics"):
        response = editor_client.post(f"{_page(feed)}/{action}", data={})
        assert response.status_code == 400 and "The form had expired" in _text(response)
    assert editor_client.post(INDEX, data={"url": "https://other.example.org/feed"}).status_code == 400
    assert _count(session, Feed) == 1 and _feed(session).last_polled_at is None and _actions(session) == []
