"""The JSON API: tokens, each route, and every bad input the issue lists (no token, a read token on a write
route, a malformed body naming its field, a signup without consent)."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from mailer.api.models import ApiToken
from mailer.articles.models import Article
from mailer.outbox.models import OutboxMessage
from subscribers.models import ConsentEvent, Subscriber, SubscriberState
from tests import factories
from tests.api import call, token
from tests.conftest import FreshContextClient, make_config

PETITION = {"label": "Sign the petition for Russia to intervene", "url": factories.PETITION_URL}


@pytest.fixture
def write(app):
    return token("write")


@pytest.fixture
def read(app):
    return token("read", "dashboard")


def _error(response, status: int, code: str, field=None) -> str:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()["error"]
    assert body["code"] == code and body["field"] == field
    return body["message"]


# ---- tokens ------------------------------------------------------------------------------------

def test_tokens_cli_prints_the_secret_once_and_keeps_only_its_hash(runner, session, client):
    created = runner.invoke(["tokens", "create", "--scope", "write", "--name", "blog CMS"])
    assert created.exit_code == 0, created.output
    secret = created.stdout.strip()
    assert secret.startswith("mlr_") and "not shown again" in created.stderr
    stored = session.scalar(select(ApiToken))
    assert stored.token_hash != secret and secret not in stored.token_hash and stored.scope == "write"
    assert call(client, "GET", "/api/v1/topics", secret).status_code == 200

    listed = runner.invoke(["tokens", "list"])
    assert listed.exit_code == 0
    assert re.search(r"1\s+write\s+mlr_\S+…\s+blog CMS\s+created .*last used 20\d\d-.*active", listed.stdout)
    assert secret not in listed.stdout

    assert runner.invoke(["tokens", "revoke", "1"]).exit_code == 0
    assert "revoked" in runner.invoke(["tokens", "list"]).stdout
    _error(call(client, "GET", "/api/v1/topics", secret), 401, "unauthorized")


@pytest.mark.parametrize("args, reason", [
    (["tokens", "create", "--scope", "admin"], "'admin' is not one of 'read', 'write'"),
    (["tokens", "revoke", "42"], "no API token with id 42"),
    (["tokens", "create", "--scope", "read", "--name", "x" * 101], "one line of at most 100 characters"),
])
def test_tokens_cli_refuses_bad_input_in_one_line(runner, args, reason):
    result = runner.invoke(args)
    assert result.exit_code == 2
    assert reason in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_revoking_twice_says_so(runner, app):
    token("read")
    assert runner.invoke(["tokens", "revoke", "1"]).exit_code == 0
    again = runner.invoke(["tokens", "revoke", "1"])
    assert again.exit_code == 2 and "already revoked" in again.stderr


# ---- the gate ----------------------------------------------------------------------------------

def test_no_token_is_401_with_a_json_error(client):
    response = call(client, "GET", "/api/v1/topics", None)
    assert "bearer token is missing" in _error(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("header", ["Bearer mlr_not-a-real-token", "Basic dXNlcjpwYXNz", "Bearer ", "mlr_x"])
def test_a_bad_token_is_401(client, write, header):
    response = client.get("/api/v1/topics", headers={"Authorization": header})
    _error(response, 401, "unauthorized")


def test_a_read_token_reads_but_may_not_write(client, read, session):
    assert call(client, "GET", "/api/v1/topics", read).status_code == 200
    response = call(client, "POST", "/api/v1/topics", read, json={"slug": "ukraine"})
    assert "may only read" in _error(response, 403, "forbidden")
    assert call(client, "GET", "/api/v1/topics", read).get_json() == {"topics": []}


def test_a_token_records_when_it_was_last_used(client, read, session):
    assert session.scalar(select(ApiToken.last_used_at)) is None
    call(client, "GET", "/api/v1/topics", read)
    session.expire_all()
    assert session.scalar(select(ApiToken.last_used_at)) is not None


def test_errors_under_api_are_json_and_pages_elsewhere_stay_html(client, write):
    assert "openapi.json" in _error(call(client, "GET", "/api/v1/no-such-thing", write), 404, "not_found")
    wrong_method = call(client, "DELETE", "/api/v1/topics", write)
    _error(wrong_method, 405, "method_not_allowed")
    assert set(wrong_method.headers["Allow"].split(", ")) >= {"GET", "POST"}
    _error(call(client, "GET", "/api/v1/subscribers/424242", write), 404, "not_found")
    _error(call(client, "GET", "/api/v1/subscribers/99999999999", write), 404, "not_found")
    big = call(client, "POST", "/api/v1/articles", write, data=b"{" + b" " * (2 * 1024 * 1024) + b"}",
               content_type="application/json")
    _error(big, 413, "too_large")
    page = client.get("/no-such-page")
    assert page.status_code == 404 and page.mimetype == "text/html"


def test_rate_limited_per_token(database_url, tmp_path):
    from mailer.app import create_app

    app = create_app(make_config(database_url, tmp_path, api={"rate_limit": "3 per minute"}))
    app.test_client_class = FreshContextClient
    with app.app_context():
        first, second = token("read"), token("read")
        client = app.test_client()
        assert [call(client, "GET", "/api/v1/topics", first).status_code for _ in range(3)] == [200, 200, 200]
        limited = call(client, "GET", "/api/v1/topics", first)
        assert "Too many requests with this token" in _error(limited, 429, "rate_limited")
        assert call(client, "GET", "/api/v1/topics", second).status_code == 200  # its own allowance
    app.extensions["engine"].dispose()


def test_the_api_needs_no_csrf_token_and_sets_no_cookie(client, write):
    response = call(client, "POST", "/api/v1/topics", write, json={"slug": "ukraine"})
    assert response.status_code == 201 and "Set-Cookie" not in response.headers


# ---- malformed bodies name their field ---------------------------------------------------------

@pytest.mark.parametrize("path, body, field, words", [
    ("/api/v1/topics", {"slug": "Not A Slug"}, "slug", "should match pattern"),
    ("/api/v1/topics", {"slug": "ok", "colour": "red"}, "colour", "Extra inputs are not permitted"),
    ("/api/v1/subscribers", {"email": "reader@example.org", "consent": True, "topics": "ukraine"}, "topics",
     "valid list"),
    ("/api/v1/subscribers", {"consent": True}, "email", "Field required"),
    ("/api/v1/subscribers", {"email": "not an address", "consent": True}, "email", "not valid"),
    ("/api/v1/subscribers", {"email": "reader@example.org", "consent": True, "topics": ["no-such-topic"]}, "topics",
     "Unknown topic"),
    ("/api/v1/articles", {"title": "Post", "canonical_url": "https://blog.example/p",
                          "actions": [{"label": "Donate", "url": "javascript:alert(1)"}]}, "actions.0.url",
     "must be an http or https address"),
    ("/api/v1/articles", {"title": "Post", "canonical_url": "data:text/html,hi"}, "canonical_url",
     "must be an http or https address"),
    ("/api/v1/articles", {"title": "", "canonical_url": "https://blog.example/p"}, "title", "at least 1 character"),
    ("/api/v1/articles", {"title": "Post", "canonical_url": "https://blog.example/p",
                          "actions": [{"label": "Go", "url": "https://x.example", "kind": "bribe"}]},
     "actions.0.kind", "Input should be"),
    ("/api/v1/articles", {"title": "Post"}, "canonical_url", "needs a canonical_url or a guid"),
    ("/api/v1/articles", {"title": "Post", "guid": "p-1", "topics": ["!!!"]}, "topics", "cannot make a topic"),
    ("/api/v1/schedules", {"cron": "every monday"}, "cron", "not a cron expression"),
    ("/api/v1/schedules", {"cron": "0 9 * * MON", "timezone": "Mars/Olympus"}, "timezone", "not a time zone"),
])
def test_a_malformed_body_is_400_naming_the_field(client, write, path, body, field, words):
    message = _error(call(client, "POST", path, write, json=body), 400, "invalid", field)
    assert words in message


@pytest.mark.parametrize("kwargs", [
    {"data": "{not json", "content_type": "application/json"},
    {"data": "[1, 2]", "content_type": "application/json"},
    {"data": {"slug": "ukraine"}},  # a form post
])
def test_a_body_that_is_not_a_json_object_is_400(client, write, kwargs):
    assert "JSON object" in _error(call(client, "POST", "/api/v1/topics", write, **kwargs), 400, "invalid_json", "body")


def test_a_long_post_is_accepted_though_forms_stop_at_64_kb(client, write):
    body = "<p>" + "Reports from Grozny. " * 10_000 + "</p>"  # about 210 KB
    response = call(client, "POST", "/api/v1/articles", write,
                    json={"title": "A long report", "guid": "p-long", "body": body})
    assert response.status_code == 201, response.get_json()


def test_a_bad_query_parameter_is_named(client, write):
    _error(call(client, "GET", "/api/v1/sends?limit=1000", write), 400, "invalid", "limit")


# ---- subscribers -------------------------------------------------------------------------------

@pytest.mark.parametrize("consent", [None, False, "yes"])
def test_a_signup_without_consent_is_refused_and_nothing_is_stored(client, write, session, consent):
    body = {"email": "reader@example.org"}
    if consent is not None:
        body["consent"] = consent
    message = _error(call(client, "POST", "/api/v1/subscribers", write, json=body), 400, "consent_required", "consent")
    assert "consent" in message
    assert session.scalar(select(Subscriber)) is None and session.scalar(select(OutboxMessage)) is None


def test_a_signup_is_pending_until_the_reader_confirms_the_mail_it_sends(client, write, session, deliver):
    factories.topic(session, "ukraine")
    session.commit()
    response = call(client, "POST", "/api/v1/subscribers", write, json={
        "email": "Reader@Example.org", "name": "Alex", "topics": ["ukraine"], "consent": True,
        "ip_address": "203.0.113.9", "user_agent": "Firefox"})
    assert response.status_code == 201
    body = response.get_json()
    assert (body["email"], body["state"], body["topics"]) == ("Reader@example.org", "pending", ["ukraine"])

    given = session.scalar(select(ConsentEvent))
    assert (given.action.value, given.source, given.form_id) == ("given", "api", "api-token-1")
    assert (given.ip_address, given.user_agent) == ("203.0.113.9", "Firefox")
    assert "I have read and agreed to the Privacy Policy" in given.consent_text

    [mail] = deliver()
    assert mail["To"].addresses[0].addr_spec == "Reader@example.org"
    text = mail.get_body(("plain",)).get_content()
    confirm_path = re.search(r"https://news.example.org(/confirm/\S+)", text).group(1)
    assert "Alex" not in str(mail["To"])  # as on the web form: a stranger's words stay out until confirmed
    page = client.get(confirm_path).get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    client.post(confirm_path, data={"csrf_token": csrf})
    assert call(client, "GET", f"/api/v1/subscribers/{body['id']}", write).get_json()["state"] == "confirmed"

    again = call(client, "POST", "/api/v1/subscribers", write, json={"email": "Reader@example.org", "consent": True})
    assert again.status_code == 200 and again.get_json()["state"] == "confirmed"


def test_update_topics_and_unsubscribe(client, write, session):
    reader = factories.subscriber(session, "reader@example.org", topics=["ukraine"])
    factories.topic(session, "climate")
    session.commit()
    path = f"/api/v1/subscribers/{reader.id}"
    changed = call(client, "PATCH", path, write, json={"topics": ["climate", "ukraine"]})
    assert changed.status_code == 200 and changed.get_json()["topics"] == ["climate", "ukraine"]
    paused = call(client, "PATCH", path, write, json={"is_paused": True}).get_json()
    assert paused["is_paused"] is True and paused["topics"] == ["climate", "ukraine"]
    _error(call(client, "PATCH", path, write, json={"topics": ["nope"]}), 400, "invalid", "topics")

    gone = call(client, "POST", f"{path}/unsubscribe", write)
    assert gone.status_code == 200 and gone.get_json()["state"] == "unsubscribed"
    assert call(client, "POST", f"{path}/unsubscribe", write).status_code == 200  # again: nothing changes
    assert "unsubscribed" in _error(call(client, "PATCH", path, write, json={"topics": []}), 409, "conflict")
    session.expire_all()
    assert [e.action.value for e in session.get(Subscriber, reader.id).consent_events] == [
        "topics_changed", "paused", "withdrawn"]
    assert session.get(Subscriber, reader.id).state == SubscriberState.unsubscribed


# ---- topics, articles, sends, schedules --------------------------------------------------------

def test_topics_list_and_create(client, write):
    created = call(client, "POST", "/api/v1/topics", write,
                   json={"slug": "lgbtiq-rights", "title": "LGBTIQ Rights", "description": "Rights news"})
    assert created.status_code == 201 and created.get_json()["is_hidden"] is False
    _error(call(client, "POST", "/api/v1/topics", write, json={"slug": "lgbtiq-rights"}), 409, "conflict", "slug")
    listed = call(client, "GET", "/api/v1/topics", write).get_json()["topics"]
    assert [(t["slug"], t["title"]) for t in listed] == [("lgbtiq-rights", "LGBTIQ Rights")]


POST = {
    "guid": "https://accidentallyalex.example/?p=812",
    "canonical_url": "https://accidentallyalex.example/2026/11/chechen-lgbt-purge-resumes",
    "title": "Two Dead And At Least 40 Detained As Chechen LGBT Purge Resumes",
    "body": "<p>Reports from Grozny.</p><script>alert(1)</script><p onclick='x()'>More</p>",
    "image_url": "https://accidentallyalex.example/images/grozny.jpg",
    "published_at": "2026-11-23T08:00:00Z",
    "topics": ["#ChechenAntiGayPurge", "lgbtiq-rights"],
    "actions": [PETITION, {"label": "Donate to The Russian LGBT Network", "url": factories.DONATE_URL}],
}


def test_the_cms_pushes_a_post_with_its_calls_to_act_and_pushes_it_again_to_update(client, write, session):
    created = call(client, "POST", "/api/v1/articles", write, json=POST)
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    assert body["topics"] == ["chechen-anti-gay-purge", "lgbtiq-rights"]
    assert [(a["label"], a["kind"]) for a in body["actions"]] == [
        (PETITION["label"], "petition"), ("Donate to The Russian LGBT Network", "donate")]
    article = session.get(Article, body["id"])
    assert "<script" not in article.body_html and "onclick" not in article.body_html
    assert "Reports from Grozny." in article.body_html and article.summary == "Reports from Grozny."

    updated = call(client, "POST", "/api/v1/articles", write, json={**POST, "title": "Purge Resumes", "actions": [PETITION]})
    assert updated.status_code == 200
    assert updated.get_json()["id"] == body["id"] and len(updated.get_json()["actions"]) == 1

    put = call(client, "PUT", f"/api/v1/articles/{body['id']}", write,
               json={"title": "Purge Resumes In Grozny", "canonical_url": POST["canonical_url"], "actions": []})
    assert put.status_code == 200 and put.get_json()["actions"] == [] and put.get_json()["guid"] == POST["guid"]
    assert call(client, "GET", f"/api/v1/articles/{body['id']}", write).get_json()["title"] == "Purge Resumes In Grozny"
    _error(call(client, "PUT", f"/api/v1/articles/{body['id']}", write, json={**POST, "guid": "other"}),
           400, "invalid", "guid")
    assert session.scalar(select(Article.id).where(Article.id != body["id"])) is None


def test_sends_list_and_figures(client, read, session, app):
    from mailer.digests import operations as digest_operations
    from mailer.sends import operations as send_operations

    factories.fixed_articles(session)
    factories.subscriber(session, "a@example.org")
    factories.subscriber(session, "b@example.org", topics=["ukraine"])
    send = digest_operations.compose_next(session)
    send_operations.queue(session, send)
    session.commit()
    sends = call(client, "GET", "/api/v1/sends", read).get_json()["sends"]
    assert [(s["id"], s["kind"], s["recipients"]) for s in sends] == [(send.id, "digest", 2)]
    assert sends[0]["archive_url"].startswith("https://news.example.org/archive/")
    figures = call(client, "GET", f"/api/v1/sends/{send.id}", read).get_json()
    assert figures["delivery"] == {"queued": 2, "sending": 0, "sent": 0, "failed": 0, "cancelled": 0}
    assert figures["clicks"] == 0 and {link["kind"] for link in figures["links"]} >= {"petition", "donate", "read"}
    assert call(client, "GET", "/api/v1/sends?limit=1&offset=1", read).get_json() == {"sends": []}


def test_schedules_list_create_remove(client, write):
    created = call(client, "POST", "/api/v1/schedules", write, json={"cron": "0 9 * * 1", "timezone": "Europe/London"})
    assert created.status_code == 201
    schedule = created.get_json()
    listed = call(client, "GET", "/api/v1/schedules", write).get_json()["schedules"]
    assert [(s["id"], s["cron"], s["timezone"]) for s in listed] == [(schedule["id"], "0 9 * * 1", "Europe/London")]
    assert call(client, "DELETE", f"/api/v1/schedules/{schedule['id']}", write).status_code == 204
    _error(call(client, "DELETE", f"/api/v1/schedules/{schedule['id']}", write), 404, "not_found")
    assert call(client, "GET", "/api/v1/schedules", write).get_json() == {"schedules": []}
