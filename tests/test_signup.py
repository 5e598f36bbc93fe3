"""The subscriber journey through the web: sign up, confirm, preferences, one-click unsubscribe."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from mailer.topics.models import Topic
from subscribers.models import ConsentEvent, Subscriber, SubscriberState, Suppression
from tests.contract import check_message

CONSENT = ("I have read and agreed to the Privacy Policy and look forward to receiving email updates "
           "from Accidentally Alex")


def csrf_token(client, url: str) -> str:
    page = client.get(url).get_data(as_text=True)
    return re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)


def sign_up(client, email="reader@example.org", consent=True, **extra):
    data = {"csrf_token": csrf_token(client, "/subscribe"), "email": email, **extra}
    if consent:
        data["consent"] = "y"
    return client.post("/subscribe", data=data)


@pytest.fixture
def topics(session):
    session.add_all([Topic(slug="lgbtiq-rights", title="LGBTIQ rights"),
                     Topic(slug="ukraine", title="Ukraine", description="War and refugees")])
    session.commit()


def test_form_shows_contract_copy_and_unticked_consent(client):
    page = client.get("/subscribe").get_data(as_text=True)
    assert "Sign Up to receive the latest updates from Accidentally Alex" in page
    label = re.search(r'<label for="consent">(.*?)</label>', page, re.S).group(1)
    assert re.sub(r"<[^>]+>", "", label) == CONSENT
    assert '<a href="/privacy">Privacy Policy</a>' in label
    consent_input = re.search(r'<input type="checkbox" id="consent"[^>]*>', page).group(0)
    assert "checked" not in consent_input


def test_signup_confirm_unsubscribe_journey(client, session, topics, deliver, config, runner):
    response = sign_up(client, name="Alex", topics=["ukraine"])
    assert response.status_code == 302 and response.headers["Location"].endswith("/subscribe/thanks")
    assert "Thanks for signing up!" in client.get("/subscribe/thanks").get_data(as_text=True)

    subscriber = session.scalar(select(Subscriber))
    assert subscriber.state == SubscriberState.pending
    given = subscriber.consent_events[0]
    assert (given.action.value, given.consent_text, given.privacy_policy_version) == ("given", CONSENT, "2026-11-01")
    assert given.form_id == "subscribe" and given.ip_address == "127.0.0.1"

    [mail] = deliver()
    parts = check_message(mail, postal_address=config["site"]["postal_address"])
    confirm_path = re.search(r"https://news.example.org(/confirm/\S+)", parts["text"]).group(1)

    # GET (what a link scanner does) changes nothing.
    page = client.get(confirm_path).get_data(as_text=True)
    assert "Confirm my subscription" in page
    subscriber = session.get(Subscriber, subscriber.id)
    assert subscriber.state == SubscriberState.pending

    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    assert client.post(confirm_path, data={"csrf_token": token}).status_code == 200
    subscriber = session.get(Subscriber, subscriber.id)
    assert subscriber.state == SubscriberState.confirmed
    welcome = deliver()[-1]
    assert "Welcome" in welcome["Subject"]
    parts = check_message(welcome, postal_address=config["site"]["postal_address"])

    # RFC 8058 one-click: a bare POST, no cookie, no CSRF token, 200 without redirect.
    unsubscribe_path = parts["unsubscribe_url"].removeprefix("https://news.example.org")
    client.delete_cookie("session")
    response = client.post(unsubscribe_path, data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    subscriber = session.get(Subscriber, subscriber.id)
    assert subscriber.state == SubscriberState.unsubscribed
    assert [e.action.value for e in subscriber.consent_events] == ["given", "confirmed", "withdrawn"]
    assert session.scalar(select(Suppression.reason)) == "unsubscribed"

    # What an editor reads afterwards: each step, when, under which policy, and where it happened.
    shown = runner.invoke(["subscribers", "show", "reader@example.org"])
    assert shown.exit_code == 0, shown.output
    history = shown.output.split("consent history (times in UTC):\n")[1].splitlines()[:3]
    assert [re.sub(r"^  \d{4}-\d\d-\d\d \d\d:\d\d:\d\d  ", "", line) for line in history] == [
        "given      policy 2026-11-01  signup form, from 127.0.0.1; topics: ukraine",
        "confirmed  policy 2026-11-01  confirmation page, from 127.0.0.1",
        "withdrawn  policy 2026-11-01  one-click unsubscribe in the mail program, from 127.0.0.1",
    ]
    assert shown.output.startswith("reader@example.org (Alex)\n  state: unsubscribed; topics: ukraine\n")


def test_same_address_twice_is_one_subscriber_and_same_response(client, session, deliver):
    first = sign_up(client, email="Reader@Example.org")
    second = sign_up(client, email="Reader@Example.org")
    assert (first.status_code, first.headers["Location"]) == (second.status_code, second.headers["Location"])
    assert session.scalar(select(func.count()).select_from(Subscriber)) == 1
    for _ in range(3):
        sign_up(client, email="Reader@Example.org")
    # At most 3 confirmation mails per address per 24 h, however often the form is sent.
    assert len(deliver()) == 3


def test_missing_consent_stores_nothing(client, session):
    response = sign_up(client, consent=False)
    assert response.status_code == 400
    assert "Please tick the box" in response.get_data(as_text=True)
    assert session.scalar(select(func.count()).select_from(Subscriber)) == 0
    assert session.scalar(select(func.count()).select_from(ConsentEvent)) == 0


@pytest.mark.parametrize("proxies, recorded", [(0, "127.0.0.1"), (1, "203.0.113.9")])
def test_client_address_behind_a_trusted_proxy(database_url, tmp_path, proxies, recorded):
    """X-Forwarded-For is believed only when the admin says a proxy sits in front."""
    from mailer.app import create_app
    from mailer import db
    from tests.conftest import make_config

    app = create_app(make_config(database_url, tmp_path, site={"trusted_proxies": proxies}))
    with app.app_context():
        client = app.test_client()
        headers = {"X-Forwarded-For": "203.0.113.9"}
        page = client.get("/subscribe", headers=headers).get_data(as_text=True)
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
        client.post("/subscribe", headers=headers,
                    data={"csrf_token": token, "email": "reader@example.org", "consent": "y"})
        assert db.session.scalar(select(ConsentEvent.ip_address)) == recorded
        db.session.remove()
        app.extensions["engine"].dispose()


def _digest_recipients(runner, deliver) -> list[str]:
    result = runner.invoke(["digests", "compose", "--send-now"])
    assert result.exit_code == 0, result.output
    return [str(m["To"]) for m in deliver() if m["Subject"].startswith("Accidentally Alex update")]


def test_an_unsubscribed_address_gets_no_bulk_mail_until_it_opts_in_again(client, session, runner, deliver):
    from mailer import clock
    from tests import factories
    from subscribers import operations

    factories.fixed_articles(session)
    reader = factories.subscriber(session, "reader@example.org")
    operations.unsubscribe(session, reader)
    session.commit()
    assert _digest_recipients(runner, deliver) == []

    # Signing up again makes the address pending: still no bulk mail, only a new confirmation.
    sign_up(client)
    confirmation = [m for m in deliver() if "confirm" in m["Subject"].lower()]
    assert len(confirmation) == 1
    reader = session.scalar(select(Subscriber))
    assert reader.state == SubscriberState.pending
    assert session.scalar(select(Suppression.reason)) == "unsubscribed"

    operations.confirm(session, reader)
    session.commit()
    factories.article(session, slug="new", title="A new article", published_at=clock.now())
    session.commit()
    assert _digest_recipients(runner, deliver) == ["reader@example.org"]
    assert [e.action.value for e in session.get(Subscriber, reader.id).consent_events] == [
        "withdrawn", "given", "confirmed"]
