"""A hostile reader's attempts: token confusion, header injection, hostile feeds and files, leaky headers.

Each test is an attack that once worked, or one we made sure does not; the docstring says which.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from itertools import takewhile
from pathlib import Path

import pytest
from sqlalchemy import select

from subscribers import operations as subscriber_operations
from subscribers import tokens
from subscribers.models import Subscriber, SubscriberState
from tests import factories
from tests.contract import check_message
from tests.test_bad_input import page_text
from tests.test_feeds import feed_server, static  # noqa: F401 (feed_server is a fixture)


def test_an_erased_subscribers_old_link_never_opens_the_next_subscribers_page(client, session):
    """SQLite hands out the highest id again once its row is deleted: without AUTOINCREMENT, the
    preferences link from an erased person's old mail opened the page (address, data download, erase)
    of whoever signed up next."""
    erased = factories.subscriber(session, "erased@example.org")
    old_link = tokens.preferences_token(erased.id, erased.token_version)
    subscriber_operations.erase(session, erased)
    session.commit()
    newcomer = factories.subscriber(session, "newcomer@example.org")
    session.commit()
    newcomer_id = newcomer.id
    session.remove()

    for path in (f"/preferences/{old_link}", f"/preferences/{old_link}/data"):
        response = client.get(path)
        assert response.status_code == 400, path
        assert "newcomer@example.org" not in response.get_data(as_text=True)
    assert "we hold no subscription for it" in page_text(client.get(f"/preferences/{old_link}"))
    assert session.scalar(select(Subscriber.email).where(Subscriber.id == newcomer_id)) == "newcomer@example.org"


# ---- control characters from feeds and files -------------------------------------------------------

HOSTILE_RSS = b"""<?xml version="1.0"?>
<rss version="2.0"><channel><title>Hostile&#27;]0;owned&#7;</title>
<item><title>Breaking&#0; &#27;[2J&#27;[31mnews&#7; from &#27;]8;;https://evil.example&#27;\\here</title>
<link>https://blog.example/breaking</link><guid>https://blog.example/breaking</guid>
<description>Body&#0; with &#27;[1mescapes&#27;[0m and a bell&#7;.</description>
<author>eve@example.org (Eve&#27;[8m)</author><category>Hum&#0;an&#27; Rights</category>
<pubDate>Sat, 21 Nov 2026 09:00:00 GMT</pubDate></item>
</channel></rss>"""


def _has_controls(text: str) -> bool:
    return any(ord(c) < 32 and c not in "\t\n\r" or ord(c) == 127 for c in text)


def test_control_characters_in_a_feed_reach_no_header_terminal_or_feed(runner, client, session, config,
                                                                       deliver, feed_server, frozen_clock):
    """feedparser's lenient parser turns `&#0;` and `&#27;` into NUL and ESC. NUL made PostgreSQL refuse
    the whole feed; ESC sequences went raw into Subject headers, `articles list` (a terminal: they can
    retitle it, hide text or forge links) and /archive.atom (XML 1.0 forbids them)."""
    factories.subscriber(session, "reader@example.org")
    session.commit()
    feed_server.routes["/rss"] = static(HOSTILE_RSS, content_type="application/rss+xml")
    assert runner.invoke(["feeds", "add", feed_server.url("/rss")]).exit_code == 0
    polled = runner.invoke(["feeds", "poll"])
    assert polled.exit_code == 0, polled.output
    assert "1 new" in polled.output

    listed = runner.invoke(["articles", "list"])
    assert "Breaking" in listed.output and not _has_controls(listed.output)
    assert not _has_controls(runner.invoke(["feeds", "list", "--json"]).output)
    assert not _has_controls(runner.invoke(["topics", "list"]).output)

    composed = runner.invoke(["digests", "compose", "--send-now"])
    assert composed.exit_code == 0, composed.output
    [digest] = deliver()
    check_message(digest, postal_address=config["site"]["postal_address"])
    [raw] = (Path(config["mail"]["maildir"]) / "new").iterdir()
    head = raw.read_bytes().split(b"\r\n\r\n" if b"\r\n\r\n" in raw.read_bytes() else b"\n\n")[0]
    assert not _has_controls(head.decode("ascii"))
    assert "Breaking" in str(digest["Subject"]) and not _has_controls(str(digest["Subject"]))
    for part in digest.walk():
        if part.get_content_maintype() == "text":
            assert not _has_controls(part.get_content().replace("\x00", "\x01")), part.get_content_type()

    atom = client.get("/archive.atom")
    ET.fromstring(atom.get_data())  # well-formed XML
    archive = client.get("/archive/").get_data(as_text=True)
    assert "Breaking" in archive and not _has_controls(archive)


def test_control_characters_in_front_matter_are_dropped(runner, session, tmp_path):
    """YAML double-quoted strings spell any control character ("\\0", "\\e"); the importer refuses raw
    NUL bytes in a file but took them through front matter."""
    path = tmp_path / "hostile.md"
    path.write_text('---\ntitle: "Two\\0 dead\\e[2J\\a"\nauthor: "Eve\\e[8m"\nsummary: "Sum\\0mary"\n---\n'
                    "Body text.\n", encoding="utf-8")
    result = runner.invoke(["articles", "import", str(path)])
    assert result.exit_code == 0, result.output
    listed = runner.invoke(["articles", "list", "--json"]).output
    assert "Two dead" in listed and not _has_controls(listed.replace("\\u", "")) and "\\u001b" not in listed
    assert "\\u0000" not in listed


def test_a_feed_servers_error_text_reaches_the_terminal_without_escapes(runner, session, feed_server):
    """The reason phrase of an HTTP error is the server's to choose, and `feeds poll` / `feeds list`
    print it."""
    def hostile(handler):
        handler.send_response(503, "Unavailable\x1b]0;owned\x07\x1b[2J")
        handler.end_headers()

    feed_server.routes["/down"] = hostile
    assert runner.invoke(["feeds", "add", feed_server.url("/down")]).exit_code == 0
    polled = runner.invoke(["feeds", "poll"])
    assert "HTTP 503 Unavailable" in polled.output and not _has_controls(polled.output)
    listed = runner.invoke(["feeds", "list"])
    assert "HTTP 503 Unavailable" in listed.output and not _has_controls(listed.output)


def test_no_header_carries_a_control_character():
    """The last line of defence for any subject or name, whatever produced it."""
    from mailer import config as config_module
    from mailer import emails

    config = config_module.load(path=None, environ={}, overrides={"site": {"name": "Alex\x1b[8m News"}})
    rendered = emails.Rendered(subject="Two\x00 dead\x1b[2J\x07 and \u2028more", text="t", html="<p>h</p>")
    message = emails.build(config, to="reader@example.org", to_name="Robin\x1b[31m", rendered=rendered,
                           unsubscribe_url="https://news.example.org/unsubscribe/t")
    head = message.as_bytes().split(b"\r\n\r\n")[0].decode("ascii")
    assert not _has_controls(head)
    assert message["Subject"] == "Two dead [2J and more"


# ---- response headers ----------------------------------------------------------------------------

def _personal_pages(session) -> list[str]:
    subscriber = factories.subscriber(session, "reader@example.org")
    session.commit()
    manage = tokens.preferences_token(subscriber.id, subscriber.token_version)
    confirm = tokens.confirm_token(subscriber.id, subscriber.email)
    return [f"/preferences/{manage}", f"/preferences/{manage}/data", f"/preferences/{manage}/erase",
            f"/unsubscribe/{manage}", f"/confirm/{confirm}"]


def test_personal_pages_are_never_cached_and_never_leak_their_token_in_a_referer(client, session):
    """A page whose address is a key to someone's subscription must not sit in a shared cache or a
    browser's disk cache, nor travel to linked sites in the Referer header.

    Referrer-Policy is `same-origin`, not `no-referrer`: over https Flask-WTF refuses a form POST whose
    Referer is missing, so the preferences and erase forms need it sent to our own origin."""
    for path in _personal_pages(session):
        response = client.get(path)
        assert response.status_code == 200, path
        assert "no-store" in response.headers.get("Cache-Control", ""), path
        assert response.headers.get("Referrer-Policy") == "same-origin", path


def test_every_page_forbids_framing_sniffing_and_anything_but_our_own_styles(client, session):
    """Pages have no scripts: a strict CSP costs nothing and turns any XSS we missed into nothing."""
    for path in ["/subscribe", "/subscribe/thanks", "/privacy", "/archive/", "/archive.atom", "/nowhere",
                 *_personal_pages(session)]:
        response = client.get(path)
        headers = response.headers
        assert headers.get("X-Content-Type-Options") == "nosniff", path
        assert headers.get("X-Frame-Options") == "DENY", path
        policy = headers.get("Content-Security-Policy", "")
        assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy, path
        assert "script-src" not in policy and "'unsafe-inline'" not in policy, path
        if response.mimetype == "text/html":
            assert " style=" not in response.get_data(as_text=True), f"{path}: an inline style the CSP blocks"


def test_the_post_redirects_and_error_pages_carry_the_headers_too(client, session):
    response = client.post("/subscribe", data={"email": "x"})  # no CSRF token: the 400 page
    assert response.status_code == 400
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"


# ---- what the feed poller will fetch -------------------------------------------------------------

def _redirect(location: str):
    def route(handler):
        handler.send_response(302)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()
    return route


@pytest.fixture
def listener():
    """A TCP port that records whether anyone connected to it (a stand-in for an internal service)."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.5)
    yield server
    server.close()


def _was_contacted(listener) -> bool:
    try:
        connection, _ = listener.accept()
    except TimeoutError:
        return False
    connection.close()
    return True


@pytest.mark.parametrize("target", ["ftp://127.0.0.1:{port}/feed.xml", "file:///etc/passwd",
                                    "gopher://127.0.0.1:{port}/", "data:text/xml,<rss/>"])
def test_a_feed_may_redirect_only_to_http_or_https(feed_server, listener, target):
    """`feeds add` accepts only http(s) URLs, but urllib follows a redirect to ftp: too (and would try
    file: or data: with a different handler set): a feed could make the poller talk FTP to a service
    on our own network. Redirects are followed only to http and https."""
    from mailer.errors import FeedError
    from mailer.feeds import operations as feed_operations

    feed_server.routes["/moved"] = _redirect(target.format(port=listener.getsockname()[1]))
    with pytest.raises(FeedError, match="redirected to a non-http"):
        feed_operations.fetch(feed_server.url("/moved"))
    assert not _was_contacted(listener)


def test_a_redirect_to_another_http_feed_is_still_followed(feed_server):
    from mailer.feeds import operations as feed_operations

    feed_server.routes["/new"] = static(HOSTILE_RSS, content_type="application/rss+xml")
    feed_server.routes["/old"] = _redirect(feed_server.url("/new"))
    fetched = feed_operations.fetch(feed_server.url("/old"))
    assert fetched.url == feed_server.url("/new") and fetched.content == HOSTILE_RSS


def test_private_addresses_can_be_refused(runner, session, feed_server, database_url, tmp_path):
    """Off by default (a self-hoster's blog may well live on the same machine); on, a feed, or a feed's
    redirect, that leads to loopback, a private network or link-local (cloud metadata) is refused
    before a byte is sent."""
    from mailer.app import create_app
    from tests.conftest import make_config

    feed_server.routes["/rss"] = static(HOSTILE_RSS, content_type="application/rss+xml")
    strict = create_app(make_config(database_url, tmp_path, feeds={"block_private_addresses": True}))
    invoke = lambda *args: runner.invoke(list(args), obj={"app": strict})  # noqa: E731
    try:
        assert invoke("feeds", "add", feed_server.url("/rss")).exit_code == 0
        polled = invoke("feeds", "poll")
    finally:
        strict.extensions["engine"].dispose()
    assert polled.exit_code == 1
    assert "127.0.0.1 is a private address" in polled.output
    assert feed_server.requests == []

    allowed = runner.invoke(["feeds", "poll"])  # the default: loopback is fine
    assert allowed.exit_code == 0 and "1 new" in allowed.output


# ---- secrets -------------------------------------------------------------------------------------

def _defaults():
    from mailer import config as config_module

    return config_module, config_module.load(path=None, environ={})


def test_the_generated_secret_key_is_readable_by_its_owner_only(tmp_path):
    config_module, config = _defaults()
    key = config_module.secret_key(config, tmp_path / "var")
    path = tmp_path / "var" / "secret_key"
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(key) >= 40 and config_module.secret_key(config, tmp_path / "var") == key


def test_an_empty_secret_key_file_is_refused(tmp_path):
    """An empty var/secret_key (a crash between creating and writing it, a full disk) signed every
    link with the empty key, which anyone can reproduce: forged unsubscribe and preferences links."""
    from mailer.errors import ConfigError

    config_module, config = _defaults()
    (tmp_path / "secret_key").write_text("\n")
    with pytest.raises(ConfigError, match="secret_key is empty"):
        config_module.secret_key(config, tmp_path)


def test_a_secret_key_file_others_can_read_is_made_private(tmp_path):
    """A key copied into place with `cp` is usually world-readable; whoever reads it can sign links."""
    config_module, config = _defaults()
    path = tmp_path / "secret_key"
    path.write_text("k" * 64 + "\n")
    path.chmod(0o644)
    assert config_module.secret_key(config, tmp_path) == "k" * 64
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_second_process_never_reads_a_half_written_key(tmp_path, monkeypatch):
    """Two processes starting at once (`mailer serve` and a worker): the loser of the race read the
    file the winner had created but not yet written, and signed with an empty key. The key now
    appears under its name only once it is complete."""
    import os

    config_module, config = _defaults()
    seen = []
    real_link = os.link

    def link_and_peek(src, dst, *args, **kwargs):
        seen.append(Path(src).read_text())  # what the file holds when it takes its final name
        return real_link(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "link", link_and_peek)
    key = config_module.secret_key(config, tmp_path)
    assert seen == [key + "\n"]
    assert [p.name for p in tmp_path.iterdir()] == ["secret_key"]


@pytest.mark.parametrize("section, key", [("mail.smtp", "password"), ("site", "secret_key")])
def test_a_config_error_never_prints_a_secret(tmp_path, section, key):
    """`password = 12345678` in TOML is a number, and the error said so, printing the password."""
    from mailer import config as config_module
    from mailer.errors import ConfigError

    path = tmp_path / "config.toml"
    path.write_text(f"[{section}]\n{key} = 98765432123\n")
    with pytest.raises(ConfigError) as error:
        config_module.load(path=path, environ={})
    assert f"{section}.{key} must be a string" in str(error.value)
    assert "98765432123" not in str(error.value)


# ---- hostile addresses -----------------------------------------------------------------------------

@pytest.mark.parametrize("path", [
    "/preferences/%FF%FE", "/preferences/%C0%AE%C0%AE/data", "/unsubscribe/%00", "/confirm/%ED%A0%80",
    "/l/%FF", "/o/%FF", "/archive/%FF", "/archive/%00", "/archive/x%00y", "/archive/..%2F..%2Fetc%2Fpasswd", "/preferences/" + "A" * 50_000,
    "/l/" + "eyJ" * 5000, "/confirm/a.b.c.d.e", "/preferences/%0d%0aSet-Cookie:%20x=1",
])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_hostile_paths_get_a_4xx_page_and_change_nothing(client, session, path, method):
    """Non-UTF-8 bytes, NUL, overlong UTF-8, CR/LF and absurd lengths in the token part of an address."""
    from tests.test_bad_input import snapshot

    before = snapshot(session)
    response = client.open(path, method=method)
    assert 400 <= response.status_code < 500, (path, response.status_code)
    assert "Set-Cookie: x" not in str(response.headers) and "Location" not in response.headers
    assert snapshot(session) == before


# ---- script injection through article fields -----------------------------------------------------

XSS = '"><script>alert(1)</script><img src=x onerror=alert(1)>'


class _Markup:
    """Every tag and attribute of an HTML document, as a browser's tokenizer sees them."""

    def __init__(self, document: str):
        from html.parser import HTMLParser

        self.tags: list[str] = []
        self.attributes: list[tuple[str, str]] = []
        markup = self

        class Parser(HTMLParser):
            def handle_starttag(self, tag, attrs):
                markup.tags.append(tag)
                markup.attributes.extend((name, value or "") for name, value in attrs)

        Parser().feed(document)

    def dangers(self) -> list:
        urls = [v for n, v in self.attributes if n in ("href", "src", "action", "formaction")]
        return ([t for t in self.tags if t in ("script", "iframe", "object", "embed", "base", "svg")]
                + [n for n, _ in self.attributes if n.startswith("on") or n == "srcdoc"]
                + [u for u in urls if not u.startswith(("https://", "http://", "/", "mailto:"))])


def test_hostile_article_fields_stay_text_in_mail_pages_and_feed(runner, client, session, config, deliver,
                                                                 tmp_path):
    """Titles, summaries, authors, action labels, image and action URLs from a file an editor was sent:
    every one is text (or refused) in the digest mail, the archive pages and the Atom feed."""
    factories.subscriber(session, "reader@example.org")
    session.commit()
    path = tmp_path / "hostile.md"
    path.write_text(
        "---\n"
        f"title: '{XSS.replace(chr(39), chr(39) * 2)} title'\n"
        f"summary: '{XSS.replace(chr(39), chr(39) * 2)} summary'\n"
        f"author: '{XSS.replace(chr(39), chr(39) * 2)}'\n"
        "image: 'https://img.example/x.png\"onerror=\"alert(1)'\n"
        "url: 'https://blog.example/post?a=1&b=\"><script>alert(2)</script>'\n"
        "topics: ['<b>bold</b>']\n"
        "actions:\n"
        f"  - {{label: '{XSS.replace(chr(39), chr(39) * 2)}', url: 'https://act.example/\"onmouseover=\"alert(1)'}}\n"
        "  - {label: Run me, url: 'javascript:alert(1)'}\n"
        "  - {label: Data me, url: 'data:text/html,<script>alert(1)</script>'}\n"
        "---\n"
        "Body <script>alert(3)</script> [x](javascript:alert(4)) <a href=\"data:text/html,x\">y</a>\n",
        encoding="utf-8")
    imported = runner.invoke(["articles", "import", str(path)])
    assert imported.exit_code == 0, imported.output
    assert "javascript:alert(1)" in imported.output and "data:text/html" in imported.output  # both refused
    composed = runner.invoke(["digests", "compose", "--send-now"])
    assert composed.exit_code == 0, composed.output
    [digest] = deliver()
    parts = check_message(digest, postal_address=config["site"]["postal_address"])

    archive_index = client.get("/archive/").get_data(as_text=True)
    slug = archive_index.split('href="/archive/', 1)[1].split('"', 1)[0]
    web_version = client.get(f"/archive/{slug}").get_data(as_text=True)
    for name, document in [("mail", parts["html"]), ("archive", archive_index), ("web version", web_version)]:
        markup = _Markup(document)
        assert markup.dangers() == [], name
        assert "<script>alert(1)</script>" in document.replace("&lt;", "<").replace("&gt;", ">"), name
    atom = ET.fromstring(client.get("/archive.atom").get_data())
    assert not atom.findall(".//{http://www.w3.org/1999/xhtml}script")
    assert "<script>" in atom.find("{http://www.w3.org/2005/Atom}entry/{http://www.w3.org/2005/Atom}title").text


# ---- resource exhaustion ---------------------------------------------------------------------------

def test_deeply_nested_html_is_refused_before_it_costs_minutes(runner, session, feed_server):
    """The HTML parser behind nh3 takes time quadratic in nesting: 100,000 nested <div> (500 KB) took
    47 s, and a 10 MB feed of them would hold the poller (and SQLite's write lock) for hours. A body
    with more than MAX_TAGS tags is refused; the other entries of the feed are stored."""
    from mailer.articles.rendering import MAX_TAGS

    nested = "&lt;div&gt;" * (MAX_TAGS * 10)
    feed = ('<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
            f'<item><title>Bomb</title><link>https://blog.example/bomb</link><description>{nested}</description></item>'
            '<item><title>Fine</title><link>https://blog.example/fine</link><description>Hello</description></item>'
            '</channel></rss>').encode()
    feed_server.routes["/rss"] = static(feed, content_type="application/rss+xml")
    assert runner.invoke(["feeds", "add", feed_server.url("/rss")]).exit_code == 0
    polled = runner.invoke(["feeds", "poll"])
    assert polled.exit_code == 0, polled.output
    assert "1 new" in polled.output and "1 entry(ies) skipped" in polled.output
    assert f"more than {MAX_TAGS} HTML tags" in polled.output


def test_a_markdown_file_of_nested_html_is_refused_in_one_line(runner, session, tmp_path):
    from mailer.articles.rendering import MAX_TAGS

    path = tmp_path / "bomb.md"
    path.write_text("# Bomb\n\n" + "<blockquote>" * (MAX_TAGS + 1) + "\n", encoding="utf-8")
    result = runner.invoke(["articles", "import", str(path)])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and f"more than {MAX_TAGS} HTML tags" in result.output


def test_a_feed_of_many_entries_stores_only_the_first_ones(runner, session, feed_server, monkeypatch):
    """A 5 MB feed of 100,000 tiny entries was 100,000 upserts in one poll, holding SQLite's write lock
    for minutes; real feeds carry tens of entries, newest first. (Here 5,000 entries and a limit of 50,
    to keep the suite quick; the limit is MAX_ENTRIES_PER_POLL = 1000.)"""
    from mailer.articles.models import Article
    from mailer.feeds import operations as feed_operations
    from tests.test_feeds import count

    monkeypatch.setattr(feed_operations, "MAX_ENTRIES_PER_POLL", 50)
    items = "".join(f"<item><title>t{i}</title><guid>https://blog.example/{i}</guid></item>" for i in range(5000))
    feed = f'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>{items}</channel></rss>'.encode()
    feed_server.routes["/rss"] = static(feed, content_type="application/rss+xml")
    assert runner.invoke(["feeds", "add", feed_server.url("/rss")]).exit_code == 0
    polled = runner.invoke(["feeds", "poll"])
    assert polled.exit_code == 0, polled.output
    assert "50 new" in polled.output and "4950 older entries ignored" in polled.output
    assert count(session, Article) == 50
    assert session.scalar(select(Article.title).order_by(Article.id).limit(1)) == "t0"


def test_a_100_mb_markdown_file_is_refused_in_one_line_without_reading_it(runner, session, tmp_path):
    path = tmp_path / "huge.md"
    with path.open("wb") as fh:
        fh.truncate(100 * 1024 * 1024)  # sparse: no disk used, but 100 MB to stat() and to read()
    result = runner.invoke(["articles", "import", str(path)])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "larger than 10 MB" in result.output


def test_a_csv_with_a_huge_field_is_refused_in_one_line(runner, session, tmp_path):
    path = tmp_path / "huge.csv"
    path.write_text("email,name\nreader@example.org," + "x" * 1_000_000 + "\n", encoding="utf-8")
    result = runner.invoke(["subscribers", "import", str(path)])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "line 2" in result.output


def test_plain_text_of_a_tag_bomb_reads_only_its_start():
    """Summaries and fallback titles come from plain_text, which runs before any entry is refused."""
    from mailer.articles.rendering import MAX_TAGS, plain_text

    assert plain_text("<p>Start</p>" + "<div>" * (MAX_TAGS * 2) + "tail") == "Start"


# ---- NUL and control characters in form fields and request headers ------------------------------

@pytest.mark.parametrize("field, value, header", [
    ("topics", "ukr\x00aine", None),
    ("form_id", "subscribe\x00", None),
    ("name", "Robin\x00", None),
    ("email", "reader\x00@example.org", None),
    (None, None, "Mozilla\x00\x1b[2J"),
])
def test_nul_in_a_signup_is_a_4xx_or_stored_clean_never_a_500(client, session, field, value, header):
    """PostgreSQL refuses NUL in text: a %00 in a form field or a User-Agent header was a 500 there."""
    from subscribers.models import ConsentEvent
    from tests.test_bad_input import signup_form

    factories.topic(session, "ukraine")
    session.commit()
    form = signup_form(client, **({field: value} if field else {}))
    response = client.post("/subscribe", data=form, headers={"User-Agent": header} if header else {})
    assert response.status_code in (302, 400), response.status_code
    session.remove()
    for event in session.scalars(select(ConsentEvent)):
        assert not _has_controls(event.user_agent + event.form_id + event.detail)


def test_nul_in_a_topic_on_the_preferences_page_is_a_4xx(client, session):
    from tests.test_bad_input import csrf_token

    subscriber = factories.subscriber(session, "reader@example.org", topics=["ukraine"])
    session.commit()
    path = f"/preferences/{tokens.preferences_token(subscriber.id, subscriber.token_version)}"
    response = client.post(path, data={"csrf_token": csrf_token(client, path), "topics": ["ukr\x00aine"],
                                       "action": "save"})
    assert response.status_code == 400
    assert "Unknown topic" in page_text(response)


def test_a_non_ascii_smtp_password_is_a_config_error_that_does_not_show_it():
    """smtplib encodes AUTH as ASCII: a password like "pässwörd" raised UnicodeEncodeError inside every
    delivery pass (a traceback in the log, the queue stuck). Start-up now says so, without the value."""
    from mailer import config as config_module
    from mailer.errors import ConfigError

    with pytest.raises(ConfigError) as error:
        config_module.load(path=None, environ={"MAILER_MAIL_SMTP_PASSWORD": "pässwörd"})
    assert "mail.smtp.password" in str(error.value) and "ASCII" in str(error.value)
    assert "pässwörd" not in str(error.value) and "ä" not in str(error.value)


def test_an_address_that_is_a_formula_is_exported_as_text_and_reimported_as_itself(runner, client, session,
                                                                                   tmp_path):
    """`=cmd|'/C...'!A0@example.org` is a valid address anyone can sign up with, and the export wrote it
    raw: a spreadsheet opening the export would run it (names were already defused, addresses not)."""
    import csv

    from tests.test_bad_input import signup_form

    address = "=cmd|'/Ccalc'!A0@example.org"
    assert client.post("/subscribe", data=signup_form(client, email=address)).status_code == 302
    path = tmp_path / "out.csv"
    assert runner.invoke(["subscribers", "export", str(path)]).exit_code == 0
    [row] = list(csv.DictReader(path.open(newline="", encoding="utf-8")))
    assert row["email"] == "'" + address

    session.remove()
    for subscriber in session.scalars(select(Subscriber)):
        session.delete(subscriber)
    session.commit()
    result = runner.invoke(["subscribers", "import", str(path), "--confirmed"])
    assert result.stdout.strip() == "imported 1, skipped 0, errors 0", result.output
    assert session.scalar(select(Subscriber.email)) == address


def test_the_confirmation_link_does_not_carry_the_address(client, session, deliver):
    """A signed token is readable by anyone (base64 JSON): the confirm link carried the address in
    clear, into proxy and link-scanner logs and browser history. It now carries a keyed digest."""
    import base64
    import re

    from tests.test_bad_input import csrf_token, signup_form

    assert client.post("/subscribe", data=signup_form(client, email="reader@example.org")).status_code == 302
    [confirmation] = deliver()
    token = re.search(r"/confirm/([\w.-]+)", confirmation.get_body(("plain",)).get_content()).group(1)
    payload = token.split(".")[0]
    decoded = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    assert b"reader" not in decoded and b"example.org" not in decoded
    path = f"/confirm/{token}"
    assert client.post(path, data={"csrf_token": csrf_token(client, path)}).status_code == 200
    session.remove()
    assert session.scalar(select(Subscriber.state)).value == "confirmed"


def test_a_confirm_link_for_an_address_that_changed_hands_is_refused(client, session):
    """The link binds the address: if the subscriber row now holds another address, it does not confirm."""
    subscriber = factories.subscriber(session, "old@example.org", state=SubscriberState.pending)
    token = tokens.confirm_token(subscriber.id, subscriber.email)
    subscriber.email = "new@example.org"
    session.commit()
    response = client.get(f"/confirm/{token}")
    assert response.status_code == 400


def test_a_feed_feedparser_chokes_on_is_reported_and_the_other_feeds_are_polled(runner, session, feed_server):
    """`&#xD800;` (a lone surrogate) made feedparser itself raise UnicodeEncodeError, which escaped the
    poll: one hostile feed stopped every feed from being polled."""
    bad = (b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title><item><title>a&#xD800;b'
           b'</title><link>https://blog.example/a</link></item></channel></rss>')
    feed_server.routes["/bad"] = static(bad, content_type="application/rss+xml")
    feed_server.routes["/good"] = static(HOSTILE_RSS, content_type="application/rss+xml")
    for path in ("/bad", "/good"):
        assert runner.invoke(["feeds", "add", feed_server.url(path)]).exit_code == 0
    polled = runner.invoke(["feeds", "poll"])
    assert polled.exit_code == 0, polled.output
    assert "/bad: failed: not an RSS or Atom feed" in polled.output
    assert "/good: 1 new" in polled.output


def test_lone_surrogates_and_noncharacters_in_front_matter_are_dropped(runner, client, session, tmp_path):
    """YAML spells "\\ud800" and "\\uFFFE": the first cannot be encoded as UTF-8 at all (the import died
    with a traceback), the second is not allowed in XML (the Atom feed)."""
    path = tmp_path / "odd.md"
    path.write_text('---\ntitle: "Odd\\ud800 title\\uFFFE"\nauthor: "A\\udfff"\n'
                    'actions:\n  - {label: "Sign\\ud800", url: "https://act.example/\\ud800"}\n---\nBody.\n',
                    encoding="utf-8")
    result = runner.invoke(["articles", "import", str(path)])
    assert result.exit_code == 0, result.output
    assert "skipped an action" in result.output  # the URL with a surrogate in it
    listed = runner.invoke(["articles", "list", "--json"])
    assert listed.exit_code == 0 and '"title": "Odd title"' in listed.output


def test_a_list_file_named_like_rich_markup_shows_as_typed(runner, session, tmp_path):
    """`subscribers show` prints the consent history with rich, which read "[red]" in a list's file
    name (kept in the `imported` consent event) as markup and swallowed it."""
    path = tmp_path / "[red]list.csv"
    path.write_text("email\nreader@example.org\n", encoding="utf-8")
    assert runner.invoke(["subscribers", "import", str(path), "--confirmed"]).exit_code == 0
    result = runner.invoke(["subscribers", "show", "reader@example.org"])
    assert result.exit_code == 0, result.output
    assert "[red]list.csv" in result.output


def test_a_non_ascii_site_name_reads_right_in_from_and_list_id():
    """The List-Id quoted the name before encoding it, so mail clients showed the quotes as part of it."""
    import email as email_package
    import email.policy

    from mailer import config as config_module
    from mailer import emails

    config = config_module.load(path=None, environ={}, overrides={"site": {"name": "Société Générale"}})
    rendered = emails.Rendered(subject="Ça va", text="t", html="<p>h</p>")
    message = emails.build(config, to="reader@example.org", to_name="Zoë", rendered=rendered,
                           unsubscribe_url="https://news.example.org/unsubscribe/t")
    parsed = email_package.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    assert str(parsed["List-Id"]) == "Société Générale <updates.localhost>"
    assert str(parsed["From"]) == "Société Générale <updates@localhost>"
    assert str(parsed["To"]) == "Zoë <reader@example.org>" and str(parsed["Subject"]) == "Ça va"


def test_the_folders_we_create_for_data_and_the_key_are_private(tmp_path):
    """var/ holds the SQLite database (every address, IP and user agent) and the secret key."""
    from mailer import db as db_module

    config_module, config = _defaults()
    config_module.secret_key(config, tmp_path / "keys")
    engine = db_module.make_engine(f"sqlite:///{tmp_path / 'data' / 'mailer.db'}")
    engine.dispose()
    assert (tmp_path / "keys").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "data").stat().st_mode & 0o777 == 0o700


