"""Feeds: `mailer feeds add/poll` against a real HTTP server on 127.0.0.1, with conditional GET,
hostile entries, and the ways a feed breaks (not XML, HTTP errors, too big, nobody listening)."""

from __future__ import annotations

import socket
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlalchemy import func, select

from mailer.articles.models import Article
from mailer.feeds import operations, tasks
from mailer.feeds.models import Feed
from mailer.topics.models import Topic

ATOM = (Path(__file__).parent / "fixtures" / "feed.atom").read_bytes()
ETAG = '"v1"'
LAST_MODIFIED = "Sun, 22 Nov 2026 10:00:00 GMT"
MB = 1024 * 1024


class FeedServer:
    """A real HTTP server on 127.0.0.1 whose paths answer as the test says; it keeps every request's headers."""

    def __init__(self):
        self.routes = {}
        self.requests: list[tuple[str, dict]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append((self.path, dict(self.headers)))
                route = server.routes.get(self.path)
                if route is None:
                    self.send_error(404)
                    return
                try:
                    route(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the poller hung up on purpose (a feed too big)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def headers_of(self, path: str) -> list[dict]:
        return [headers for p, headers in self.requests if p == path]


@pytest.fixture
def feed_server():
    server = FeedServer()
    server.thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


def conditional_atom(handler):
    """Answer 304 when the client shows the validators it got; the feed otherwise."""
    if handler.headers.get("If-None-Match") == ETAG or handler.headers.get("If-Modified-Since") == LAST_MODIFIED:
        handler.send_response(304)
        handler.end_headers()
        return
    static(ATOM, headers={"ETag": ETAG, "Last-Modified": LAST_MODIFIED})(handler)


def static(body: bytes, status: int = 200, content_type: str = "application/atom+xml", headers=None):
    def route(handler):
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(body)
    return route


def endless(total: int, declare_length: bool):
    """`total` bytes of a feed-shaped document, produced 64 KB at a time (never built in memory)."""
    def route(handler):
        handler.send_response(200)
        handler.send_header("Content-Type", "application/atom+xml")
        if declare_length:
            handler.send_header("Content-Length", str(total))
        handler.end_headers()
        handler.wfile.write(b'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>')
        chunk = b"x" * (64 * 1024)
        for _ in range(total // len(chunk)):
            handler.wfile.write(chunk)
    return route


def count(session, model) -> int:
    return session.scalar(select(func.count()).select_from(model))


def add(runner, url: str, *options) -> None:
    result = runner.invoke(["feeds", "add", url, *options])
    assert result.exit_code == 0, result.output


def test_poll_twice_second_poll_is_conditional_and_adds_nothing(runner, session, feed_server, frozen_clock):
    feed_server.routes["/feed.atom"] = conditional_atom
    add(runner, feed_server.url("/feed.atom"), "--topics", "news")

    first = runner.invoke(["feeds", "poll"])
    assert first.exit_code == 0, first.output
    assert "5 new, 0 updated, 0 unchanged, 1 repeated GUID(s) ignored" in first.output
    assert count(session, Article) == 5

    second = runner.invoke(["feeds", "poll"])
    assert second.exit_code == 0
    assert "not modified" in second.output
    assert count(session, Article) == 5
    [initial, conditional] = feed_server.headers_of("/feed.atom")
    assert "If-None-Match" not in initial and "If-Modified-Since" not in initial
    assert conditional["If-None-Match"] == ETAG and conditional["If-Modified-Since"] == LAST_MODIFIED

    feed = session.scalar(select(Feed))
    assert (feed.etag, feed.last_modified, feed.last_error, feed.title) == (
        ETAG, LAST_MODIFIED, "", "Accidentally Alex")


def test_entries_become_sanitised_articles_with_topics(runner, session, feed_server, frozen_clock):
    feed_server.routes["/feed.atom"] = static(ATOM)
    add(runner, feed_server.url("/feed.atom"), "--topics", "news,lgbtiq-rights")
    assert runner.invoke(["feeds", "poll"]).exit_code == 0
    articles = {a.title: a for a in session.scalars(select(Article))}

    chechnya = articles["Two Dead And At Least 40 Detained As Chechen LGBT Purge Resumes"]
    assert chechnya.guid == "tag:blog.example.org,2026:chechnya"
    assert chechnya.canonical_url == "https://blog.example.org/2026/11/chechnya"
    assert chechnya.published_at == datetime(2026, 11, 22, 8, 0, tzinfo=timezone.utc)
    assert (chechnya.author, chechnya.summary) == ("Alex", "A new wave of detentions in Chechnya.")
    assert chechnya.image_url == "https://blog.example.org/images/chechnya.jpg"
    # Feed categories become topics, and the feed's own topics are added to every article.
    assert [t.slug for t in chechnya.topics] == ["human-rights", "lgbtiq-rights", "news"]
    assert session.scalar(select(Topic.title).where(Topic.slug == "human-rights")) == "Human Rights"
    html = chechnya.body_html
    for hostile in ("<script", 'alert("feed")', "onerror", "onclick", "javascript:"):
        assert hostile not in html
    # Relative links resolve against the document they came from; the hostile link is no link at all.
    assert f'<a href="{feed_server.url("/2026/11/background")}" rel="noopener noreferrer">background</a>' in html
    assert f'<img alt="Argun" src="{feed_server.url("/images/argun.jpg")}">' in html
    assert '<a rel="noopener noreferrer">this</a>' in html

    # Entries without a date take the poll time; entries without link or id are still stored, once.
    assert articles["An entry without any date"].published_at == frozen_clock.now()
    untitled = articles["An entry without a link or id"]
    assert untitled.canonical_url is None and untitled.guid.startswith(feed_server.url("/feed.atom#sha256:"))
    assert untitled.body_html == "<p>Plain text &lt;b&gt;not bold&lt;/b&gt;.</p>"
    # A second entry with a GUID already seen in the same document is ignored, not merged.
    assert "The same GUID again, served twice by a broken blog engine" not in articles
    # Future-dated: stored with its date (digests leave it out until then).
    assert articles["Scheduled: vigil announcement"].published_at == datetime(2030, 1, 1, 9, tzinfo=timezone.utc)
    # A javascript: link is no canonical URL; the entry is kept under its id.
    assert articles["Link with a hostile scheme"].canonical_url is None


def test_a_server_ignoring_conditional_get_changes_nothing_on_repoll(runner, session, feed_server):
    feed_server.routes["/feed.atom"] = static(ATOM, headers={"ETag": ETAG})
    add(runner, feed_server.url("/feed.atom"))
    assert runner.invoke(["feeds", "poll"]).exit_code == 0
    updated_at = {a.id: a.updated_at for a in session.scalars(select(Article))}
    session.remove()
    second = runner.invoke(["feeds", "poll"])
    assert "0 new, 0 updated, 5 unchanged" in second.output
    assert {a.id: a.updated_at for a in session.scalars(select(Article))} == updated_at


def test_an_edited_entry_updates_its_article(runner, session, feed_server):
    feed_server.routes["/feed.atom"] = static(ATOM)
    add(runner, feed_server.url("/feed.atom"))
    assert runner.invoke(["feeds", "poll"]).exit_code == 0
    feed_server.routes["/feed.atom"] = static(ATOM.replace(b"Still an article.", b"Corrected."))
    result = runner.invoke(["feeds", "poll"])
    assert "0 new, 1 updated, 4 unchanged" in result.output
    assert count(session, Article) == 5
    assert session.scalar(select(Article.body_html).where(Article.title == "Link with a hostile scheme")) == \
        "<p>Corrected.</p>"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_broken_feeds_are_reported_and_do_not_stop_the_others(runner, session, feed_server, monkeypatch):
    feed_server.routes.update({
        "/html": static(b"<html><head><title>Blog</title></head><body>Moved</body></html>", content_type="text/html"),
        "/garbage": static(b"\x00\x01 this is not xml at all <<<", content_type="application/octet-stream"),
        "/error": static(b"oops", status=500, content_type="text/plain"),
        "/gone": static(b"", status=410),
        "/big-declared": endless(50 * MB, declare_length=True),
        "/big-streamed": endless(50 * MB, declare_length=False),
        "/feed.atom": static(ATOM),
    })
    broken = {
        feed_server.url("/html"): "not an RSS or Atom feed",
        feed_server.url("/garbage"): "not an RSS or Atom feed",
        feed_server.url("/error"): "HTTP 500 Internal Server Error",
        feed_server.url("/gone"): "HTTP 410 Gone",
        feed_server.url("/big-declared"): "larger than 10 MB; refused",
        feed_server.url("/big-streamed"): "larger than 10 MB; refused",
        f"http://127.0.0.1:{free_port()}/feed": "cannot connect: [Errno 111] Connection refused",
    }
    for url in broken:
        add(runner, url)
    add(runner, feed_server.url("/feed.atom"))

    result = runner.invoke(["feeds", "poll"])
    assert result.exit_code == 0  # one feed worked: the broken ones are the blogs' problem
    assert "Traceback" not in result.output
    for url, reason in broken.items():
        assert f"{url}: failed: {reason}" in result.output
    assert "5 new" in result.output and count(session, Article) == 5
    errors = {f.url: f.last_error for f in session.scalars(select(Feed))}
    for url, reason in broken.items():
        assert errors[url].startswith(reason)
    assert errors[feed_server.url("/feed.atom")] == ""


def test_the_big_feed_is_not_read_whole(feed_server):
    feed_server.routes["/big"] = endless(50 * MB, declare_length=False)
    with pytest.raises(operations.FeedError, match="larger than 1 MB"):
        operations.fetch(feed_server.url("/big"), max_bytes=1 * MB)


def test_a_recovered_feed_clears_its_error(runner, session, feed_server):
    feed_server.routes["/feed.atom"] = static(b"down", status=503)
    add(runner, feed_server.url("/feed.atom"))
    failed = runner.invoke(["feeds", "poll"])
    assert failed.exit_code == 1  # every feed failed: most likely our network, worth a non-zero status
    assert "HTTP 503" in session.scalar(select(Feed.last_error))
    session.remove()
    feed_server.routes["/feed.atom"] = static(ATOM)
    assert runner.invoke(["feeds", "poll"]).exit_code == 0
    assert session.scalar(select(Feed.last_error)) == ""


def test_a_slow_server_times_out(feed_server):
    release = threading.Event()

    def stall(handler):
        release.wait(5)

    feed_server.routes["/slow"] = stall
    try:
        with pytest.raises(operations.FeedError, match="no answer within 0.3 s|cannot connect: timed out"):
            operations.fetch(feed_server.url("/slow"), timeout=0.3)
    finally:
        release.set()


def test_a_trickling_server_meets_the_overall_deadline(feed_server):
    # Every byte arrives well within the socket timeout, yet the whole download would take minutes.
    stop = threading.Event()

    def trickle(handler):
        handler.send_response(200)
        handler.send_header("Content-Type", "application/atom+xml")
        handler.end_headers()
        while not stop.wait(0.05):
            handler.wfile.write(b"x")
            handler.wfile.flush()

    feed_server.routes["/trickle"] = trickle
    try:
        with pytest.raises(operations.FeedError, match="still downloading after 0.5 s"):
            operations.fetch(feed_server.url("/trickle"), timeout=0.5)
    finally:
        stop.set()


@pytest.mark.parametrize("url, message", [
    ("ftp://example.org/feed", "a feed URL must be an http or https address"),
    ("file:///etc/passwd", "a feed URL must be an http or https address"),
    ("example.org/feed", "a feed URL must be an http or https address"),
])
def test_add_rejects_non_http_urls(runner, session, url, message):
    result = runner.invoke(["feeds", "add", url])
    assert result.exit_code == 2 and result.output.startswith(f"mailer: {message}")
    assert count(session, Feed) == 0


def test_add_rejects_a_second_copy_and_bad_topics(runner, session):
    add(runner, "https://blog.example.org/feed.atom", "--topics", "news")
    again = runner.invoke(["feeds", "add", "https://blog.example.org/feed.atom"])
    assert again.exit_code == 2 and again.output == "mailer: https://blog.example.org/feed.atom is already feed 1\n"
    bad_topic = runner.invoke(["feeds", "add", "https://other.example.org/feed", "--topics", "Bad Slug"])
    assert bad_topic.exit_code == 2 and bad_topic.output.startswith("mailer: invalid topic slug 'Bad Slug'")
    assert count(session, Feed) == 1


def test_poll_with_no_feeds_and_list(runner, session, feed_server):
    assert runner.invoke(["feeds", "poll"]).output.startswith("no feeds yet")
    feed_server.routes["/feed.atom"] = static(ATOM)
    add(runner, feed_server.url("/feed.atom"), "--topics", "news")
    add(runner, feed_server.url("/missing"))
    runner.invoke(["feeds", "poll"])
    listing = runner.invoke(["feeds", "list"]).output.splitlines()
    assert len(listing) == 2
    assert listing[0].endswith(f"{feed_server.url('/feed.atom')}  [news]")
    assert listing[1].endswith("failed: HTTP 404 Not Found")


def test_poll_all_job_logs_one_line_per_feed(app, session, feed_server, caplog):
    feed_server.routes["/feed.atom"] = static(ATOM)
    operations.add_feed(session, feed_server.url("/feed.atom"))
    operations.add_feed(session, feed_server.url("/missing"))
    session.commit()
    with caplog.at_level("INFO", logger="mailer.feeds.tasks"):
        tasks.poll_all()
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("INFO", f"feed 1 {feed_server.url('/feed.atom')}: 5 new, 0 updated, 0 unchanged, "
                 f"1 repeated GUID(s) ignored"),
        ("WARNING", f"feed 2 {feed_server.url('/missing')}: failed: HTTP 404 Not Found"),
    ]
    assert count(session, Article) == 5


def test_rss_guids_are_scoped_to_their_feed(runner, session, feed_server):
    # Two small blogs both number their posts 1, 2, 3: their posts must not overwrite each other.
    def rss(name):
        return static(f"""<?xml version="1.0"?><rss version="2.0"><channel><title>{name}</title>
            <item><title>{name} post one</title><guid isPermaLink="false">1</guid>
            <description>Hello from {name}.</description></item></channel></rss>""".encode(),
                      content_type="application/rss+xml")

    feed_server.routes.update({"/a.rss": rss("A"), "/b.rss": rss("B")})
    add(runner, feed_server.url("/a.rss"))
    add(runner, feed_server.url("/b.rss"))
    assert runner.invoke(["feeds", "poll"]).exit_code == 0
    assert sorted(session.scalars(select(Article.guid))) == [feed_server.url("/a.rss#1"), feed_server.url("/b.rss#1")]


def test_feeds_are_polled_on_a_schedule(app, session, feed_server):
    from mailer import scheduling

    feed_server.routes["/feed.atom"] = static(ATOM)
    operations.add_feed(session, feed_server.url("/feed.atom"))
    session.commit()
    job = scheduling.make_scheduler(app).get_job("poll-feeds")
    assert job.args == ("mailer.feeds.tasks:poll_all",) and job.trigger.interval.total_seconds() == 15 * 60
    session.remove()
    job.func(*job.args)  # what the scheduler does when the job is due
    assert count(session, Article) == 5
