"""Bad input on the subscriber pages: each answers a 4xx page a person understands and changes nothing."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from mailer import tokens as signed
from mailer.outbox.models import OutboxMessage
from mailer.topics.models import Topic
from subscribers import tokens
from subscribers.models import ConsentEvent, Subscriber, SubscriberState, Suppression
from tests.conftest import make_config
from tests.contract import check_message

CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


def csrf_token(client, url: str = "/admin/") -> str:
    """A session-bound Flask-WTF token (the login form's) unless `url` names another page; the
    signup form's own token is signed and bound to no session (subscribers.form_tokens)."""
    return CSRF.search(client.get(url).get_data(as_text=True)).group(1)


def signup_form(client, **fields) -> dict:
    form = {"csrf_token": csrf_token(client, "/subscribe"), "email": "reader@example.org", "consent": "y"}
    form.update(fields)
    return {k: v for k, v in form.items() if v is not None}


def snapshot(session) -> dict[str, int]:
    """Row counts of everything a subscriber page can write."""
    session.remove()  # see other requests' commits, hold no lock
    counts = {model.__name__: session.scalar(select(func.count()).select_from(model))
              for model in (Subscriber, ConsentEvent, OutboxMessage, Suppression)}
    session.remove()
    return counts


def page_text(response) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.get_data(as_text=True)))


@pytest.fixture
def topics(session):
    session.add_all([Topic(slug="lgbtiq-rights", title="LGBTIQ rights"),
                     Topic(slug="ukraine", title="Ukraine", description="War and refugees")])
    session.commit()


@pytest.fixture
def pending(client, session, topics):
    """A subscriber who signed up (topic: ukraine) but has not confirmed yet."""
    response = client.post("/subscribe", data=signup_form(client, topics=["ukraine"]))
    assert response.status_code == 302
    subscriber = session.scalar(select(Subscriber))
    session.remove()
    return subscriber


@pytest.fixture
def confirmed(pending, session):
    """The same subscriber, confirmed (without going through the page)."""
    subscriber = session.get(Subscriber, pending.id)
    subscriber.state = SubscriberState.confirmed
    session.commit()
    subscriber = session.get(Subscriber, pending.id)
    session.remove()
    return subscriber


# ---- the signup form ---------------------------------------------------------------------------

@pytest.mark.parametrize(("fields", "field", "message"), [
    ({"consent": None}, "consent", "Please tick the box to agree, so we may email you."),
    ({"email": ""}, "email", "Please enter your email address."),
    ({"email": "not-an-address"}, "email", "That email address is not valid"),
    ({"email": "reader@example"}, "email", "That email address is not valid"),
    ({"email": "a" * 64 + "@" + ".".join(["b" * 60] * 4) + ".org"}, "email",
     "An email address cannot be longer than 254 characters."),
    ({"email": "reader@example.org\r\nBcc: victim@example.org"}, "email", "cannot contain line breaks"),
    ({"email": "jürgen@bücher.example"}, "email",
     "Internationalized characters before the @-sign are not supported"),
    ({"name": "Alex\r\nBcc: victim@example.org"}, "name", "Your name cannot contain line breaks."),
    ({"name": "A" * 201}, "name", "Your name cannot be longer than 200 characters."),
    ({"topics": ["ukraine", "no-such-topic"]}, "topics", "Unknown topic: no-such-topic"),
], ids=["no-consent", "empty", "invalid", "no-tld", "too-long", "email-crlf", "utf8-local-part",
        "name-crlf", "long-name", "unknown-topic"])
def test_bad_signup_redisplays_the_form_with_the_error_next_to_the_field(client, session, topics, fields,
                                                                         field, message):
    before = snapshot(session)
    response = client.post("/subscribe", data=signup_form(client, **fields))
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    # The error is announced (role=alert) and tied to its field for screen readers.
    error = re.search(rf'<p class="error" id="{field}-error" role="alert">(.*?)</p>', page, re.S)
    assert error and message in error.group(1), page
    if field != "topics":
        assert re.search(rf'<input[^>]*id="{field}"[^>]*aria-describedby="{field}-error"', page)
    assert "Sign Up to receive the latest updates from Accidentally Alex" in page
    assert snapshot(session) == before