def test_xml_entity_tricks_in_a_feed_read_no_file_and_expand_nothing(runner, session, feed_server):
    """An external entity naming /etc/passwd (XXE) and nested entities a billion "lol"s long: feedparser
    on expat 2.5 reads no file and refuses the amplification; this keeps it that way."""
    from mailer.articles.models import Article

    xxe = (b'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
           b'<rss version="2.0"><channel><title>t</title><item><title>Leak &xxe;</title>'
           b'<link>https://blog.example/xxe</link><description>&xxe;</description></item></channel></rss>')
    entities = '<!ENTITY lol "lol">' + "".join(
        f'<!ENTITY lol{i} "{("&lol%s;" % (i - 1 if i > 1 else "")) * 10}">' for i in range(1, 10))
    laughs = (f'<?xml version="1.0"?><!DOCTYPE rss [{entities}]><rss version="2.0"><channel><title>t</title>'
              '<item><title>Laugh &lol9;</title><link>https://blog.example/lol</link></item></channel></rss>').encode()
    feed_server.routes["/xxe"] = static(xxe, content_type="application/rss+xml")
    feed_server.routes["/lol"] = static(laughs, content_type="application/rss+xml")
    for path in ("/xxe", "/lol"):
        assert runner.invoke(["feeds", "add", feed_server.url(path)]).exit_code == 0
    runner.invoke(["feeds", "poll"])
    session.remove()
    for article in session.scalars(select(Article)):
        assert "root:" not in article.title + article.summary + article.body_source
        assert len(article.title) < 100 and "lollollol" not in article.body_source


