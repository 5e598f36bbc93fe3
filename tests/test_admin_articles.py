"""The workspace's Articles room: write in Markdown with topics and action links, preview, find, edit,
unpublish; bad input is a 400 with the reason and stores nothing."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from playwright.sync_api import expect
from sqlalchemy import func, select

from mailer.alerts.operations import article_to_alert
from mailer.articles.models import ActionKind, Article
from mailer.digests import queries as digest_queries
from mailer.sends.models import Send
from mailer.editors.models import AuditEvent
from mailer.errors import AlertError
from mailer.feeds.models import Feed
from tests import factories
from tests.editors import PASSWORD, make_editor, post_form, sign_in
from tests.test_browser import PHONE, live_server, open_page  # noqa: F401 (fixtures)

NEW = "/admin/articles/new"
PETITION = "https://www.change.org/p/free-them"


@pytest.fixture
def editor_client(client, session, frozen_clock):
    for slug in ("lgbtiq-rights", "ukraine", "climate"):
        factories.topic(session, slug)
    session.commit()
    make_editor()
    sign_in(client)
    return client


def topic_ids(session, *slugs) -> list[str]:
    return [str(factories.topic(session, slug).id) for slug in slugs]


def article_form(session, **overrides) -> dict:
    data = {"title": "Vigil For The Detained", "summary": "", "body": "We meet at **noon**.\n\nBring candles.",
            "canonical_url": "", "image_url": "", "published_at": "",
            "topics": topic_ids(session, "lgbtiq-rights", "ukraine"),
            "action-0-label": "Sign the petition", "action-0-url": PETITION, "action-0-kind": "petition",
            "action-0-position": "1",
            "action-1-label": "", "action-1-url": "", "action-1-kind": "", "action-1-position": "2"}
    data.update(overrides)
    return data


def count(session, model) -> int:
    return session.scalar(select(func.count()).select_from(model))


def audit_actions(session) -> list[str]:
    return session.scalars(select(AuditEvent.action).where(AuditEvent.action.like("article.%"))
                           .order_by(AuditEvent.id)).all()


def test_write_preview_find_edit_and_unpublish_an_article(editor_client, session, runner, frozen_clock):
    client = editor_client
    form = client.get(NEW).get_data(as_text=True)
    assert form.count('name="action-') == 3 * 4 and "<script" not in form and "style=" not in form

    preview = post_form(client, NEW, NEW, preview="1", **article_form(session))
    assert preview.status_code == 200
    assert "We meet at <strong>noon</strong>." in preview.get_data(as_text=True)
    assert count(session, Article) == 0  # a preview saves nothing

    saved = post_form(client, NEW, NEW, save="1", **article_form(session))
    assert saved.status_code == 302
    article = session.scalar(select(Article))
    assert article.guid == "admin:vigil-for-the-detained" and article.published_at == frozen_clock.now()
    assert [t.slug for t in article.topics] == ["lgbtiq-rights", "ukraine"]
    assert [(a.label, a.url, a.kind) for a in article.actions] == [("Sign the petition", PETITION, ActionKind.petition)]
    assert article.summary == "We meet at noon."

    listed = client.get("/admin/articles/").get_data(as_text=True)
    assert "Vigil For The Detained" in listed and "<td>workspace</td>" in listed and "2026-11-23 09:00" in listed
    assert "Vigil For" in client.get("/admin/articles/?q=detained").get_data(as_text=True)
    assert "Vigil For" in client.get("/admin/articles/?q=NOON").get_data(as_text=True)  # the summary
    assert "Vigil For" not in client.get("/admin/articles/?q=march").get_data(as_text=True)
    assert "Vigil For" in client.get("/admin/articles/?topic=ukraine").get_data(as_text=True)
    assert "Vigil For" not in client.get("/admin/articles/?topic=climate").get_data(as_text=True)

    page = f"/admin/articles/{article.id}"
    shown = client.get(page).get_data(as_text=True)
    assert 'value="Sign the petition"' in shown and 'value="2026-11-23T09:00"' in shown
    assert shown.count('name="action-') == 4 * 4  # the stored row and three empty ones
    edited = post_form(client, page, page, save="1", **article_form(
        session, title="Vigil Moved To Sunday", published_at="2026-11-23T08:30", topics=topic_ids(session, "ukraine"),
        **{"action-0-position": "2", "action-1-label": "Donate to the organisers",
           "action-1-url": "https://example.org/give", "action-1-kind": "", "action-1-position": "1"}))
    assert edited.status_code == 302
    session.expire_all()
    article = session.get(Article, article.id)
    assert article.title == "Vigil Moved To Sunday" and article.slug == "vigil-for-the-detained"
    assert article.published_at == datetime(2026, 11, 23, 8, 30, tzinfo=timezone.utc)
    assert [t.slug for t in article.topics] == ["ukraine"]
    assert [(a.label, a.kind, a.position) for a in article.actions] == [
        ("Donate to the organisers", ActionKind.donate, 0), ("Sign the petition", ActionKind.petition, 1)]

    assert post_form(client, page, f"{page}/unpublish").status_code == 302
    session.expire_all()
    assert session.get(Article, article.id).unpublished_at == frozen_clock.now()
    assert "<td>unpublished</td>" in client.get("/admin/articles/").get_data(as_text=True)
    factories.article(session, slug="still-here", title="Still Here")
    session.commit()
    result = runner.invoke(["digests", "compose"])
    assert result.exit_code == 0, result.output
    send = session.scalar(select(Send).order_by(Send.id.desc()))
    assert [a.title for a in send.articles] == ["Still Here"]

    assert post_form(client, page, f"{page}/publish").status_code == 302
    frozen_clock.advance(timedelta(minutes=5))
    assert runner.invoke(["digests", "compose"]).exit_code == 0
    send = session.scalar(select(Send).order_by(Send.id.desc()))
    assert [a.title for a in send.articles] == ["Vigil Moved To Sunday"]

    assert audit_actions(session) == ["article.create", "article.update", "article.unpublish", "article.publish"]
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "article.create"))
    assert event.editor_email == "editor@example.org" and event.object_id == str(article.id)


@pytest.mark.parametrize("overrides, reason", [
    ({"action-0-url": "javascript:alert(1)"}, "must be an http or https address"),
    ({"action-0-url": "data:text/html,<script>alert(1)</script>"}, "must be an http or https address"),
    ({"title": "   "}, "an article needs a title"),
    ({"published_at": "next tuesday"}, "the publish time must be a date and time"),
    ({"published_at": "2026-13-40T25:00"}, "the publish time must be a date and time"),
    ({"topics": ["999999"]}, "no topic"),
    ({"topics": ["ukraine"]}, "no topic"),
    ({"action-0-position": "first"}, "must be a whole number"),
    ({"action-0-kind": "bribe"}, "unknown kind"),
    ({"canonical_url": "file:///etc/passwd"}, "must be an http or https address"),
])
def test_bad_input_is_a_400_with_the_reason_and_stores_nothing(editor_client, session, overrides, reason):
    response = post_form(editor_client, NEW, NEW, save="1", **article_form(session, **overrides))
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert reason in page and 'role="alert"' in page and 'name="title"' in page  # the reason next to the form
    assert count(session, Article) == 0 and audit_actions(session) == []


def test_bad_input_on_edit_changes_nothing(editor_client, session):
    post_form(editor_client, NEW, NEW, save="1", **article_form(session))
    article = session.scalar(select(Article))
    page = f"/admin/articles/{article.id}"
    response = post_form(editor_client, page, page, save="1",
                         **article_form(session, title="Changed", **{"action-0-url": "javascript:alert(1)"}))
    assert response.status_code == 400
    session.expire_all()
    assert session.get(Article, article.id).title == "Vigil For The Detained"
    assert audit_actions(session) == ["article.create"]


def test_script_and_event_handlers_in_the_body_are_sanitised_as_on_import(editor_client, session):
    body = 'Hello<script>alert(1)</script> <img src="https://example.org/a.png" onerror="alert(2)">'
    preview = post_form(editor_client, NEW, NEW, preview="1", **article_form(session, body=body))
    assert "alert(" not in preview.get_data(as_text=True).split("Preview (not saved)")[1]
    assert post_form(editor_client, NEW, NEW, save="1", **article_form(session, body=body)).status_code == 302
    article = session.scalar(select(Article))
    assert "<script" not in article.body_html and "onerror" not in article.body_html
    assert '<img src="https://example.org/a.png">' in article.body_html


def test_an_article_from_a_feed_is_edited_the_same_way(editor_client, session):
    feed = Feed(url="https://blog.example.org/feed.xml", title="Blog")
    session.add(feed)
    session.flush()
    article = factories.article(session, slug="from-the-feed", title="From The Feed",
                                canonical_url="https://blog.example.org/p/1")
    article.feed_id, article.author = feed.id, "Alex"
    session.commit()
    assert "<td>feed</td>" in editor_client.get("/admin/articles/").get_data(as_text=True)
    page = f"/admin/articles/{article.id}"
    response = post_form(editor_client, page, page, save="1", **article_form(
        session, title="From The Feed, Corrected", canonical_url="https://blog.example.org/p/1",
        published_at="2026-11-23T08:00"))
    assert response.status_code == 302
    session.expire_all()
    article = session.get(Article, article.id)
    assert (article.title, article.guid, article.feed_id, article.author) == (
        "From The Feed, Corrected", "https://blog.example.org/p/1", feed.id, "Alex")
    assert count(session, Article) == 1


def test_a_new_article_with_another_articles_url_is_refused(editor_client, session):
    factories.article(session, slug="first", title="First", canonical_url="https://blog.example.org/p/1")
    session.commit()
    response = post_form(editor_client, NEW, NEW, save="1",
                         **article_form(session, canonical_url="https://blog.example.org/p/1"))
    assert response.status_code == 400 and "already has the URL" in response.get_data(as_text=True)
    assert session.scalar(select(Article.title)) == "First"


def test_an_unknown_article_is_a_404(editor_client, session):
    assert editor_client.get("/admin/articles/4040").status_code == 404
    assert post_form(editor_client, NEW, "/admin/articles/4040/unpublish").status_code == 404
    assert post_form(editor_client, NEW, "/admin/articles/4040", save="1", **article_form(session)).status_code == 404


def test_posts_without_a_csrf_token_are_refused(editor_client, session):
    response = editor_client.post(NEW, data={"save": "1", **article_form(session)})
    assert response.status_code == 400 and count(session, Article) == 0


def test_the_room_is_behind_sign_in(client):
    response = client.get("/admin/articles/")
    assert response.status_code == 302 and "/admin/login" in response.location


def test_unpublished_articles_are_left_out_of_digests_and_alerts(session, frozen_clock):
    article = factories.article(session, slug="withdrawn", title="Withdrawn")
    kept = factories.article(session, slug="kept", title="Kept")
    article.unpublished_at = frozen_clock.now()
    session.flush()
    assert digest_queries.new_articles(session, frozen_clock.now()) == [kept]
    with pytest.raises(AlertError, match="unpublished"):
        article_to_alert(session, article.id)
    assert article_to_alert(session, kept.id) is kept


@pytest.mark.browser
def test_an_editor_writes_an_article_with_a_petition_on_a_phone(open_page, session):
    make_editor()
    factories.topic(session, "lgbtiq-rights")
    session.commit()
    session.remove()
    page = open_page(PHONE)
    page.goto("/admin/")
    page.get_by_label("Email address").fill("editor@example.org")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("link", name="Articles").click()
    page.get_by_role("link", name="Write an article").click()
    page.get_by_label("Title").fill("Vigil For The Detained")
    page.get_by_label("Body (Markdown)").fill("We meet at **noon**.")
    page.get_by_label("LGBTIQ Rights").check()
    page.locator("#action-0-label").fill("Sign the petition")
    page.locator("#action-0-url").fill(PETITION)
    page.get_by_role("button", name="Preview").click()
    expect(page.get_by_role("heading", name="Preview (not saved)")).to_be_visible()
    expect(page.locator("section.preview strong")).to_have_text("noon")
    page.wait_for_load_state("load")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Saved “Vigil For The Detained”.")).to_be_visible()
    assert page.locator("#action-0-label").input_value() == "Sign the petition"
    page.wait_for_load_state("load")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.get_by_role("link", name="All articles").click()
    expect(page.get_by_role("link", name="Vigil For The Detained")).to_be_visible()
    assert open_page.watch.errors == []  # the CSP refused nothing: no script, no inline style
