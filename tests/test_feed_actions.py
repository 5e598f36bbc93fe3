"""Calls to act from a feed: the seed articles served as Atom from a real HTTP server on 127.0.0.1 (as the blog
publishes them) become action links, then tracked buttons in the digest; hostile and oversized entries are
bounded; an editor's hand-made actions outlive later polls; `--actions off` reads none."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from mailer.articles import operations as article_operations
from mailer.articles.actions import MAX_ACTIONS, actions_from_html
from mailer.articles.models import ActionKind, Article
from mailer.articles.operations import ActionDraft
from mailer.feeds.models import Feed
from subscribers import operations as subscriber_operations
from tests.contract import check_message
from tests.editors import make_editor, post_form, sign_in
from tests.test_feeds import add, feed_server, static  # noqa: F401  (feed_server is a fixture)

BLOG = (Path(__file__).parent / "fixtures" / "blog.atom").read_bytes()
CHECHNYA = "Two Dead And At Least 40 Detained As Chechen LGBT Purge Resumes"
SAFE_ROUTES = "Write to your MP about safe routes for refugees"
PETITION = "https://www.change.org/p/vladimir-putin-stop-the-chechen-anti-gay-purge"

SEED_ACTIONS = {
    CHECHNYA: [
        ("Sign the petition for Russia to intervene", PETITION, ActionKind.petition),
        ("Donate to The Russian LGBT Network", "https://lgbtnet.org/en/donate", ActionKind.donate),
        ("Donate here to support the work of Rainbow Railroad, who get people out",
         "https://www.rainbowrailroad.org/donate", ActionKind.donate),
    ],
    SAFE_ROUTES: [
        ("Write to your MP", "https://www.writetothem.com/", ActionKind.letter),
        ("Join the vigil on Saturday", "https://accidentallyalex.example/vigil", ActionKind.event),
        ("Call your MP's office", "https://members.parliament.uk/FindYourMP", ActionKind.call),
        # The blog's own donation page is a call to act whatever its link says ("keep it going").
        ("Donate", "https://accidentallyalex.example/donate/", ActionKind.donate),
    ],
}


def entry(title: str, content: str, guid: str = "tag:blog.example.org,2026:x") -> str:
    return f"""<entry><title>{title}</title><id>{guid}</id>
      <link rel="alternate" href="https://blog.example.org/2026/11/{guid.rpartition(':')[2]}"/><updated>2026-11-22T08:00:00Z</updated>
      <content type="html"><![CDATA[{content}]]></content></entry>"""


def atom(*entries: str) -> bytes:
    return ("""<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">
      <title>Blog</title><id>tag:blog.example.org,2026:feed</id><updated>2026-11-22T10:00:00Z</updated>"""
            + "".join(entries) + "</feed>").encode()


def actions_of(session, title: str) -> list[tuple[str, str, ActionKind]]:
    article = session.scalar(select(Article).where(Article.title == title))
    return [(a.label, a.url, a.kind) for a in article.actions]


def poll(runner) -> str:
    result = runner.invoke(["feeds", "poll"])
    assert result.exit_code == 0, result.output
    return result.output


# ---- reading calls to act from HTML (pure) -------------------------------------------------------

def test_link_text_paragraph_and_platform_make_calls_to_act_in_the_posts_order():
    html = """<p>Background: <a href="https://news.example.org/a">a report</a>.</p>
      <p><a href="https://example.org/p">Sign the petition</a></p>
      <p>Support the shelter: <a href="https://shelter.example.org/">https://shelter.example.org/</a></p>
      <p>Add your voice to <a href="https://act.38degrees.org.uk/p/x">this petition</a>.</p>
      <p>Act now and <a href="https://example.org/later">read this</a>, then
         <a href="https://example.org/second">this second link</a> too.</p>"""
    assert actions_from_html(html) == [
        ActionDraft("Sign the petition", "https://example.org/p"),
        ActionDraft("Support the shelter", "https://shelter.example.org/"),
        ActionDraft("Sign the petition", "https://act.38degrees.org.uk/p/x"),
        # The paragraph's call to act belongs to its first link only.
        ActionDraft("Act now and read this, then this second link too", "https://example.org/later"),
    ]


@pytest.mark.parametrize("href", ["javascript:alert(document.cookie)", " JavaScript:alert(1)",
                                  "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
                                  "vbscript:msgbox", "mailto:donate@example.org", "/donate", "",
                                  "https://[broken/donate", "http://"])
def test_a_donate_link_that_is_no_web_address_is_dropped(href):
    html = f'<p><a href="{href}">Donate now</a></p><p><a href="https://example.org/ok">Donate here</a></p>'
    assert actions_from_html(html) == [ActionDraft("Donate here", "https://example.org/ok")]


def test_the_same_action_twice_is_one_button_and_500_links_are_bounded():
    twice = ('<p><a href="https://example.org/petition">Sign the petition</a></p>'
             '<p><a href="https://EXAMPLE.org/petition#end">Sign it here too</a></p>')
    assert actions_from_html(twice) == [ActionDraft("Sign the petition", "https://example.org/petition")]

    many = "".join(f'<p><a href="https://example.org/p/{n}">Sign petition {n}</a></p>' for n in range(500))
    found = actions_from_html(many)
    assert len(found) == MAX_ACTIONS
    assert [a.url for a in found] == [f"https://example.org/p/{n}" for n in range(MAX_ACTIONS)]


def test_whatever_the_post_holds_buttons_are_web_addresses_once_each_in_order_and_few():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    words = st.sampled_from(["Sign the petition", "Donate", "Write to your MP", "read more", "here", "Help",
                             "Join us", "the report", "", "Act now", "Call your MP:"])
    hrefs = st.sampled_from(["https://example.org/a", "https://EXAMPLE.org/a#x", "http://example.org/b",
                             "javascript:alert(1)", "data:text/html,x", "mailto:x@example.org", "/donate",
                             "https://www.change.org/p/c", "https://donorbox.org/d", "ftp://example.org/f", ""])
    blocks = st.lists(st.tuples(st.sampled_from(["p", "li", "h2", "td"]), words, hrefs, words), max_size=40)

    @settings(max_examples=200, deadline=None)
    @given(blocks)
    def check(parts):
        html = "".join(f'<{tag}>{before} <a href="{href}">{text}</a></{tag}>' for tag, before, href, text in parts)
        found = actions_from_html(html)
        urls = [a.url for a in found]
        assert all(url.startswith(("http://", "https://")) for url in urls)
        assert len(found) <= MAX_ACTIONS and all(a.label.strip() for a in found)
        identities = [url.split("#")[0].lower() for url in urls]
        assert len(set(identities)) == len(identities)
        # In the post's order: each button's link comes after the previous button's.
        position = -1
        for url in urls:
            position = next((i for i in range(position + 1, len(parts)) if parts[i][2] == url), None)
            assert position is not None, f"{url} is out of the post's order in {urls}"

    check()


# ---- from a feed ---------------------------------------------------------------------------------

def test_seed_articles_as_the_blog_publishes_them_carry_their_calls_to_act(runner, session, feed_server):
    feed_server.routes["/feed.atom"] = static(BLOG)
    add(runner, feed_server.url("/feed.atom"))
    assert "2 new" in poll(runner)
    for title, expected in SEED_ACTIONS.items():
        assert actions_of(session, title) == expected
    # Polling the same document again changes nothing.
    session.remove()
    assert "0 new, 0 updated, 2 unchanged" in poll(runner)


def test_bad_calls_to_act_in_a_feed_are_dropped_and_bounded(runner, session, feed_server):
    hostile = entry("Hostile donate links", """
        <p><a href="javascript:alert(document.cookie)">Donate now</a></p>
        <p><a href="data:text/html;base64,PHNjcmlwdD4=">Donate here</a></p>
        <p><a href="https://example.org/donate">Donate to the shelter</a></p>
        <p><a href="https://example.org/donate">Donate to the shelter</a> (again)</p>""", guid="urn:x:hostile")
    flood = entry("Five hundred links", "".join(
        f'<p><a href="https://example.org/p/{n}">Sign petition {n}</a></p>' for n in range(500)), guid="urn:x:flood")
    feed_server.routes["/feed.atom"] = static(atom(hostile, flood))
    add(runner, feed_server.url("/feed.atom"))
    assert "2 new" in poll(runner)
    assert actions_of(session, "Hostile donate links") == [
        ("Donate to the shelter", "https://example.org/donate", ActionKind.donate)]
    flooded = actions_of(session, "Five hundred links")
    assert len(flooded) == MAX_ACTIONS and flooded[0][1] == "https://example.org/p/0"


def test_an_updated_entry_updates_its_actions_unless_an_editor_changed_them(runner, session, feed_server):
    first = entry("Vigil", '<p><a href="https://example.org/vigil">Join the vigil</a></p>')
    feed_server.routes["/feed.atom"] = static(atom(first))
    add(runner, feed_server.url("/feed.atom"))
    poll(runner)
    assert actions_of(session, "Vigil") == [("Join the vigil", "https://example.org/vigil", ActionKind.event)]

    # The blog adds a petition: the next poll carries it.
    second = entry("Vigil", '<p><a href="https://example.org/vigil">Join the vigil</a></p>'
                            '<p><a href="https://www.change.org/p/x">Sign the petition</a></p>')
    feed_server.routes["/feed.atom"] = static(atom(second))
    session.remove()
    assert "1 updated" in poll(runner)
    assert [a[0] for a in actions_of(session, "Vigil")] == ["Join the vigil", "Sign the petition"]

    # An editor rewrites the buttons: later polls, even of a changed entry, keep the editor's.
    article = session.scalar(select(Article).where(Article.title == "Vigil"))
    article_operations.edit(session, article, title="Vigil", body=article.body_source,
                            actions=[ActionDraft("Donate to the organisers", "https://example.org/give")])
    session.commit()
    assert session.scalar(select(Article.actions_edited)) is True
    third = entry("Vigil", '<p>Moved to Sunday.</p><p><a href="https://example.org/vigil2">Join the vigil</a></p>')
    feed_server.routes["/feed.atom"] = static(atom(third))
    session.remove()
    assert "1 updated" in poll(runner)  # the body still follows the feed
    assert actions_of(session, "Vigil") == [
        ("Donate to the organisers", "https://example.org/give", ActionKind.donate)]
    assert "Moved to Sunday" in session.scalar(select(Article.body_html))


def test_the_workspace_article_form_marks_actions_as_the_editors(runner, session, client, feed_server):
    feed_server.routes["/feed.atom"] = static(atom(entry("Vigil", '<p><a href="https://example.org/v">Join the vigil</a></p>')))
    add(runner, feed_server.url("/feed.atom"))
    poll(runner)
    article_id = session.scalar(select(Article.id))
    make_editor()
    sign_in(client)
    page = f"/admin/articles/{article_id}"
    # Saving without touching the buttons leaves them the feed's.
    response = post_form(client, page, page, title="Vigil", body="Body", **{
        "action-0-label": "Join the vigil", "action-0-url": "https://example.org/v", "action-0-kind": "event",
        "action-0-position": "1"})
    assert response.status_code == 302
    session.remove()
    assert session.scalar(select(Article.actions_edited)) is False
    response = post_form(client, page, page, title="Vigil", body="Body", **{
        "action-0-label": "Call the mayor", "action-0-url": "https://example.org/mayor", "action-0-kind": "",
        "action-0-position": "1"})
    assert response.status_code == 302
    session.remove()
    assert session.scalar(select(Article.actions_edited)) is True
    poll(runner)
    assert actions_of(session, "Vigil") == [("Call the mayor", "https://example.org/mayor", ActionKind.call)]


def test_a_file_import_is_an_editors_word_over_the_feed(runner, session, feed_server, tmp_path):
    feed_server.routes["/feed.atom"] = static(BLOG)
    add(runner, feed_server.url("/feed.atom"))
    poll(runner)
    post = tmp_path / "chechnya.md"
    post.write_text(f"---\ntitle: {CHECHNYA}\nurl: https://accidentallyalex.example/2026/11/chechen-lgbt-purge-resumes"
                    "\nactions:\n  - label: Sign the petition\n    url: https://www.change.org/p/other\n---\nBody.\n")
    result = runner.invoke(["articles", "import", str(post)])
    assert result.exit_code == 0, result.output
    session.remove()
    feed_server.routes["/feed.atom"] = static(BLOG.replace(b"At least 40 people", b"At least 41 people"))
    poll(runner)
    assert actions_of(session, CHECHNYA) == [("Sign the petition", "https://www.change.org/p/other",
                                              ActionKind.petition)]


def test_a_feed_added_with_actions_off_reads_none(runner, session, feed_server):
    feed_server.routes["/feed.atom"] = static(BLOG)
    result = runner.invoke(["feeds", "add", feed_server.url("/feed.atom"), "--actions", "off"])
    assert result.exit_code == 0 and "calls to act: off" in result.output
    assert session.scalar(select(Feed.reads_actions)) is False
    poll(runner)
    assert actions_of(session, CHECHNYA) == [] and actions_of(session, SAFE_ROUTES) == []
    assert "calls to act: off" in runner.invoke(["feeds", "list"]).output
    bad = runner.invoke(["feeds", "add", feed_server.url("/other.atom"), "--actions", "maybe"])
    assert bad.exit_code == 2 and "'maybe' is not one of 'on', 'off'" in bad.output


# ---- end to end: the digest made from the blog's feed ---------------------------------------------

def test_every_call_to_act_in_the_blogs_feed_is_a_tracked_button_in_the_digest(
        runner, client, session, deliver, config, frozen_clock, feed_server):
    frozen_clock.advance(timedelta(days=30))  # after the posts' dates
    feed_server.routes["/feed.atom"] = static(BLOG)
    add(runner, feed_server.url("/feed.atom"))
    poll(runner)
    reader = subscriber_operations.sign_up(session, email="reader@example.org", name="Robin", topic_slugs=[])
    subscriber_operations.confirm(session, reader)
    session.commit()
    deliver()  # confirmation and welcome first

    result = runner.invoke(["digests", "compose", "--send-now"])
    assert result.exit_code == 0, result.output
    parts = check_message(deliver()[-1], postal_address=config["site"]["postal_address"])
    html = parts["html"]
    for title, actions in SEED_ACTIONS.items():
        for label, url, kind in actions:
            shown = re.escape(label).replace("'", "(?:&#39;|&#x27;|')")
            button = re.search(rf'<a class="action action-{kind.value}" href="https://news\.example\.org(/l/[^"]+)"'
                               rf'[^>]*>{shown}</a>', html)
            assert button, f"no tracked button for {label!r} in the digest"
            response = client.get(button.group(1))
            assert (response.status_code, response.headers["Location"]) == (302, url)
            assert f"{label}: https://news.example.org/l/" in parts["text"]
    # No button goes anywhere but through /l/: the post's own URLs are sealed in the tokens.
    assert PETITION not in html and "lgbtnet.org" not in html


def test_the_workspace_feed_page_sets_both_options_audited_and_refuses_others(runner, session, client,
                                                                               feed_server):
    from mailer.editors.models import AuditEvent

    feed_server.routes["/feed.atom"] = static(BLOG)
    add(runner, feed_server.url("/feed.atom"))
    make_editor()
    sign_in(client)
    page = f"/admin/feeds/{session.scalar(select(Feed.id))}"
    shown = client.get(page).get_data(as_text=True)
    assert 'id="actions-on" name="actions" value="on" checked' in shown
    assert 'id="content-summary" name="content" value="summary" checked' in shown

    response = post_form(client, page, f"{page}/options", actions="off", content="full")
    assert response.status_code == 302
    session.remove()
    feed = session.scalar(select(Feed))
    assert (feed.reads_actions, feed.full_content) == (False, True)
    assert session.scalar(select(AuditEvent.detail).where(AuditEvent.action == "feed.options")) == \
        "calls to act off, digests carry full"
    poll(runner)
    assert actions_of(session, CHECHNYA) == []

    refused = post_form(client, page, f"{page}/options", actions="sometimes", content="full")
    assert refused.status_code == 400 and "Choose one of the offered options." in refused.get_data(as_text=True)
    no_token = client.post(f"{page}/options", data={"actions": "on", "content": "summary"})
    assert no_token.status_code == 400
    session.remove()
    assert session.scalar(select(Feed.reads_actions)) is False


def test_the_workspace_hands_the_buttons_back_to_the_feed(runner, session, client, feed_server):
    def conditional(handler):
        if handler.headers.get("If-None-Match") == '"v1"':
            handler.send_response(304)
            handler.end_headers()
        else:
            static(BLOG, headers={"ETag": '"v1"'})(handler)

    feed_server.routes["/feed.atom"] = conditional
    add(runner, feed_server.url("/feed.atom"))
    poll(runner)
    article = session.scalar(select(Article).where(Article.title == CHECHNYA))
    article_operations.edit(session, article, title=CHECHNYA, body=article.body_source,
                            actions=[ActionDraft("Call the embassy", "https://example.org/embassy")])
    session.commit()
    make_editor()
    sign_in(client)
    page = f"/admin/articles/{article.id}"
    shown = client.get(page).get_data(as_text=True)
    assert "These links were changed by an editor" in shown
    response = post_form(client, page, page, title=CHECHNYA, body=article.body_source, canonical_url="",
                         image_url="", published_at="", feed_actions="yes", **{
                             "action-0-label": "Call the embassy", "action-0-url": "https://example.org/embassy",
                             "action-0-kind": "call", "action-0-position": "1"})
    assert response.status_code == 302
    session.remove()
    assert session.scalar(select(Article.actions_edited).where(Article.title == CHECHNYA)) is False
    # The feed has not changed (it would answer 304), yet its next poll reads it whole and the links return.
    assert "not modified" not in poll(runner)
    assert actions_of(session, CHECHNYA) == SEED_ACTIONS[CHECHNYA]


def test_an_article_written_in_the_workspace_keeps_its_buttons_when_the_feed_brings_its_url(
        runner, session, feed_server):
    article_operations.create_in_workspace(
        session, title=CHECHNYA, canonical_url="https://accidentallyalex.example/2026/11/chechen-lgbt-purge-resumes",
        body="Written first in the workspace.", actions=[ActionDraft("Call the embassy", "https://example.org/e")])
    session.commit()
    feed_server.routes["/feed.atom"] = static(BLOG)
    add(runner, feed_server.url("/feed.atom"))
    assert "1 new, 1 updated" in poll(runner)  # the same post: found by its URL, its text now the feed's
    assert actions_of(session, CHECHNYA) == [("Call the embassy", "https://example.org/e", ActionKind.call)]