@pytest.mark.parametrize("made_for, used_on", [
    ("link", "/confirm/{}"), ("link", "/preferences/{}"), ("link", "/unsubscribe/{}"),
    ("manage", "/confirm/{}"), ("manage", "/l/{}"), ("manage", "/o/{}"),
    ("confirm", "/l/{}"), ("confirm", "/preferences/{}/data"), ("confirm", "/preferences/{}/erase"),
])
def test_a_token_opens_only_the_door_it_was_made_for(client, session, made_for, used_on):
    """Tokens are salted per purpose: the ids inside a click token ([send, subscriber, link]) or a
    manage token ({s, v}) must not pass as another kind, even where the shapes could be read alike."""
    from mailer.links import tokens as link_tokens
    from tests.test_bad_input import snapshot

    subscriber = factories.subscriber(session, "reader@example.org", state=SubscriberState.pending)
    session.commit()
    token = {"link": link_tokens.make(1, 1, subscriber.id),
             "manage": tokens.preferences_token(subscriber.id, subscriber.token_version),
             "confirm": tokens.confirm_token(subscriber.id, subscriber.email)}[made_for]
    before = snapshot(session)
    for method in ("GET", "POST"):
        response = client.open(used_on.format(token), method=method, data={"List-Unsubscribe": "One-Click"})
        assert response.status_code in (400, 405), (method, response.status_code)
        assert "reader@example.org" not in response.get_data(as_text=True)
    assert snapshot(session) == before


