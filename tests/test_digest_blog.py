"""A digest worth opening: issue heading with the date, an image (with words) for every article that has one,
whole posts for feeds that ask for them, dark-mode hints, a preheader no client shows in the body, and a
welcome mail that says what comes and links to the archive. Composition is pure; the feed parts run
against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone

import pytest
from sqlalchemy import select

from mailer import emails
from mailer.articles.models import Article
from mailer.articles import queries
from mailer.digests.compose import ArticleView, Placeholders, compose_digest, text_of
from mailer.feeds.models import Feed
from subscribers import operations as subscriber_operations
from tests.contract import check_message
from tests.test_digest_compose import make_config, placeholders, settings, views  # noqa: F401  (a fixture)
from tests.test_feed_actions import BLOG, CHECHNYA, SAFE_ROUTES, atom, entry, poll
from tests.test_feeds import add, feed_server, static  # noqa: F401  (a fixture)

POST = ('<h2>What the bill does</h2><p>It ends the last <em>safe</em> routes. See '
        '<a href="https://bills.example.org/b1">the bill</a> &amp; <a href="https://x.example.org/">https://x.example.org/</a>.</p>'
        '<ul><li>First</li><li>Second</li></ul><p><img src="https://img.example.org/a.jpg" alt="A vote"></p>')


def test_the_heading_names_the_issue_and_its_date(frozen_clock, placeholders):
    parts = compose_digest(views(placeholders), frozenset(), settings(
        placeholders, issue_number=12, issued_at=datetime(2026, 11, 23, 23, 30, tzinfo=timezone.utc)))
    assert '<p class="issue"' in parts.html and "Issue 12 · 23 November 2026" in parts.html
    assert "Accidentally Alex · Issue 12 · 23 November 2026" in parts.text
    # The date is the schedule's day, not UTC's: 23:30 UTC is already the 24th in Tokyo.
    tokyo = compose_digest(views(placeholders), frozenset(), settings(
        placeholders, make_config(scheduler={"timezone": "Asia/Tokyo"}), issue_number=12,
        issued_at=datetime(2026, 11, 23, 23, 30, tzinfo=timezone.utc)))
    assert "Issue 12 · 24 November 2026" in tokyo.html
    # Without either (a preview of no send), no empty heading.
    assert 'class="issue"' not in compose_digest(views(placeholders), frozenset(), settings(placeholders)).html


def test_every_article_with_an_image_shows_it_with_words(frozen_clock, placeholders):
    lead, second, third = views(placeholders)
    second = dataclasses.replace(second, image_url="https://img.example.org/lviv.jpg",
                                 image_alt="A shelter in Lviv under snow")
    parts = compose_digest([lead, second, third], frozenset(), settings(placeholders))
    assert f'<img src="{lead.image_url}" alt="{lead.title}"' in parts.html  # no alt from the feed: the title
    assert '<img src="https://img.example.org/lviv.jpg" alt="A shelter in Lviv under snow"' in parts.html
    assert 'alt=""' not in parts.html  # the open pixel is off here; every picture says something


def test_a_full_content_article_carries_its_whole_post(frozen_clock, placeholders):
    lead, second, _ = views(placeholders)
    second = dataclasses.replace(second, body_html=POST, is_full=True)
    parts = compose_digest([lead, second], frozenset(), settings(placeholders))
    assert '<div class="post"' in parts.html and "<em>safe</em>" in parts.html
    assert second.summary not in parts.html  # the post, not its summary
    assert lead.summary in parts.html  # a summary article stays a summary
    assert ("What the bill does\n\nIt ends the last safe routes. See the bill\n(https://bills.example.org/b1) & "
            "https://x.example.org/.\n\n- First\n\n- Second\n\nRead more:") in parts.text
    assert "<" not in text_of(POST)


def test_mail_has_dark_mode_hints_and_a_hidden_preheader_with_a_spacer(frozen_clock, placeholders):
    html = compose_digest(views(placeholders), frozenset(), settings(placeholders)).html
    assert '<meta name="color-scheme" content="light dark">' in html
    assert '<meta name="supported-color-schemes" content="light dark">' in html
    assert "@media (prefers-color-scheme: dark)" in html
    preheader = html.split('<div class="preheader"', 1)[1].split("</div>", 1)[0]
    for hidden in ("display: none", "mso-hide: all", "max-height: 0", "opacity: 0", "overflow: hidden"):
        assert hidden in preheader
    assert preheader.count("\u034f\u200c&nbsp;") >= 40  # the usual spacer: the body stays out of the preview
    assert "Also: Winter Aid For Refugees From Ukraine" in preheader


def test_a_feed_added_for_full_posts_and_its_image_words(runner, session, feed_server, config):
    feed_server.routes["/feed.atom"] = static(BLOG)
    result = runner.invoke(["feeds", "add", feed_server.url("/feed.atom"), "--content", "full"])
    assert result.exit_code == 0 and "digests carry: full" in result.output
    assert session.scalar(select(Feed.full_content)) is True
    assert "full posts" in runner.invoke(["feeds", "list"]).output
    bad = runner.invoke(["feeds", "add", feed_server.url("/x.atom"), "--content", "everything"])
    assert bad.exit_code == 2 and "'everything' is not one of 'summary', 'full'" in bad.output
    poll(runner)
    images = {a.title: (a.image_url, a.image_alt) for a in session.scalars(select(Article))}
    # The picture in the post's body, with the body's words for it; a Media RSS thumbnail has none.
    assert images[CHECHNYA] == ("https://accidentallyalex.example/images/argun.jpg",
                                "Police station in Argun, Chechnya")
    assert images[SAFE_ROUTES] == ("https://accidentallyalex.example/images/vote.jpg", "")

    # What composing reads: these articles' feed sends whole posts; another feed's article does not.
    feed_server.routes["/summary.atom"] = static(atom(entry("Short one", "<p>Only a summary.</p>", guid="urn:x:s")))
    add(runner, feed_server.url("/summary.atom"))
    poll(runner)
    ids = {a.title: a.id for a in session.scalars(select(Article))}
    assert queries.full_content_ids(session, list(ids.values())) == {ids[CHECHNYA], ids[SAFE_ROUTES]}
    assert queries.full_content_ids(session, []) == set()
    # The digest of them as it goes out: the whole post, the feed's words for its image, the issue heading.
    import email as email_module
    import email.policy

    from mailer import db
    from tests import factories

    factories.subscriber(session, "reader@example.org")
    session.commit()
    db.session.remove()
    assert "queued to 1 recipient(s)" in runner.invoke(["digests", "compose", "--send-now"]).output
    db.session.remove()
    [envelope] = factories.deliver(config)
    message = email_module.message_from_bytes(envelope.content, policy=email.policy.default)
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    assert 'alt="Police station in Argun, Chechnya"' in html
    assert html.count("images/argun.jpg") == 1  # the whole post holds its picture: not shown twice
    assert "This follows the purge of 2017" in html and "This follows the purge of 2017" in text
    assert "Issue 1 · " in html and "Issue 1 · " in text
    assert "Only a summary." in html  # the other feed's article: its summary


def test_welcome_mail_says_what_comes_and_links_to_the_archive(session, deliver, config):
    reader = subscriber_operations.sign_up(session, email="reader@example.org", name="Robin", topic_slugs=[])
    subscriber_operations.confirm(session, reader)
    session.commit()
    welcome = deliver()[-1]
    parts = check_message(welcome, postal_address=config["site"]["postal_address"])
    assert "What you will get" in parts["html"] and "What you will get" in parts["text"]
    assert "urgent alert" in parts["text"] and "A digest of the new articles on every topic" in parts["text"]
    assert 'href="https://news.example.org/archive/"' in parts["html"]
    assert "https://news.example.org/archive/" in parts["text"]


def test_welcome_mail_says_when_the_next_scheduled_digest_comes(session, deliver, frozen_clock):
    from zoneinfo import ZoneInfo

    from mailer.digests import schedules

    schedules.add(session, "0 9 * * MON", "Europe/London")
    reader = subscriber_operations.sign_up(session, email="reader@example.org", topic_slugs=[])
    subscriber_operations.confirm(session, reader)
    session.commit()
    text = deliver()[-1].get_body(("plain",)).get_content()
    monday = schedules.all_schedules(session)[0].next_run_at.astimezone(ZoneInfo("Europe/London"))
    assert f"on a schedule: the next one Monday {monday.day} {monday:%B} at 09:00 (Europe/London)" in text


def test_welcome_mail_names_the_schedule_when_it_is_given(config):
    rendered = emails.render("welcome", config, name="", topics=["Ukraine"], preferences_url="https://p",
                             unsubscribe_url="https://u", digest_schedule="every Monday morning")
    assert "A digest of the new articles on Ukraine, every Monday morning." in rendered.text


@pytest.mark.browser
def test_in_dark_mode_the_digest_turns_dark_and_stays_readable(chromium, frozen_clock, placeholders):
    from mailer.digests.compose import personalise
    from mailer.links.views import PIXEL
    from tests.test_digest_compose import fill

    html = personalise(compose_digest(views(placeholders), frozenset(), settings(placeholders)), placeholders,
                       fill).html
    colours = {}
    for scheme in ("light", "dark"):
        page = chromium.new_page(color_scheme=scheme)
        page.route("**/*", lambda route: route.fulfill(status=200, body=PIXEL, content_type="image/gif"))
        page.set_content(html)
        colours[scheme] = page.evaluate("""() => ({
            container: getComputedStyle(document.querySelector('.container')).backgroundColor,
            heading: getComputedStyle(document.querySelector('h1 a')).color,
            button: getComputedStyle(document.querySelector('a.action')).color,
            buttonBackground: getComputedStyle(document.querySelector('a.action')).backgroundColor,
            preheaderShown: document.querySelector('.preheader').getBoundingClientRect().height > 0,
        })""")
        page.close()
    assert colours["light"]["container"] == "rgb(255, 255, 255)" and colours["light"]["heading"] == "rgb(29, 29, 31)"
    assert colours["dark"]["container"] == "rgb(28, 28, 33)" and colours["dark"]["heading"] == "rgb(232, 232, 236)"
    for scheme in ("light", "dark"):  # white on the red button either way; the preheader never shows
        assert colours[scheme]["button"] == "rgb(255, 255, 255)"
        assert colours[scheme]["buttonBackground"] == "rgb(179, 38, 30)"
        assert colours[scheme]["preheaderShown"] is False
