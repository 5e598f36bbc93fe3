"""The workspace's Topics room: list, add, rename, describe, show/hide, merge, delete; every change audited,
bad input a 400 that changes nothing; and hashtags make topics the public form does not offer."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from mailer.articles.models import ArticleTopic
from mailer.sends.models import Send, SendKind, SendTopic
from mailer.editors.models import AuditEvent
from mailer.topics import operations
from mailer.topics.models import SubscriberTopic, Topic
from subscribers import tokens
from tests import factories
from tests.editors import csrf_token, make_editor, post_form, sign_in

INDEX = "/admin/topics/"


@pytest.fixture
def editor_client(client):
    make_editor()
    sign_in(client)
    return client


def _topic(session, slug: str) -> Topic | None:
    session.expire_all()
    return session.scalar(select(Topic).where(Topic.slug == slug))


def _actions(session) -> list[str]:
    return list(session.scalars(select(AuditEvent.action).where(AuditEvent.action.like("topic.%"))
                                .order_by(AuditEvent.id)))


def _page(topic: Topic) -> str:
    return f"/admin/topics/{topic.id}"


def _count(session, model) -> int:
    return session.scalar(select(func.count()).select_from(model))


# ---- listing and adding ----------------------------------------------------------------------------

def test_the_list_shows_followers_visibility_slug_and_description(editor_client, session):
    factories.subscriber(session, "a@example.org", topics=("ukraine", "climate"))
    factories.subscriber(session, "b@example.org", topics=("ukraine",))
    factories.topic(session, "climate").is_hidden = True
    factories.topic(session, "ukraine").description = "War and refugees"
    session.commit()
    page = editor_client.get(INDEX)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert ("<td>Ukraine</td>\n    <td><code>ukraine</code></td>\n    <td>2</td>\n    <td>shown</td>\n"
            "    <td>War and refugees</td>") in html
    assert "<td><code>climate</code></td>\n    <td>1</td>\n    <td>hidden</td>" in html
    assert '<div class="table-wrap">' in html and "<script" not in html and "style=" not in html
    edit = editor_client.get(_page(factories.topic(session, "ukraine"))).get_data(as_text=True)
    assert "War and refugees" in edit and "<script" not in edit and "style=" not in edit
    assert edit.count('id="csrf_token"') <= 1  # five forms, no repeated id


def test_an_editor_adds_a_visible_topic_and_it_is_audited(editor_client, session):
    response = post_form(editor_client, INDEX, INDEX, slug="lgbtiq-rights", title="LGBTIQ Rights",
                         description="Rights and safety")
    assert response.status_code == 302
    topic = _topic(session, "lgbtiq-rights")
    assert (topic.title, topic.description, topic.is_hidden) == ("LGBTIQ Rights", "Rights and safety", False)
    assert _actions(session) == ["topic.create"]
    assert 'value="lgbtiq-rights"' in editor_client.get("/subscribe").get_data(as_text=True)


@pytest.mark.parametrize("slug, reason", [
    ("Bad Slug", "invalid topic slug"), ("", "Give the topic a slug."), ("ukraine", "already exists")])
def test_a_bad_new_topic_is_a_400_with_the_reason_by_the_form(editor_client, session, slug, reason):
    factories.topic(session, "ukraine")
    session.commit()
    response = post_form(editor_client, INDEX, INDEX, slug=slug, title="Anything")
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert reason in html and 'id="add-error"' in html
    assert _count(session, Topic) == 1 and _actions(session) == []


def test_a_post_without_csrf_token_changes_nothing(editor_client, session):
    topic = factories.topic(session, "ukraine")
    session.commit()
    assert editor_client.post(INDEX, data={"slug": "climate"}).status_code == 400
    assert editor_client.post(f"{_page(topic)}/delete").status_code == 400
    assert _count(session, Topic) == 1 and _actions(session) == []


def test_the_room_needs_a_signed_in_editor(client):
    assert client.get(INDEX).status_code == 302


# ---- rename, describe, show and hide ---------------------------------------------------------------

def test_rename_and_describe(editor_client, session):
    topic = factories.topic(session, "ukraine")
    session.commit()
    assert post_form(editor_client, _page(topic), f"{_page(topic)}/title", title="  Ukraine\nwar ").status_code == 302
    assert post_form(editor_client, _page(topic), f"{_page(topic)}/description",
                     description="War and refugees").status_code == 302
    topic = _topic(session, "ukraine")
    assert (topic.title, topic.description) == ("Ukraine war", "War and refugees")
    assert _actions(session) == ["topic.rename", "topic.describe"]


@pytest.mark.parametrize("title", ["", "   ", "x" * 201])
def test_an_empty_or_long_title_is_refused(editor_client, session, title):
    topic = factories.topic(session, "ukraine")
    session.commit()
    response = post_form(editor_client, _page(topic), f"{_page(topic)}/title", title=title)
    assert response.status_code == 400
    assert 'id="title_form-error"' in response.get_data(as_text=True)
    assert _topic(session, "ukraine").title == "Ukraine" and _actions(session) == []


def test_hide_and_show_on_the_public_form(editor_client, session):
    topic = factories.topic(session, "ukraine")
    session.commit()
    assert post_form(editor_client, _page(topic), f"{_page(topic)}/visibility", show="no").status_code == 302
    assert _topic(session, "ukraine").is_hidden
    assert 'value="ukraine"' not in editor_client.get("/subscribe").get_data(as_text=True)
    assert post_form(editor_client, _page(topic), f"{_page(topic)}/visibility", show="yes").status_code == 302
    assert not _topic(session, "ukraine").is_hidden
    assert 'value="ukraine"' in editor_client.get("/subscribe").get_data(as_text=True)
    assert _actions(session) == ["topic.hide", "topic.show"]


def test_an_unknown_topic_is_a_404(editor_client, session):
    assert editor_client.get("/admin/topics/999").status_code == 404
    token = csrf_token(editor_client, INDEX)
    for action in ("title", "description", "visibility", "merge", "delete"):
        assert editor_client.post(f"/admin/topics/999/{action}", data={"csrf_token": token}).status_code == 404


# ---- merge -----------------------------------------------------------------------------------------

def test_merge_moves_followers_articles_and_alerts_without_duplicates(editor_client, session):
    both = factories.subscriber(session, "both@example.org", topics=("ukraine-war", "ukraine"))
    factories.subscriber(session, "old@example.org", topics=("ukraine-war",))
    factories.article(session, slug="a", title="A", topics=("ukraine-war", "ukraine"))
    factories.article(session, slug="b", title="B", topics=("ukraine-war",))
    alert = Send(kind=SendKind.alert, slug="alert-1", subject="Now")
    alert.topics = [_topic(session, "ukraine-war")]
    session.add(alert)
    session.commit()
    source, target = _topic(session, "ukraine-war"), _topic(session, "ukraine")
    target_id, both_id = target.id, both.id
    response = post_form(editor_client, _page(source), f"{_page(source)}/merge", into=str(target.id))
    assert response.status_code == 302 and response.location == _page(target)

    assert _topic(session, "ukraine-war") is None
    assert _count(session, SubscriberTopic) == 2
    assert set(session.scalars(select(SubscriberTopic.topic_id))) == {target_id}
    assert _count(session, ArticleTopic) == 2
    assert set(session.scalars(select(ArticleTopic.topic_id))) == {target_id}
    assert list(session.scalars(select(SendTopic.topic_id))) == [target_id]
    assert [t.slug for t in session.get(type(both), both_id).topics] == ["ukraine"]
    assert _actions(session) == ["topic.merge"]
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "topic.merge"))
    assert event.detail == "ukraine-war -> ukraine"


def test_a_topic_is_not_merged_into_itself(editor_client, session):
    topic = factories.topic(session, "ukraine")
    factories.topic(session, "climate")
    session.commit()
    response = post_form(editor_client, _page(topic), f"{_page(topic)}/merge", into=str(topic.id))
    assert response.status_code == 400
    assert "into itself" in response.get_data(as_text=True)
    assert _count(session, Topic) == 2 and _actions(session) == []


def test_merge_into_an_unknown_topic_is_refused(editor_client, session):
    topic = factories.topic(session, "ukraine")
    session.commit()
    response = post_form(editor_client, _page(topic), f"{_page(topic)}/merge", into="999")
    assert response.status_code == 400
    assert 'id="merge_form-error"' in response.get_data(as_text=True)
    assert _count(session, Topic) == 1 and _actions(session) == []


def test_merge_operation_refuses_the_same_topic(session):
    topic = factories.topic(session, "ukraine")
    with pytest.raises(operations.TopicError, match="into itself"):
        operations.merge_topics(session, topic, topic)


# ---- delete ----------------------------------------------------------------------------------------

def test_a_topic_nobody_follows_is_deleted(editor_client, session):
    factories.article(session, slug="a", title="A", topics=("ukraine", "climate"))
    session.commit()
    topic = _topic(session, "ukraine")
    assert post_form(editor_client, _page(topic), f"{_page(topic)}/delete").status_code == 302
    assert _topic(session, "ukraine") is None
    assert _count(session, ArticleTopic) == 1  # the article keeps its other topic
    assert _actions(session) == ["topic.delete"]


def test_a_followed_topic_is_not_deleted(editor_client, session):
    factories.subscriber(session, "a@example.org", topics=("ukraine",))
    session.commit()
    topic = _topic(session, "ukraine")
    response = post_form(editor_client, _page(topic), f"{_page(topic)}/delete")
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "has 1 follower(s)" in html and 'id="delete_form-error"' in html
    assert _topic(session, "ukraine") is not None and _actions(session) == []


# ---- topics made on the fly ------------------------------------------------------------------------

def test_hashtag_topics_are_hidden_from_signup_but_kept_on_a_followers_preferences(client, session):
    factories.topic(session, "ukraine")
    hashtag = operations.topic_for_label(session, "#LGBTIQRights")
    category = operations.topic_for_label(session, "Human Rights")
    assert hashtag.is_hidden and category.is_hidden
    assert not operations.add_topic(session, "climate").is_hidden
    reader = factories.subscriber(session, "a@example.org", topics=("lgbtiq-rights",))
    session.commit()

    signup = client.get("/subscribe").get_data(as_text=True)
    assert 'value="ukraine"' in signup and 'value="climate"' in signup
    assert 'value="lgbtiq-rights"' not in signup and 'value="human-rights"' not in signup
    token = tokens.preferences_token(reader.id, reader.token_version)
    preferences = client.get(f"/preferences/{token}").get_data(as_text=True)
    assert 'value="lgbtiq-rights"' in preferences and 'value="human-rights"' not in preferences
    # Saving the page as it stands keeps the hidden topic.
    saved = post_form(client, f"/preferences/{token}", f"/preferences/{token}", topics=["lgbtiq-rights", "ukraine"])
    assert saved.status_code == 200
    session.expire_all()
    assert [t.slug for t in session.get(type(reader), reader.id).topics] == ["lgbtiq-rights", "ukraine"]


def test_an_existing_topic_keeps_its_visibility_when_a_hashtag_names_it(session):
    shown = operations.add_topic(session, "ukraine")
    assert operations.topic_for_label(session, "#Ukraine") is shown and not shown.is_hidden


def test_a_hidden_topic_posted_by_hand_is_refused_like_an_unknown_one(client, session):
    operations.topic_for_label(session, "#LGBTIQRights")
    other = factories.subscriber(session, "b@example.org", topics=("ukraine",))
    session.commit()
    signup = post_form(client, "/subscribe", "/subscribe", email="a@example.org", consent="y",
                       topics=["lgbtiq-rights"])
    assert signup.status_code == 400 and "Unknown topic: lgbtiq-rights" in signup.get_data(as_text=True)
    token = tokens.preferences_token(other.id, other.token_version)
    refused = post_form(client, f"/preferences/{token}", f"/preferences/{token}", topics=["lgbtiq-rights"])
    assert refused.status_code == 400 and "Unknown topic: lgbtiq-rights" in refused.get_data(as_text=True)
    session.expire_all()
    assert _count(session, SubscriberTopic) == 1