def test_form_keeps_what_was_typed_after_an_error(client, topics):
    response = client.post("/subscribe", data=signup_form(client, name="Alex", topics=["ukraine"], consent=None))
    page = response.get_data(as_text=True)
    assert 'value="reader@example.org"' in page and 'value="Alex"' in page
    assert re.search(r'<input type="checkbox" name="topics" id="topic-ukraine" value="ukraine" checked>', page)


def test_idn_address_is_accepted_and_normalised(client, session, deliver, config):
    response = client.post("/subscribe", data=signup_form(client, email="Reader@BÜCHER.Example"))
    assert response.status_code == 302
    assert session.scalar(select(Subscriber.email)) == "Reader@bücher.example"
    session.remove()
    [mail] = deliver()
    check_message(mail, postal_address=config["site"]["postal_address"])
    # On the wire the domain is in its ASCII (xn--) form, which every mail server can route.
    assert str(mail["To"]) == "Reader@xn--bcher-kva.example"
    assert str(mail["Delivered-To"]) == "Reader@xn--bcher-kva.example"


def test_the_same_idn_address_in_punycode_is_the_same_subscriber(client, session):
    client.post("/subscribe", data=signup_form(client, email="reader@bücher.example"))
    client.post("/subscribe", data=signup_form(client, email="reader@xn--bcher-kva.example"))
    assert session.scalar(select(func.count()).select_from(Subscriber)) == 1


def test_one_megabyte_post_is_refused_with_413(client, session):
    before = snapshot(session)
    response = client.post("/subscribe", data=signup_form(client, name="x" * 1_000_000))
    assert response.status_code == 413
    assert "What you sent is far larger than this form accepts." in page_text(response)
    assert snapshot(session) == before


def test_honeypot_looks_like_success_but_stores_nothing(client, session, deliver):
    before = snapshot(session)
    response = client.post("/subscribe", data=signup_form(client, website="http://spam.example"))
    assert (response.status_code, response.headers["Location"]) == (302, "/subscribe/thanks")
    assert snapshot(session) == before
    assert deliver() == []


def test_signup_rate_limit_answers_429(database_url, tmp_path):
    from mailer.app import create_app

    app = create_app(make_config(database_url, tmp_path, signup={"rate_limit": "2 per hour"}))
    client = app.test_client()
    for n in range(2):
        assert client.post("/subscribe", data=signup_form(client, email=f"r{n}@example.org")).status_code == 302
    with app.app_context():
        from mailer import db

        before = snapshot(db.session)
        response = client.post("/subscribe", data=signup_form(client, email="r3@example.org"))
        assert response.status_code == 429
        assert "Too many requests from your address." in page_text(response)
        assert snapshot(db.session) == before
        # Reading the form is never limited: a person can still see the page.
        assert client.get("/subscribe").status_code == 200
    app.extensions["engine"].dispose()


# ---- CSRF --------------------------------------------------------------------------------------

def _forged_csrf() -> str:
    """A well-formed Flask-WTF token, as another site would mint it: right shape, someone else's key."""
    from hashlib import sha1

    from itsdangerous import URLSafeTimedSerializer

    return URLSafeTimedSerializer("an-attacker's-key", salt="wtf-csrf-token").dumps(sha1(b"raw").hexdigest())


@pytest.mark.parametrize("kind", ["missing", "forged"])
def test_signup_without_a_valid_csrf_token_is_refused(client, session, kind):
    before = snapshot(session)
    form = signup_form(client)
    if kind == "missing":
        del form["csrf_token"]
    else:
        form["csrf_token"] = _forged_csrf()
    response = client.post("/subscribe", data=form)
    assert response.status_code == 400
    assert "The form had expired or was sent from another page." in page_text(response)
    assert snapshot(session) == before


@pytest.mark.parametrize("kind", ["missing", "forged"])
def test_confirm_without_a_valid_csrf_token_is_refused(client, session, pending, kind):
    path = f"/confirm/{tokens.confirm_token(pending.id, pending.email)}"
    client.get(path)  # the person's own session, with its own CSRF secret
    before = snapshot(session)
    data = {} if kind == "missing" else {"csrf_token": _forged_csrf()}
    response = client.post(path, data=data)
    assert response.status_code == 400
    assert "Please reload the page and send it again." in page_text(response)
    assert session.get(Subscriber, pending.id).state == SubscriberState.pending
    assert snapshot(session) == before