def test_a_folder_import_does_not_follow_links_out_of_the_folder(runner, session, tmp_path):
    """A folder of posts someone sent (an unpacked zip) may hold `leak.md -> ~/app/var/secret_key`:
    the key's one line became an article title, and the next digest's Subject to every subscriber."""
    from mailer.articles.models import Article

    posts = tmp_path / "posts"
    posts.mkdir()
    (posts / "real.md").write_text("# A real post\n\nText.\n", encoding="utf-8")
    (tmp_path / "secret_key").write_text("s3cr3t-signing-key\n", encoding="utf-8")
    (posts / "leak.md").symlink_to(tmp_path / "secret_key")
    (posts / "inside.md").symlink_to(posts / "real.md")  # a link within the folder is fine
    result = runner.invoke(["articles", "import", str(posts)])
    assert result.exit_code == 2
    assert "leak.md: a link to a file outside" in result.output
    session.remove()
    titles = list(session.scalars(select(Article.title)))
    assert titles == ["A real post"] and "s3cr3t" not in result.output


@pytest.mark.parametrize("verp_token", ["9" * 5000 + "-0123456789", "١٢-0123456789", "-", "12-", "x-1"])
def test_a_hostile_bounce_address_names_no_outbox_row(verp_token):
    """Bounce addresses come from the internet. 5,000 digits made int() raise ValueError (Python's
    limit on digits); Arabic-Indic digits pass isdigit() but name no row."""
    from mailer.outbox import verp

    assert verp.outbox_id(verp_token, "secret") is None


