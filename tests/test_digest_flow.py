"""From a confirmed subscriber and new articles to a delivered digest, a counted click and the archive."""

from __future__ import annotations

import re

from sqlalchemy import select

from mailer.links.models import Click, Link
from subscribers import operations as subscriber_operations
from tests import factories
from tests.contract import check_message


def test_digest_from_articles_to_click_and_archive(runner, client, session, deliver, config, frozen_clock):
    factories.topic(session, "lgbtiq-rights")
    factories.topic(session, "ukraine")
    subscriber = subscriber_operations.sign_up(session, email="reader@example.org", name="Robin",
                                               topic_slugs=["lgbtiq-rights", "ukraine"])
    subscriber_operations.confirm(session, subscriber)
    factories.fixed_articles(session)
    session.commit()
    deliver()  # the confirmation and welcome mail go first

    result = runner.invoke(["digests", "compose", "--send-now"])
    assert result.exit_code == 0, result.output
    assert "queued to 1 recipient(s)" in result.output

    digest = deliver()[-1]
    assert str(digest["Subject"]).startswith("Accidentally Alex update: Two Dead And At Least 40 Detained")
    parts = check_message(digest, postal_address=config["site"]["postal_address"])
    assert "Climate March" not in parts["html"]  # not a topic Robin follows
    tracked = re.search(r'<a [^>]*href="https://news.example.org(/l/[^"]+)"[^>]*>Sign the petition for Russia',
                        parts["html"]).group(1)

    response = client.get(tracked)
    assert response.status_code == 302
    assert response.headers["Location"] == factories.PETITION_URL
    click = session.scalar(select(Click))
    assert click.subscriber_id == subscriber.id
    assert session.get(Link, click.link_id).kind == "petition"

    archive = client.get("/archive/").get_data(as_text=True)
    assert "Two Dead And At Least 40 Detained" in archive
    web_version = re.search(r'href="(/archive/[^"]+)"', archive).group(1)
    assert f"https://news.example.org{web_version}" in parts["text"]
    assert client.get(web_version).status_code == 200