@pytest.mark.parametrize("kind", ["missing", "forged"])
def test_preferences_without_a_valid_csrf_token_are_refused(client, session, confirmed, kind):
    path = f"/preferences/{tokens.preferences_token(confirmed.id, confirmed.token_version)}"
    client.get(path)
    before = snapshot(session)
    data = {"topics": ["lgbtiq-rights"], "action": "save"}
    if kind == "forged":
        data["csrf_token"] = _forged_csrf()
    response = client.post(path, data=data)
    assert response.status_code == 400
    subscriber = session.get(Subscriber, confirmed.id)
    assert [t.slug for t in subscriber.topics] == ["ukraine"]
    assert snapshot(session) == before


def test_unsubscribe_from_preferences_needs_the_csrf_token_too(client, session, confirmed):
    path = f"/preferences/{tokens.preferences_token(confirmed.id, confirmed.token_version)}"
    response = client.post(path, data={"action": "unsubscribe", "csrf_token": _forged_csrf()})
    assert response.status_code == 400
    assert session.get(Subscriber, confirmed.id).state == SubscriberState.confirmed


def test_preferences_with_an_unknown_topic_say_so_and_change_nothing(client, session, confirmed):
    path = f"/preferences/{tokens.preferences_token(confirmed.id, confirmed.token_version)}"
    before = snapshot(session)
    response = client.post(path, data={"csrf_token": csrf_token(client, path), "action": "save",
                                       "topics": ["lgbtiq-rights", "no-such-topic"]})
    assert response.status_code == 400
    assert "Unknown topic: no-such-topic" in page_text(response)
    assert [t.slug for t in session.get(Subscriber, confirmed.id).topics] == ["ukraine"]
    assert snapshot(session) == before


# ---- link tokens -------------------------------------------------------------------------------

def _tamper(token: str) -> str:
    """Change one character of the signed payload, keeping the token well-formed."""
    payload, rest = token.split(".", 1)
    flipped = "A" if payload[-1] != "A" else "B"
    return f"{payload[:-1]}{flipped}.{rest}"


