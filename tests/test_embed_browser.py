"""The signup box on another origin, in Debian's Chromium: a "blog" served on a second local port posts
the snippet's form to us, and frames /subscribe?embed=1 only when its origin is allowed."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import expect
from sqlalchemy import select
from werkzeug.serving import make_server

from subscribers import embed
from subscribers.models import Subscriber, SubscriberState
from tests.conftest import make_config
from tests.contract import check_message

pytestmark = pytest.mark.browser


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Blog:
    """A site of someone else's on 127.0.0.1:<port>, serving one article page with `body` in it."""

    def __init__(self, port: int):
        self.port = port
        self.origin = f"http://127.0.0.1:{port}"
        self.body = ""
        blog = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                page = (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Blog</title></head>"
                        f"<body><article><h1>An article</h1><p>Text.</p></article>{blog.body}</body></html>")
                data = page.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def ports():
    return {"allowed": _free_port(), "other": _free_port()}


@pytest.fixture
def config(database_url, tmp_path, ports):
    return make_config(database_url, tmp_path, signup={"embed_origins": f"http://127.0.0.1:{ports['allowed']}"})


@pytest.fixture
def mailer_url(app, session):
    """Our app over real HTTP on its own port."""
    session.remove()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(5)


@pytest.fixture
def browser_page(chromium):
    contexts = []

    def open_():
        context = chromium.new_context(locale="en-GB")
        contexts.append(context)
        return context.new_page()

    yield open_
    for context in contexts:
        context.close()


def test_a_reader_signs_up_from_the_blogs_own_page(app, config, ports, mailer_url, browser_page, deliver, session):
    with app.app_context():
        snippet = embed.snippet(config, app.config["SECRET_KEY"], app.jinja_env)
    with Blog(ports["other"]) as blog:  # a plain form needs no allowed origin: it is not framed
        blog.body = snippet.replace("https://news.example.org", mailer_url)
        page = browser_page()
        page.goto(blog.origin + "/posts/1")
        page.get_by_label("Email address").fill("reader@example.org")
        page.get_by_label("I have read and agreed to the Privacy Policy").check()
        page.get_by_role("button", name="Sign up").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Thanks for signing up!")
        assert page.url == mailer_url + "/subscribe/thanks"
        assert page.context.cookies(mailer_url) == []  # nothing of ours stays in the reader's browser

    [confirmation] = deliver()
    parts = check_message(confirmation, postal_address=config["site"]["postal_address"])
    assert "/confirm/" in parts["text"]
    session.remove()
    subscriber = session.scalar(select(Subscriber))
    assert (subscriber.email, subscriber.state) == ("reader@example.org", SubscriberState.pending)
    [given] = subscriber.consent_events
    assert (given.form_id, given.ip_address) == ("blog", "127.0.0.1")
    assert "Chrome" in given.user_agent


def test_the_framed_form_loads_from_the_allowed_origin_only(ports, mailer_url, browser_page, deliver):
    frame = f'<iframe src="{mailer_url}/subscribe?embed=1" title="Sign up" width="600" height="700"></iframe>'
    with Blog(ports["allowed"]) as allowed, Blog(ports["other"]) as other:
        allowed.body = other.body = frame

        page = browser_page()
        page.goto(allowed.origin + "/")
        form = page.frame_locator("iframe")
        expect(form.get_by_role("heading", level=1)).to_have_text(
            "Sign Up to receive the latest updates from Accidentally Alex")
        form.get_by_label("Email address").fill("framed@example.org")
        form.get_by_label("I have read and agreed to the Privacy Policy").check()
        form.get_by_role("button", name="Sign up").click()
        expect(form.get_by_role("heading", level=1)).to_have_text("Thanks for signing up!")
        assert page.url == allowed.origin + "/"  # the reader stays on the blog
        assert [m["To"] for m in deliver()] == ["framed@example.org"]

        # Chromium refuses to render our page inside another origin's frame, and says why.
        refused = browser_page()
        with refused.expect_console_message(lambda msg: "frame-ancestors" in msg.text):
            refused.goto(other.origin + "/")
        expect(refused.frame_locator("iframe").get_by_role("heading", level=1)).to_have_count(0)


def test_chromium_solves_the_proof_of_work_and_signs_up(database_url, tmp_path, browser_page):
    from mailer import db
    from mailer.app import create_app

    app = create_app(make_config(database_url, tmp_path, signup={"proof_of_work": True,
                                                                 "proof_of_work_max_number": 20000}))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        page = browser_page()
        errors = []
        page.on("console", lambda msg: msg.type == "error" and "favicon" not in msg.location["url"]
                and errors.append(msg.text))
        page.goto(f"http://127.0.0.1:{server.server_port}/subscribe")
        page.get_by_label("Email address").fill("reader@example.org")
        page.get_by_label("I have read and agreed to the Privacy Policy").check()
        button = page.get_by_role("button", name="Sign up")
        expect(button).to_be_enabled()  # disabled until our script has found the number
        button.click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Thanks for signing up!")
        assert errors == []  # the CSP let our script run, and nothing else was tried
        with app.app_context():
            assert db.session.scalar(select(Subscriber.email)) == "reader@example.org"
            db.session.remove()
    finally:
        server.shutdown()
        thread.join(5)
        app.extensions["engine"].dispose()
