"""The urgent-alert room: choose, count, preview, send once; refusals that change nothing."""

from __future__ import annotations

import re

from sqlalchemy import func, select

from mailer.articles.models import Article
from mailer.sends.models import Send
from mailer.editors.models import AuditEvent
from mailer.outbox.models import OutboxMessage
from tests import factories
from tests.contract import check_message
from tests.editors import csrf_token, make_editor, sign_in

NEW = "/admin/alerts/new"


def count(session, model) -> int:
    return session.scalar(select(func.count()).select_from(model))


def _readers(session):
    factories.fixed_articles(session)
    factories.subscriber(session, "lgbt@example.org", topics=("lgbtiq-rights",))
    factories.subscriber(session, "climate@example.org", topics=("climate",))
    factories.subscriber(session, "all@example.org")
    session.commit()


def _chechnya(session) -> Article:
    return session.scalar(select(Article).where(Article.slug == "two-dead-chechen-lgbt-purge-resumes"))


def _confirm(client, **data):
    """Step 1 → the confirm page; returns it and the hidden fields its Send button posts."""
    page = client.post(NEW, data={"csrf_token": csrf_token(client, NEW), **data})
    html = page.get_data(as_text=True)
    fields = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', html)
    return page, fields


def _send(client, fields):
    return client.post("/admin/alerts/send", data=_multi(fields))


def _multi(fields):
    from werkzeug.datastructures import MultiDict
    import html

    return MultiDict([(name, html.unescape(value)) for name, value in fields])


def test_an_alert_of_an_article_to_one_topic_counts_previews_and_sends_once(client, session, frozen_clock, config,
                                                                              deliver):
    _readers(session)
    make_editor()
    sign_in(client)
    article = _chechnya(session)
    page, fields = _confirm(client, article_id=str(article.id), topics="lgbtiq-rights")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "It reaches <strong>2</strong> reader(s)" in html  # the topic's follower and the all-topics reader
    assert "Urgent: Two Dead And At Least 40 Detained" in html
    assert "srcdoc=" in html and "Sign the petition for Russia to intervene" in html
    assert count(session, Send) == 0  # a preview sends nothing

    sent = _send(client, fields)
    assert sent.status_code == 302
    again = _send(client, fields)  # the same form again: a double click, a reload
    assert again.status_code == 302 and again.location == sent.location
    assert count(session, Send) == 1 and count(session, OutboxMessage) == 2
    alert = session.scalars(select(Send)).one()
    assert alert.form_key and alert.created_by_id is not None
    assert "already sent" in client.get(again.location).get_data(as_text=True)

    messages = deliver()
    assert sorted(m["To"].addresses[0].addr_spec for m in messages) == ["all@example.org", "lgbt@example.org"]
    for message in messages:
        check_message(message, postal_address=config["site"]["postal_address"])
    audit = session.scalars(select(AuditEvent).where(AuditEvent.action == "alert.send")).one()
    assert audit.object_id == str(alert.id) and "2 reader(s)" in audit.detail


def test_an_alert_written_on_the_spot_to_everyone(client, session, frozen_clock, deliver):
    _readers(session)
    make_editor()
    sign_in(client)
    page, fields = _confirm(client, title="Evacuation fund needs you tonight",
                            text="Flights leave on Friday. Every donation buys a seat.",
                            action_label_0="Donate to the evacuation fund",
                            action_url_0="https://example.org/donate", everyone="y")
    assert "It reaches <strong>3</strong> reader(s)" in page.get_data(as_text=True)
    assert count(session, Article) == 3  # nothing stored before sending
    assert _send(client, fields).status_code == 302
    written = session.scalar(select(Article).where(Article.title == "Evacuation fund needs you tonight"))
    assert [(a.label, a.kind.value) for a in written.actions] == [("Donate to the evacuation fund", "donate")]
    messages = deliver()
    assert len(messages) == 3
    assert all("Donate to the evacuation fund" in m.get_body(("plain",)).get_content() for m in messages)


def test_refusals_change_nothing(client, session, frozen_clock):
    _readers(session)
    make_editor()
    sign_in(client)
    article = _chechnya(session)
    cases = [
        ({"topics": "lgbtiq-rights"}, "choose an article, or give the alert a title"),
        ({"article_id": str(article.id)}, "choose the topics"),
        ({"title": "Act now", "action_label_0": "Sign", "action_url_0": "javascript:alert(1)", "everyone": "y"},
         "must be an http or https address"),
        ({"article_id": str(article.id), "topics": "no-such-topic"}, "no topic no-such-topic"),
        ({"article_id": "99999", "topics": "climate"}, "no article with id 99999"),
        ({"article_id": str(article.id), "title": "Also this", "topics": "climate"}, "not both"),
    ]
    for data, reason in cases:
        page = client.post(NEW, data={"csrf_token": csrf_token(client, NEW), **data})
        assert page.status_code == 400, data
        assert reason in page.get_data(as_text=True), data
    assert count(session, Send) == 0 and count(session, OutboxMessage) == 0


def test_an_alert_that_would_reach_nobody_is_refused(client, session, frozen_clock):
    factories.fixed_articles(session)
    factories.subscriber(session, "climate@example.org", topics=("climate",))
    session.commit()
    make_editor()
    sign_in(client)
    page, _ = _confirm(client, article_id=str(_chechnya(session).id), topics="ukraine")
    assert page.status_code == 400 and "would reach nobody" in page.get_data(as_text=True)
    assert count(session, Send) == 0


def test_the_send_step_needs_its_form_key_and_csrf(client, session, frozen_clock):
    _readers(session)
    make_editor()
    sign_in(client)
    token = csrf_token(client, NEW)
    article = _chechnya(session)
    assert client.post("/admin/alerts/send", data={"csrf_token": token, "article_id": str(article.id),
                                                   "topics": "climate"}).status_code == 400
    assert client.post("/admin/alerts/send", data={"form_key": "k" * 32, "article_id": str(article.id),
                                                   "topics": "climate"}).status_code == 400
    assert count(session, Send) == 0