def test_a_long_non_ascii_title_makes_a_short_subject_in_well_folded_lines(runner, session, config, deliver):
    """450 characters of Cyrillic (and a CR/LF an editor pasted in) as the lead title."""
    title = "Правозащитники сообщают\r\nBcc: everyone@example.org " + "ж" * 400
    factories.subscriber(session, "reader@example.org")
    factories.article(session, slug="long", title=title, canonical_url="https://blog.example/long")
    session.commit()
    assert runner.invoke(["digests", "compose", "--send-now"]).exit_code == 0
    [digest] = deliver()
    check_message(digest, postal_address=config["site"]["postal_address"])
    subject = str(digest["Subject"])
    assert subject.startswith("Accidentally Alex update: Правозащитники сообщают Bcc:")
    assert len(subject) <= 200 and subject.endswith("…")
    assert digest["Bcc"] is None and "\n" not in subject
    [raw] = (Path(config["mail"]["maildir"]) / "new").iterdir()
    head = raw.read_bytes().split(b"\n\n")[0]
    assert head.isascii() and max(len(line) for line in head.split(b"\n")) <= 998  # RFC 5322's hard limit
    first, *rest = head.split(b"\nSubject: ", 1)[1].split(b"\n")
    subject_lines = [first, *takewhile(lambda line: line.startswith(b" "), rest)]  # the folded continuation
    assert len(subject_lines) > 1 and max(len(line) for line in subject_lines) <= 78