def _bad_token(kind: str, good: str, purpose: str) -> str:
    if kind == "forged":  # the right shape and purpose, signed with a key that is not ours
        return signed.make(purpose, {"s": 1, "e": "reader@example.org", "v": 1}, secret="not-our-secret")
    if kind == "tampered":
        return _tamper(good)
    if kind == "garbage":
        return "not-a-token"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["forged", "tampered", "garbage"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_bad_confirm_token_is_refused(client, session, pending, kind, method):
    token = _bad_token(kind, tokens.confirm_token(pending.id, pending.email), tokens.CONFIRM)
    before = snapshot(session)
    data = {"csrf_token": csrf_token(client)} if method == "POST" else None
    response = client.open(f"/confirm/{token}", method=method, data=data)
    assert response.status_code == 400
    assert "This link is not valid." in page_text(response)
    assert "Confirm my subscription" not in page_text(response)
    assert session.get(Subscriber, pending.id).state == SubscriberState.pending
    assert snapshot(session) == before


@pytest.mark.parametrize("page", ["preferences", "unsubscribe"])
@pytest.mark.parametrize("kind", ["forged", "tampered", "garbage"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_bad_manage_token_is_refused(client, session, confirmed, page, kind, method):
    token = _bad_token(kind, tokens.preferences_token(confirmed.id, confirmed.token_version), tokens.PREFERENCES)
    before = snapshot(session)
    data = {"csrf_token": csrf_token(client), "action": "unsubscribe"} if method == "POST" else None
    response = client.open(f"/{page}/{token}", method=method, data=data)
    assert response.status_code == 400
    assert "This link is not valid." in page_text(response)
    assert session.get(Subscriber, confirmed.id).state == SubscriberState.confirmed
    assert snapshot(session) == before


def test_confirm_token_does_not_open_the_unsubscribe_page(client, session, confirmed):
    """Tokens are signed per purpose: a confirm link's token is no key to someone's preferences."""
    response = client.post(f"/unsubscribe/{tokens.confirm_token(confirmed.id, confirmed.email)}")
    assert response.status_code == 400
    assert session.get(Subscriber, confirmed.id).state == SubscriberState.confirmed


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_expired_confirm_link_is_refused(frozen_clock, client, session, pending, method):
    token = tokens.confirm_token(pending.id, pending.email)
    frozen_clock.advance(timedelta(days=8))
    data = {"csrf_token": csrf_token(client)} if method == "POST" else None
    response = client.open(f"/confirm/{token}", method=method, data=data)
    assert response.status_code == 400
    assert "This link has expired." in page_text(response)
    assert session.get(Subscriber, pending.id).state == SubscriberState.pending


def test_confirm_link_within_seven_days_still_works(frozen_clock, client, session, pending):
    token = tokens.confirm_token(pending.id, pending.email)
    frozen_clock.advance(timedelta(days=6, hours=23))
    path = f"/confirm/{token}"
    assert client.post(path, data={"csrf_token": csrf_token(client, path)}).status_code == 200
    assert session.get(Subscriber, pending.id).state == SubscriberState.confirmed


@pytest.mark.parametrize("page", ["preferences", "unsubscribe"])
def test_superseded_manage_link_is_refused(client, session, confirmed, page):
    """Manage links end by rotation (token_version), not by age: see the next test for why."""
    old = tokens.preferences_token(confirmed.id, confirmed.token_version)
    subscriber = session.get(Subscriber, confirmed.id)
    subscriber.token_version += 1
    session.commit()
    data = {"action": "unsubscribe", "csrf_token": csrf_token(client)}
    response = client.post(f"/{page}/{old}", data=data)
    assert response.status_code == 400
    assert "This link is no longer valid." in page_text(response)
    assert session.get(Subscriber, confirmed.id).state == SubscriberState.confirmed


def test_unsubscribe_link_in_an_old_mail_still_works(frozen_clock, client, session, confirmed):
    """An unsubscribe link must keep working long after the mail was sent (CAN-SPAM: at least 30 days;
    RFC 8058 and the Gmail/Yahoo sender rules: one click from any mail). So manage links do not expire."""
    token = tokens.preferences_token(confirmed.id, confirmed.token_version)
    frozen_clock.advance(timedelta(days=90))
    response = client.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    assert session.get(Subscriber, confirmed.id).state == SubscriberState.unsubscribed


def test_link_for_an_erased_subscriber_is_refused(client, session, confirmed):
    token = tokens.preferences_token(confirmed.id, confirmed.token_version)
    session.delete(session.get(Subscriber, confirmed.id))
    session.commit()
    response = client.get(f"/preferences/{token}")
    assert response.status_code == 400
    assert "we hold no subscription for it" in page_text(response)


def test_unsubscribe_page_get_changes_nothing(client, session, confirmed):
    """Link scanners fetch every link in a mail: GET only shows the button."""
    response = client.get(f"/unsubscribe/{tokens.preferences_token(confirmed.id, confirmed.token_version)}")
    assert response.status_code == 200 and "Unsubscribe" in page_text(response)
    assert session.get(Subscriber, confirmed.id).state == SubscriberState.confirmed


# ---- the rest of the site ----------------------------------------------------------------------

def test_unknown_page_and_wrong_method_answer_a_readable_4xx(client):
    missing = client.get("/no-such-page")
    assert missing.status_code == 404 and "There is nothing at this address." in page_text(missing)
    wrong = client.put("/subscribe")
    assert wrong.status_code == 405 and "This page cannot be used that way." in page_text(wrong)


def test_a_csrf_token_from_another_browser_is_refused(app, session, pending):
    """A confirm or preferences form's token is bound to the session cookie of the browser it was
    given to (the signup form's is not: the blog's pages post it, see tests/test_embed.py)."""
    path = f"/confirm/{tokens.confirm_token(pending.id, pending.email)}"
    ours, theirs = app.test_client(), app.test_client()
    form = {"csrf_token": csrf_token(theirs, path)}
    csrf_token(ours, path)  # we have a session of our own, but send the other browser's token
    response = ours.post(path, data=form)
    assert response.status_code == 400
    assert session.get(Subscriber, pending.id).state == SubscriberState.pending


def test_an_address_error_is_shown_at_the_address_field_whatever_its_wording(client, session):
    """email-validator's reason for a reserved domain mentions a "name": it still belongs to the address."""
    form = {"csrf_token": csrf_token(client, "/subscribe"), "email": "reader@example.invalid", "consent": "y"}
    response = client.post("/subscribe", data=form)
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    error = re.search(r'<p class="error" id="([\w-]+)-error" role="alert">([^<]*)</p>', page)
    assert error.group(1) == "email" and "special-use or reserved name" in error.group(2)
    assert session.scalar(select(func.count()).select_from(Subscriber)) == 0
