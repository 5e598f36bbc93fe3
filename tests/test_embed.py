"""The signup box on the blog: a form posted from another site with a signed, time-stamped token and no
cookie; the framed form for the origins the admin names; the domain cap and blocklist; config errors."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from mailer import clock
from mailer.errors import ConfigError
from subscribers import form_tokens
from subscribers.models import ConsentEvent, Subscriber, SubscriberState
from tests.conftest import make_config
from tests.test_bad_input import page_text, signup_form, snapshot

BLOG = "https://blog.example.org"


def _snippet_form(runner, *args) -> dict:
    """The fields of the form `mailer signup embed` prints, filled in as a reader would."""
    result = runner.invoke(["signup", "embed", *args])
    assert result.exit_code == 0, result.output
    html = result.output
    assert re.search(r'<form class="mailer-signup" method="post" action="https://news.example.org/subscribe">', html)
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', html))
    return {**fields, "email": "reader@example.org", "consent": "y"}


def _app(database_url, tmp_path, **signup):
    from mailer.app import create_app

    app = create_app(make_config(database_url, tmp_path, signup=signup))
    app.config["TESTING"] = True
    return app


def test_the_snippet_posts_from_another_site_without_a_cookie(client, session, runner, deliver):
    form = _snippet_form(runner)
    blog_reader = client.application.test_client()  # never loaded our page: no cookie, no session
    response = blog_reader.post("/subscribe", data=form, headers={"Origin": BLOG, "Referer": BLOG + "/posts/1"})
    assert (response.status_code, response.headers["Location"]) == (302, "/subscribe/thanks")
    assert "Set-Cookie" not in response.headers  # signing up leaves nothing in the reader's browser
    subscriber = session.scalar(select(Subscriber))
    assert subscriber.state == SubscriberState.pending  # double opt-in: only the mail's link confirms
    assert [(e.action.value, e.form_id) for e in subscriber.consent_events] == [("given", "blog")]
    [mail] = deliver()
    assert "/confirm/" in mail.get_body(("plain",)).get_content()


def test_the_snippet_names_its_form_and_refuses_a_bad_name(runner, session):
    assert _snippet_form(runner, "--form-id", "sidebar")["form_id"] == "sidebar"
    result = runner.invoke(["signup", "embed", "--form-id", "<script>"])
    assert result.exit_code == 2 and "--form-id takes letters" in result.output


def test_a_forged_form_token_is_refused_and_nothing_stored(client, session, runner):
    from itsdangerous import URLSafeTimedSerializer

    before = snapshot(session)
    form = _snippet_form(runner)
    form["csrf_token"] = URLSafeTimedSerializer("not-our-secret", salt=form_tokens.SALT).dumps(form_tokens.EMBED)
    response = client.post("/subscribe", data=form)
    assert response.status_code == 400
    assert "The form had expired or was sent from another page." in page_text(response)
    assert snapshot(session) == before


def test_an_old_snippet_gives_the_reader_our_form_filled_in(client, session, runner, frozen_clock):
    form = _snippet_form(runner)
    before = snapshot(session)
    frozen_clock.freeze(clock.now() + timedelta(days=form_tokens.EMBED_DAYS + 1))
    response = client.post("/subscribe", data=form)
    assert response.status_code == 400
    assert form_tokens.EXPIRED in page_text(response)
    assert 'value="reader@example.org"' in response.get_data(as_text=True)
    assert snapshot(session) == before
    fresh = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', response.get_data(as_text=True)).group(1)
    assert client.post("/subscribe", data={**form, "csrf_token": fresh}).status_code == 302


def test_a_form_sent_back_faster_than_a_person_could_is_shown_again(database_url, tmp_path, frozen_clock):
    app = _app(database_url, tmp_path, min_seconds=3)
    client = app.test_client()
    with app.app_context():
        from mailer import db

        before = snapshot(db.session)
        form = signup_form(client)
        response = client.post("/subscribe", data=form)
        assert response.status_code == 400 and form_tokens.TOO_FAST in page_text(response)
        assert snapshot(db.session) == before
        frozen_clock.freeze(clock.now() + timedelta(seconds=3))
        assert client.post("/subscribe", data=form).status_code == 302
        assert db.session.scalar(select(func.count()).select_from(ConsentEvent)) == 1
        db.session.remove()
    app.extensions["engine"].dispose()


def test_the_framed_form_may_be_framed_by_the_named_origins_only(database_url, tmp_path):
    app = _app(database_url, tmp_path, embed_origins=f"{BLOG} https://www.example.org")
    client = app.test_client()
    framed = client.get("/subscribe?embed=1")
    policy = framed.headers["Content-Security-Policy"]
    assert f"frame-ancestors {BLOG} https://www.example.org;" in policy and "'none'" in policy  # default-src
    assert "X-Frame-Options" not in framed.headers  # DENY would overrule the allowed origins
    page = framed.get_data(as_text=True)
    assert 'action="/subscribe?embed=1"' in page and '<header class="site">' not in page
    assert 'target="_blank" rel="noopener">Privacy Policy</a>' in page
    response = client.post("/subscribe?embed=1", data=signup_form(client))
    assert response.headers["Location"] == "/subscribe/thanks?embed=1"
    thanks = client.get("/subscribe/thanks?embed=1")
    assert f"frame-ancestors {BLOG} " in thanks.headers["Content-Security-Policy"]
    for path in ["/subscribe", "/subscribe/thanks", "/privacy", "/subscribe?embed=0"]:
        response = client.get(path)
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"], path
        assert response.headers["X-Frame-Options"] == "DENY", path
    app.extensions["engine"].dispose()


def test_without_embed_origins_the_framed_form_is_not_frameable(client):
    response = client.get("/subscribe?embed=1")
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"


def test_framing_needs_origins_first(runner):
    result = runner.invoke(["signup", "embed", "--frame"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "mailer: set signup.embed_origins to the blog's origin (https://blog.example.org) first: "
        "no other site may frame the form"]


@pytest.mark.parametrize("address", ["someone@throwaway.example", "someone@mx.THROWAWAY.example"])
def test_a_blocked_domain_and_its_subdomains_are_refused(database_url, tmp_path, address):
    app = _app(database_url, tmp_path, blocked_domains="spam.example, throwaway.example")
    client = app.test_client()
    with app.app_context():
        from mailer import db

        before = snapshot(db.session)
        response = client.post("/subscribe", data=signup_form(client, email=address))
        assert response.status_code == 400
        assert "We cannot sign up addresses at this domain." in page_text(response)
        assert snapshot(db.session) == before
        assert client.post("/subscribe", data=signup_form(client, email="reader@example.org")).status_code == 302
    app.extensions["engine"].dispose()


def test_pending_signups_per_domain_are_capped_per_hour(database_url, tmp_path, frozen_clock):
    app = _app(database_url, tmp_path, pending_per_domain_per_hour=2)
    client = app.test_client()
    with app.app_context():
        from mailer import db
        from subscribers.models import RateHit

        for n in range(2):
            assert client.post("/subscribe", data=signup_form(client, email=f"r{n}@small.example")).status_code == 302
        before = snapshot(db.session)
        response = client.post("/subscribe", data=signup_form(client, email="r2@small.example"))
        assert response.status_code == 400
        assert "Too many people signed up with addresses at this domain" in page_text(response)
        assert snapshot(db.session) == before
        # Another domain is not held up, and the domain is never stored in the clear.
        assert client.post("/subscribe", data=signup_form(client, email="r2@other.example")).status_code == 302
        assert not any("small.example" in key for key in db.session.scalars(select(RateHit.key)))
        db.session.remove()
        frozen_clock.freeze(clock.now() + timedelta(hours=1, seconds=1))
        assert client.post("/subscribe", data=signup_form(client, email="r2@small.example")).status_code == 302
        db.session.remove()
    app.extensions["engine"].dispose()


@pytest.mark.parametrize("overrides, message", [
    ({"signup": {"embed_origins": "https://blog.example.org/"}}, r"signup\.embed_origins must list origins"),
    ({"signup": {"embed_origins": "blog.example.org"}}, r"signup\.embed_origins must list origins"),
    ({"site": {"rate_limit_storage": "mysql://u:secret@db/x"}}, r"site\.rate_limit_storage must be empty"),
    ({"signup": {"pending_per_domain_per_hour": -1}}, r"signup\.pending_per_domain_per_hour must be 0 or more"),
    ({"signup": {"min_seconds": -2}}, r"signup\.min_seconds must be 0 or more"),
])
def test_bad_embed_and_limit_settings_are_named(overrides, message):
    from mailer import config as config_module

    with pytest.raises(ConfigError, match=message) as caught:
        config_module.load(path=None, environ={}, overrides=overrides)
    assert "secret" not in str(caught.value)  # a storage URL may carry a password


def _solve(page: str) -> str:
    """What the page's script sends back: the number whose SHA-256 with the salt is the challenge."""
    import base64
    import html
    import json

    import altcha

    proof = json.loads(html.unescape(re.search(r'data-challenge="([^"]+)"', page).group(1)))
    solution = altcha.solve_challenge_v1(proof["challenge"], proof["salt"], proof["algorithm"], proof["maxNumber"])
    return base64.b64encode(json.dumps({"algorithm": proof["algorithm"], "challenge": proof["challenge"],
                                        "number": solution.number, "salt": proof["salt"],
                                        "signature": proof["signature"]}).encode()).decode()


