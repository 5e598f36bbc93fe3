"""The subscriber journey in a real browser (Debian's Chromium through Playwright), as a reader on a phone.

Run with SCREENSHOTS=1 to refresh the README's screenshots in docs/screenshots/.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect
from sqlalchemy import select
from werkzeug.serving import make_server

from mailer.topics.models import Topic
from subscribers.models import Subscriber, SubscriberState
from tests.contract import check_message

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"

pytestmark = pytest.mark.browser


@pytest.fixture
def live_server(app, session):
    """The test app served over real HTTP on 127.0.0.1 (a free port) from a thread; yields its base URL."""
    session.remove()  # the server's threads need the SQLite write lock the test's session may hold
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(5)


class PageWatch:
    """What a page did that a reader would not want: requests off this machine, script errors."""

    def __init__(self):
        self.external: list[str] = []
        self.errors: list[str] = []


@pytest.fixture
def open_page(chromium, live_server):
    """Open pages in fresh browser contexts that refuse (and record) any request not to 127.0.0.1."""
    contexts = []
    watch = PageWatch()

    def route(route):
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            watch.external.append(route.request.url)
            route.abort()

    def open_(viewport=PHONE):
        context = chromium.new_context(viewport=viewport, base_url=live_server, locale="en-GB")
        contexts.append(context)
        page = context.new_page()
        page.route("**/*", route)
        page.on("pageerror", lambda exc: watch.errors.append(str(exc)))
        page.on("console", lambda msg: msg.type == "error" and watch.errors.append(msg.text))
        return page

    open_.watch = watch
    yield open_
    for context in contexts:
        context.close()


@pytest.fixture
def topics(session):
    session.add_all([Topic(slug="lgbtiq-rights", title="LGBTIQ rights"),
                     Topic(slug="ukraine", title="Ukraine", description="War and refugees")])
    session.commit()
    session.remove()


def on_live_server(url: str) -> str:
    """The path of a link from a mail (https://news.example.org/…), to open on the live server."""
    return urlsplit(url).path


def test_signup_confirm_preferences_unsubscribe_on_a_phone(topics, open_page, deliver, session, config):
    page = open_page(PHONE)
    page.goto("/subscribe")
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "Sign Up to receive the latest updates from Accidentally Alex")
    consent = page.get_by_label("I have read and agreed to the Privacy Policy")
    expect(consent).not_to_be_checked()
    page.get_by_label("Email address").fill("reader@example.org")
    page.get_by_label("Name").fill("Alex Reader")
    page.get_by_label("Ukraine").check()
    consent.check()
    # The form fits a phone: no sideways scrolling.
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    if os.environ.get("SCREENSHOTS") == "1":
        save_screenshots(page, open_page)
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Thanks for signing up!")

    [confirmation] = deliver()
    parts = check_message(confirmation, postal_address=config["site"]["postal_address"])
    confirm_url = next(w for w in parts["text"].split() if "/confirm/" in w)
    page.goto(on_live_server(confirm_url))
    page.get_by_role("button", name="Confirm my subscription").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("You are subscribed")

    welcome = deliver()[-1]
    parts = check_message(welcome, postal_address=config["site"]["postal_address"])
    page.goto(on_live_server(parts["preferences_url"]))
    expect(page.get_by_label("Ukraine")).to_be_checked()
    page.get_by_label("Ukraine").uncheck()
    page.get_by_label("LGBTIQ rights").check()
    page.get_by_role("button", name="Save my preferences").click()
    expect(page.get_by_role("status")).to_have_text("Your preferences are saved.")
    expect(page.get_by_label("LGBTIQ rights")).to_be_checked()

    page.goto(on_live_server(parts["unsubscribe_url"]))
    page.get_by_role("button", name="Unsubscribe").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("You are unsubscribed")

    session.remove()
    subscriber = session.scalar(select(Subscriber).where(Subscriber.email == "reader@example.org"))
    assert subscriber.state == SubscriberState.unsubscribed
    history = [(e.action.value, e.privacy_policy_version, e.detail) for e in subscriber.consent_events]
    assert history == [("given", "2026-11-01", "ukraine"), ("confirmed", "2026-11-01", ""),
                       ("topics_changed", "2026-11-01", "lgbtiq-rights"), ("withdrawn", "2026-11-01", "")]
    given = subscriber.consent_events[0]
    assert given.consent_text.startswith("I have read and agreed to the Privacy Policy")
    assert "Chrome" in given.user_agent and given.ip_address == "127.0.0.1"
    assert (open_page.watch.external, open_page.watch.errors) == ([], [])


def test_missing_consent_is_announced_next_to_the_box(topics, open_page):
    page = open_page(PHONE)
    page.goto("/subscribe")
    page.get_by_label("Email address").fill("reader@example.org")
    page.get_by_role("button", name="Sign up").click()
    consent = page.get_by_label("I have read and agreed to the Privacy Policy")
    expect(consent).to_have_attribute("aria-invalid", "true")
    # Screen readers read the error with the box (aria-describedby) and announce it (role=alert).
    expect(consent).to_have_accessible_description("Please tick the box to agree, so we may email you.")
    expect(page.get_by_role("alert")).to_have_text("Please tick the box to agree, so we may email you.")
    expect(page.get_by_label("Email address")).to_have_value("reader@example.org")
    assert open_page.watch.external == []


def save_screenshots(page, open_page) -> None:
    """The form as a reader sees it, on a phone (filled in) and on a desktop (empty)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "subscribe-mobile.png"), full_page=True)
    desktop = open_page(DESKTOP)
    desktop.goto("/subscribe")
    desktop.screenshot(path=str(SCREENSHOTS / "subscribe-desktop.png"))
