"""Tracked links /l/<token>: count the click, redirect only to the Link row's URL, refuse tampering."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from mailer.digests import operations
from mailer.sends import operations as send_operations
from mailer.links.models import Click, Link
from mailer.links import queries, tokens
from tests import factories


@pytest.fixture
def sent(app, session, frozen_clock):
    """A queued digest of the fixed articles to two subscribers; returns (send id, petition link id, ids)."""
    factories.fixed_articles(session)
    alex = factories.subscriber(session, "alex@example.org")
    sam = factories.subscriber(session, "sam@example.org")
    send = operations.compose_next(session)
    send_operations.queue(session, send)
    session.commit()
    petition = session.scalar(select(Link.id).where(Link.url == factories.PETITION_URL))
    ids = (send.id, petition, alex.id, sam.id)
    session.remove()
    return ids


def clicks(session) -> int:
    return session.scalar(select(func.count()).select_from(Click))


def test_click_is_recorded_and_redirects_to_the_sealed_url(client, session, sent):
    send_id, petition, alex, _ = sent
    response = client.get(f"/l/{tokens.make(send_id, petition, alex)}")
    assert response.status_code == 302
    assert response.headers["Location"] == factories.PETITION_URL
    click = session.scalar(select(Click))
    assert (click.link_id, click.send_id, click.subscriber_id) == (petition, send_id, alex)


@pytest.mark.parametrize("query", ["?url=https://evil.example/", "?next=https://evil.example/",
                                   "?next=//evil.example/&url=javascript:alert(1)"])
def test_query_string_never_changes_the_target(client, sent, query):
    send_id, petition, alex, _ = sent
    response = client.get(f"/l/{tokens.make(send_id, petition, alex)}{query}")
    assert response.status_code == 302
    assert response.headers["Location"] == factories.PETITION_URL


@pytest.mark.parametrize("tamper", [
    lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),   # signature changed
    lambda t: "x" + t,                                               # payload changed
    lambda t: t.split(".")[0],                                       # signature cut off
    lambda t: "not-a-token",
    lambda t: "A" * 3000,                                            # absurdly long
])
def test_tampered_token_is_a_400_page_without_redirect_or_click(client, session, sent, tamper):
    send_id, petition, alex, _ = sent
    response = client.get(f"/l/{tamper(tokens.make(send_id, petition, alex))}")
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert "This link is not valid" in response.get_data(as_text=True)
    assert clicks(session) == 0


def test_token_signed_for_another_purpose_is_refused(client, session, sent):
    from mailer import tokens as signed

    send_id, petition, alex, _ = sent
    response = client.get(f"/l/{signed.make('manage', [send_id, alex, petition])}")
    assert response.status_code == 400 and clicks(session) == 0


def test_link_of_another_send_is_refused(client, session, sent):
    send_id, petition, alex, _ = sent
    response = client.get(f"/l/{tokens.make(send_id + 1, petition, alex)}")
    assert response.status_code == 400 and clicks(session) == 0


def test_link_that_no_longer_exists_is_a_404(client, session, sent):
    send_id, _, alex, _ = sent
    response = client.get(f"/l/{tokens.make(send_id, 9999, alex)}")
    assert response.status_code == 404 and "Location" not in response.headers


def test_a_row_with_an_unsafe_url_is_never_redirected_to(client, session, sent):
    send_id, _, alex, _ = sent
    link = Link(send_id=send_id, url="javascript:alert(1)", label="bad", kind="other")
    session.add(link)
    session.commit()
    response = client.get(f"/l/{tokens.make(send_id, link.id, alex)}")
    assert response.status_code == 400 and "Location" not in response.headers and clicks(session) == 0


def test_head_probe_of_a_link_scanner_is_not_a_click(client, session, sent):
    send_id, petition, alex, _ = sent
    response = client.head(f"/l/{tokens.make(send_id, petition, alex)}")
    assert response.status_code == 302 and clicks(session) == 0


def test_post_is_not_allowed(client, session, sent):
    send_id, petition, alex, _ = sent
    assert client.post(f"/l/{tokens.make(send_id, petition, alex)}").status_code in (400, 405)
    assert clicks(session) == 0


def test_counts_per_link_per_send_and_unique_per_recipient(client, session, sent):
    send_id, petition, alex, sam = sent
    for subscriber in (alex, alex, sam, None):
        assert client.get(f"/l/{tokens.make(send_id, petition, subscriber)}").status_code == 302
    [top, *others] = queries.clicks_per_link(session, send_id)
    assert (top.link_id, top.clicks, top.unique_clickers, top.anonymous_clicks) == (petition, 4, 2, 1)
    assert all(o.clicks == 0 for o in others)
    assert queries.clicks_for_send(session, send_id) == 4
    assert queries.unique_clickers(session, send_id) == 2


def test_open_pixel_counts_only_when_tracking_opens(database_url, tmp_path, frozen_clock):
    import re

    from mailer import db
    from mailer.app import create_app
    from tests.conftest import make_config

    app = create_app(make_config(database_url, tmp_path, tracking={"opens": True}))
    with app.app_context():
        factories.fixed_articles(db.session)
        factories.subscriber(db.session, "reader@example.org")
        send = operations.compose_next(db.session)
        send_operations.queue(db.session, send)
        db.session.commit()
        [envelope] = factories.deliver(app.config["MAILER"])
        content = envelope.content.replace(b"=\r\n", b"")
        pixel = re.search(rb'<img src=3D"https://news.example.org(/o/[\w.\-]+)"', content).group(1).decode()
        db.session.remove()
        client = app.test_client()
        response = client.get(pixel)
        assert response.status_code == 200 and response.mimetype == "image/gif"
        assert queries.opens(db.session, send.id) == (1, 1)
        assert queries.clicks_for_send(db.session, send.id) == 0
        # The pixel's token is not a redirect.
        assert client.get(pixel.replace("/o/", "/l/")).status_code == 400
    db.session.remove()
    app.extensions["engine"].dispose()