def test_proof_of_work_when_switched_on(database_url, tmp_path):
    app = _app(database_url, tmp_path, proof_of_work=True, proof_of_work_max_number=2000)
    client = app.test_client()
    with app.app_context():
        from mailer import db

        page = client.get("/subscribe")
        assert "script-src 'self'" in page.headers["Content-Security-Policy"]
        assert 'src="/static/altcha-solve.js"' in page.get_data(as_text=True)
        form = signup_form(client)
        before = snapshot(db.session)
        response = client.post("/subscribe", data=form)  # no solution: the form again, nothing stored
        assert response.status_code == 400 and "Please wait a moment until the page is ready" in page_text(response)
        assert snapshot(db.session) == before
        forged = _solve(page.get_data(as_text=True)).encode()
        assert client.post("/subscribe", data={**form, "altcha": forged[:-4].decode() + "AAA="}).status_code == 400
        solved = _solve(page.get_data(as_text=True))
        assert client.post("/subscribe", data={**form, "altcha": solved}).status_code == 302
        # A solution works once.
        assert client.post("/subscribe", data={**form, "altcha": solved}).status_code == 400
        assert db.session.scalar(select(func.count()).select_from(ConsentEvent)) == 1
        db.session.remove()
    app.extensions["engine"].dispose()


def test_pages_keep_no_script_without_proof_of_work(client):
    assert "script-src" not in client.get("/subscribe").headers["Content-Security-Policy"]
