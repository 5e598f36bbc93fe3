"""Click truth: a security scanner's fetches (every link of a mail within seconds, or a robot's
User-Agent) are flagged, shown apart, and left out of unique clicks and the action rate."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from mailer.digests import operations
from mailer.sends import operations as send_operations
from mailer.links.models import Click, Link
from mailer.links import queries, scanners, tokens
from mailer.links.queries import OPEN
from tests import factories

PHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
         "Version/17.0 Mobile/15E148 Safari/604.1")


@pytest.fixture
def sent(app, session, frozen_clock):
    """A queued digest of the fixed articles to two readers: (send id, its link ids, alex, sam)."""
    factories.fixed_articles(session)
    alex = factories.subscriber(session, "alex@example.org")
    sam = factories.subscriber(session, "sam@example.org")
    send = operations.compose_next(session)
    send_operations.queue(session, send)
    session.commit()
    links = list(session.scalars(select(Link.id).where(Link.send_id == send.id, Link.kind != OPEN).order_by(Link.id)))
    ids = (send.id, links, alex.id, sam.id)
    session.remove()
    return ids


def _follow(client, send_id, link_id, subscriber_id, agent=PHONE):
    response = client.get(f"/l/{tokens.make(send_id, link_id, subscriber_id)}", headers={"User-Agent": agent})
    assert response.status_code == 302


def test_every_link_of_one_mail_within_seconds_is_a_scanner(client, session, sent, frozen_clock):
    send_id, links, alex, sam = sent
    assert len(links) >= 3
    for link_id in links:  # a mail filter opens each link of alex's copy, a second apart, as a browser
        _follow(client, send_id, link_id, alex)
        frozen_clock.advance(timedelta(seconds=1))
    petition = session.scalar(select(Link.id).where(Link.send_id == send_id, Link.url == factories.PETITION_URL))
    frozen_clock.advance(timedelta(minutes=30))
    _follow(client, send_id, petition, sam)  # sam reads, and signs

    session.remove()
    flags = [c.is_scanner for c in session.scalars(select(Click).order_by(Click.id))]
    assert flags == [True] * len(links) + [False]
    assert queries.unique_clickers(session, send_id) == 1
    assert queries.action_clickers(session, send_id) == 1
    assert queries.clicks_for_send(session, send_id) == 1
    assert queries.scanner_clicks(session, send_id) == len(links)
    row = next(link for link in queries.clicks_per_link(session, send_id) if link.link_id == petition)
    assert (row.clicks, row.unique_clickers, row.scanner_clicks) == (1, 1, 1)


def test_a_reader_who_clicks_two_links_minutes_apart_counts(client, session, sent, frozen_clock):
    send_id, links, alex, _ = sent
    _follow(client, send_id, links[0], alex)
    frozen_clock.advance(timedelta(seconds=scanners.BURST_WINDOW.total_seconds() + 1))
    _follow(client, send_id, links[1], alex)
    frozen_clock.advance(timedelta(seconds=2))
    _follow(client, send_id, links[1], alex)  # the same link again: still one reader's two clicks
    session.remove()
    assert [c.is_scanner for c in session.scalars(select(Click))] == [False, False, False]
    assert queries.unique_clickers(session, send_id) == 1 and queries.scanner_clicks(session, send_id) == 0


@pytest.mark.parametrize("agent", [
    "",  # every browser names itself
    "Mozilla/5.0 (compatible; Mimecast URL Protect)",
    "Barracuda Sentinel (EE)",
    "python-requests/2.32",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0 Safari/537.36",
])
def test_a_robots_single_fetch_is_a_scanner(client, session, sent, agent):
    send_id, links, alex, _ = sent
    _follow(client, send_id, links[0], alex, agent)
    session.remove()
    assert session.scalar(select(Click.is_scanner)) is True
    assert queries.unique_clickers(session, send_id) == 0 and queries.scanner_clicks(session, send_id) == 1


def test_the_send_page_and_stats_show_scanners_apart(client, runner, session, sent, frozen_clock):
    from tests.editors import make_editor, sign_in

    send_id, links, alex, _ = sent
    for link_id in links:
        _follow(client, send_id, link_id, alex)
    make_editor()
    sign_in(client)
    page = client.get(f"/admin/sends/{send_id}").get_data(as_text=True)
    assert f"Security scanners: {len(links)} fetch(es)" in page
    assert '<span class="figure">0</span> unique clicks' in page
    result = runner.invoke(["stats", str(send_id)])
    assert f"unique clickers: 0  scanner fetches (left out): {len(links)}" in result.output
