"""The public archive: /archive/, /archive/<slug> (no personal tokens) and /archive.atom."""

from __future__ import annotations

import re

import feedparser
import pytest

from mailer.digests import operations
from mailer.sends import operations as send_operations
from mailer.links import tokens
from tests import factories


@pytest.fixture
def queued_send(app, session, frozen_clock):
    factories.fixed_articles(session)
    factories.subscriber(session, "reader@example.org")
    send = operations.compose_next(session)
    send_operations.queue(session, send)
    session.commit()
    slug, subject = send.slug, send.subject
    session.remove()
    return slug, subject


def test_archive_lists_sent_digests_only(client, session, queued_send, frozen_clock):
    slug, subject = queued_send
    factories.article(session, slug="draft-only", title="Composed But Not Sent")
    session.commit()
    unsent = operations.compose_next(session)
    session.commit()
    page = client.get("/archive/").get_data(as_text=True)
    assert f'href="/archive/{slug}"' in page and subject in page
    assert unsent.slug not in page
    assert client.get(f"/archive/{unsent.slug}").status_code == 404


def test_web_version_carries_no_personal_tokens(client, queued_send):
    slug, subject = queued_send
    response = client.get(f"/archive/{slug}")
    assert response.status_code == 200 and response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert "Two Dead And At Least 40 Detained" in page and "Climate March On Saturday" in page
    assert "/unsubscribe/" not in page and "/preferences/" not in page and "%%" not in page
    link_tokens = re.findall(r'href="https://news.example.org/l/([^"]+)"', page)
    assert link_tokens and all(tokens.read(t).subscriber_id is None for t in link_tokens)
    assert 'href="https://news.example.org/subscribe"' in page
    assert "script-src" not in response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]


def test_archived_link_counts_anonymously_and_redirects(client, queued_send):
    slug, _ = queued_send
    page = client.get(f"/archive/{slug}").get_data(as_text=True)
    petition = re.search(r'href="https://news.example.org(/l/[^"]+)"[^>]*>Sign the petition', page).group(1)
    response = client.get(petition)
    assert response.status_code == 302 and response.headers["Location"] == factories.PETITION_URL


@pytest.mark.parametrize("slug", ["no-such-update", "x" * 300])
def test_unknown_archive_page_is_a_404(client, slug):
    response = client.get(f"/archive/{slug}")
    assert response.status_code == 404
    assert "There is no update at this address" in response.get_data(as_text=True)


def test_path_tricks_in_the_slug_are_a_404(client):
    assert client.get("/archive/..%2F..%2Fetc%2Fpasswd").status_code == 404


def test_atom_feed_is_valid_and_lists_the_send(client, queued_send):
    slug, subject = queued_send
    response = client.get("/archive.atom")
    assert response.status_code == 200 and response.mimetype == "application/atom+xml"
    feed = feedparser.parse(response.data)
    assert not feed.bozo, feed.get("bozo_exception")
    assert feed.version == "atom10"
    assert feed.feed.title == "Accidentally Alex updates"
    [entry] = feed.entries
    assert entry.title == subject
    assert entry.link == f"https://news.example.org/archive/{slug}"
    assert entry.id == entry.link and entry.updated_parsed and entry.summary


def test_atom_feed_of_an_empty_archive_is_still_valid(client):
    feed = feedparser.parse(client.get("/archive.atom").data)
    assert not feed.bozo and feed.version == "atom10" and feed.entries == []


def test_empty_archive_page_says_so(client):
    assert "Nothing has been sent yet." in client.get("/archive/").get_data(as_text=True)


def test_view_in_your_browser_opens_the_readers_own_variant_without_their_tokens(app, session, client, config):
    import re

    from sqlalchemy import select

    from mailer.digests import operations as digest_operations
    from mailer.sends import operations as send_operations
    from mailer.sends.models import SendVariant

    factories.fixed_articles(session)
    factories.subscriber(session, "climate@example.org", topics=["climate"])
    factories.subscriber(session, "all@example.org")
    send = digest_operations.compose_next(session)
    send_operations.queue(session, send)
    session.commit()
    slug = send.slug
    variants = {v.topic_key: v.id for v in session.scalars(select(SendVariant))}
    session.rollback()
    by_reader = {env.rcpt_to: env.content.replace(b"=\r\n", b"").decode() for env in factories.deliver(config)}
    for reader, key in (("climate@example.org", "climate"), ("all@example.org", "")):
        mail = by_reader[reader]
        url = re.search(r'href=3D"https://news\.example\.org(/archive/[\w-]+/\d+)"', mail).group(1)
        assert url == f"/archive/{slug}/{variants[key]}"
        page = client.get(url)
        assert page.status_code == 200 and "default-src 'none'" in page.headers["Content-Security-Policy"]
        html = page.get_data(as_text=True)
        assert "/preferences/" not in html and "/unsubscribe/" not in html  # nobody's tokens
    climate_page = client.get(f"/archive/{slug}/{variants['climate']}").get_data(as_text=True)
    everything = client.get(f"/archive/{slug}/{variants['']}").get_data(as_text=True)
    assert "Climate March" in climate_page and "Chechen" not in climate_page  # only what that reader got
    assert "Chechen" in everything
    # Another send's variant, a variant that is not a number or a huge one: a 404 page.
    for url in (f"/archive/{slug}/999", f"/archive/{slug}/x", f"/archive/{slug}/{2**63}", "/archive/nothing/1"):
        assert client.get(url).status_code == 404


def _issue_heading(html: str) -> str | None:
    """The words of the "Issue N · date" line a digest opens with, as a reader sees them."""
    match = re.search(r'<p class="issue"[^>]*>([^<]*)</p>', html)
    return match.group(1).strip() if match else None


@pytest.fixture
def delivered_digest(app, session, frozen_clock, deliver):
    """A digest queued to one reader and delivered: its slug, the reader's variant and the mail's HTML."""
    from sqlalchemy import select

    from mailer.sends.models import SendVariant

    factories.fixed_articles(session)
    factories.subscriber(session, "reader@example.org")
    send = operations.compose_next(session)
    send_operations.queue(session, send)
    session.commit()
    slug, variant_id = send.slug, session.scalar(select(SendVariant.id))
    [mail] = deliver()
    return slug, variant_id, mail.get_body(("html",)).get_content()


def test_the_web_version_shows_the_issue_heading_the_mail_shows(client, delivered_digest):
    slug, _, mail_html = delivered_digest
    assert _issue_heading(mail_html) == "Issue 1 · 23 November 2026"
    assert _issue_heading(client.get(f"/archive/{slug}").get_data(as_text=True)) == _issue_heading(mail_html)


def test_the_readers_own_web_version_shows_the_issue_heading_the_mail_shows(client, delivered_digest):
    slug, variant_id, mail_html = delivered_digest
    assert f"/archive/{slug}/{variant_id}" in mail_html  # "View in your browser" opens this page
    page = client.get(f"/archive/{slug}/{variant_id}").get_data(as_text=True)
    assert _issue_heading(page) == _issue_heading(mail_html) == "Issue 1 · 23 November 2026"