def test_a_stranger_cannot_write_into_the_confirmation_mail(client, session, deliver):
    """Anyone can type anyone's address into the form, so the name field was a way to send our signed,
    trusted mail with the stranger's words in it ("Hello URGENT: your account… https://evil.example,").
    The confirmation greets nobody by name; the name is used once the address's owner has confirmed."""
    from tests.test_bad_input import csrf_token, signup_form

    name = "URGENT reset your password at https://evil.example"
    response = client.post("/subscribe", data=signup_form(client, email="victim@example.org", name=name))
    assert response.status_code == 302
    [confirmation] = deliver()
    assert "evil.example" not in confirmation.as_string()

    token = re.search(r"/confirm/([\w.-]+)", confirmation.get_body(("plain",)).get_content()).group(1)
    path = f"/confirm/{token}"
    assert client.post(path, data={"csrf_token": csrf_token(client, path)}).status_code == 200
    welcome = deliver()[-1]
    assert "URGENT" in str(welcome["To"])  # the owner confirmed: the name is theirs to keep


def test_topic_titles_and_descriptions_are_text_on_the_signup_and_preferences_pages(runner, client, session):
    """Feed categories name topics; editors describe them. Either could be markup."""
    result = runner.invoke(["topics", "add", "hostile", "--title", XSS, "--description", XSS])
    assert result.exit_code == 0, result.output
    subscriber = factories.subscriber(session, "reader@example.org")
    session.commit()
    for path in ("/subscribe", f"/preferences/{tokens.preferences_token(subscriber.id, subscriber.token_version)}"):
        document = client.get(path).get_data(as_text=True)
        assert _Markup(document).dangers() == [], path
        assert document.count("&lt;script&gt;alert(1)&lt;/script&gt;") == 2, path
