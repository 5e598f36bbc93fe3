"""The workspace in a real browser (Debian's Chromium through Playwright): an admin makes an editor's
account on a desktop; the editor turns on two-factor and signs in with it on a phone.

Run with SCREENSHOTS=1 to refresh the README's workspace screenshots in docs/screenshots/.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta

import pyotp
import pytest
from playwright.sync_api import expect

from sqlalchemy import select

from mailer import clock
from mailer.articles.models import Article
from tests import factories
from tests.editors import PASSWORD, make_editor
from tests.test_browser import DESKTOP, PHONE, SCREENSHOTS, live_server, open_page  # noqa: F401 (fixtures)

# What a reader's phone browser sends (headless Chromium says HeadlessChrome, as scanners' robots do).
READER_PHONE = ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
                "Chrome/131.0.0.0 Mobile Safari/537.36")

pytestmark = pytest.mark.browser
# Generous waits: a loaded 2-core CI machine can take seconds to render a page.
expect.set_options(timeout=15_000)


def _sign_in(page, email: str, password: str = PASSWORD) -> None:
    page.goto("/admin/")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def test_admin_creates_an_editor_who_signs_in_with_two_factor_on_a_phone(open_page, session):
    make_editor("admin@example.org", "admin")
    factories.fixed_articles(session)
    factories.subscriber(session, "reader@example.org", topics=("lgbtiq-rights",))
    session.commit()
    session.remove()
    clock.freeze(clock.now())
    try:
        desk = open_page(DESKTOP)
        _sign_in(desk, "admin@example.org")
        expect(desk.get_by_role("heading", name="Dashboard")).to_be_visible()
        if os.environ.get("SCREENSHOTS") == "1":
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            desk.screenshot(path=str(SCREENSHOTS / "admin-dashboard.png"), full_page=True)
        desk.get_by_role("link", name="Accounts").click()
        desk.get_by_label("Email address").fill("sam@example.org")
        desk.get_by_label("First password").fill(PASSWORD)
        desk.get_by_label("Role", exact=True).select_option("editor")
        desk.get_by_role("button", name="Add account").click()
        expect(desk.get_by_text("Account created for sam@example.org")).to_be_visible()

        phone = open_page(PHONE)
        _sign_in(phone, "sam@example.org")
        expect(phone.get_by_role("heading", name="Dashboard")).to_be_visible()
        phone.wait_for_load_state("load")  # the stylesheet applied, on a slow machine too
        assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        expect(phone.get_by_role("link", name="Accounts")).to_have_count(0)  # not an admin's menu
        for room in ("Topics", "Sends", "Subscribers", "Feeds"):  # wide tables scroll inside their box
            phone.get_by_role("link", name=room, exact=True).click()
            phone.wait_for_load_state("load")
            assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], room
        phone.get_by_role("link", name="sam@example.org").click()
        phone.get_by_role("link", name="Turn on two-factor").click()
        secret = phone.locator("#secret").inner_text()
        phone.get_by_label("Code from the app").fill(pyotp.TOTP(secret).at(clock.now()))
        phone.get_by_role("button", name="Turn on two-factor").click()
        codes = phone.locator("ul.codes code").all_inner_texts()
        assert len(codes) == 10 and all(re.fullmatch(r"[0-9a-f]{5}-[0-9a-f]{5}", code) for code in codes)
        phone.get_by_role("button", name="Sign out").click()
        expect(phone.get_by_role("heading", name="You are signed out")).to_be_visible()

        clock.advance(timedelta(seconds=30))
        _sign_in(phone, "sam@example.org")
        phone.get_by_label("The 6-digit code").fill("000000")
        phone.get_by_role("button", name="Continue").click()
        expect(phone.get_by_text("That code is not right")).to_be_visible()
        phone.get_by_label("The 6-digit code").fill(pyotp.TOTP(secret).at(clock.now()))
        phone.get_by_role("button", name="Continue").click()
        expect(phone.get_by_role("heading", name="Dashboard")).to_be_visible()
        assert phone.goto("/admin/accounts/").status == 403

        desk.goto("/admin/accounts/audit")
        log = desk.locator("table.list").inner_text()
        for action in ("editor.create", "editor.totp_enable", "editor.sign_in"):
            assert action in log
    finally:
        clock.thaw()
    assert open_page.watch.external == []
    # The refused code (401) and the admin page (403) are meant; nothing else may fail.
    assert [e for e in open_page.watch.errors if "status of 401" not in e and "status of 403" not in e] == []


def test_an_editor_sends_an_urgent_alert_to_one_topic_from_a_phone(open_page, session, deliver, chromium,
                                                                   live_server):
    make_editor()
    factories.fixed_articles(session)
    factories.subscriber(session, "reader@example.org", topics=("lgbtiq-rights",))
    factories.subscriber(session, "climate@example.org", topics=("climate",))
    session.commit()
    article_id = str(session.scalar(select(Article.id).where(Article.title.startswith("Two Dead"))))
    session.remove()
    phone = open_page(PHONE)
    _sign_in(phone, "editor@example.org")
    phone.get_by_role("link", name="Urgent alert").click()
    phone.get_by_label("Article").select_option(article_id)
    phone.get_by_label("LGBTIQ Rights").check()
    phone.get_by_role("button", name="Preview and count readers").click()
    expect(phone.get_by_text("It reaches 1 reader(s)")).to_be_visible()
    preview = phone.frame_locator("iframe.preview")
    expect(preview.get_by_text("Sign the petition for Russia to intervene")).to_be_visible()
    phone.wait_for_load_state("load")
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    phone.get_by_role("button", name="Send the alert to 1 reader(s) now").click()
    expect(phone.get_by_role("heading", name=re.compile(r"Alert \d+ is going out"))).to_be_visible()
    messages = deliver()
    assert [m["To"].addresses[0].addr_spec for m in messages] == ["reader@example.org"]
    assert open_page.watch.external == []

    # The reader follows the tracked petition link in the mail; the editor sees the click.
    text = messages[0].get_body(("plain",)).get_content()
    tracked = re.search(r">> Sign the petition for Russia to intervene: (https://news\.example\.org(/l/\S+))", text)
    # A reader's phone browser: headless Chromium names itself HeadlessChrome, as scanners' robots do,
    # and a scanner's fetch is left out of the action rate (mailer.links.scanners).
    reader = chromium.new_page(viewport=PHONE, user_agent=READER_PHONE)
    # The petition site is outside this machine: answer for it locally.
    reader.route("https://**/*", lambda route: route.fulfill(
        status=200, content_type="text/html", body="<title>Petition</title><h1>Russia, intervene</h1>"))
    reader.goto(live_server + "/subscribe")
    reader.set_content(f'<a href="{live_server}{tracked.group(2)}">Sign the petition</a>')  # the mail, opened
    reader.get_by_role("link", name="Sign the petition").click()
    reader.wait_for_url(factories.PETITION_URL)
    reader.close()
    phone.get_by_role("link", name="Sends").click()
    phone.get_by_role("link", name=re.compile("Urgent: Two Dead")).first.click()
    expect(phone.get_by_text("Sign the petition for Russia to intervene").first).to_be_visible()
    phone.wait_for_load_state("load")
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page_text = phone.locator("main").inner_text()
    assert "100.0%" in page_text  # action rate: the one reader it reached clicked the petition
    if os.environ.get("SCREENSHOTS") == "1":
        desk = open_page(DESKTOP)
        _sign_in(desk, "editor@example.org")
        desk.goto(phone.url)
        desk.screenshot(path=str(SCREENSHOTS / "admin-send-results.png"), full_page=True)
    # The only complaint allowed: the preview refusing the article's remote image, as its policy says.
    assert [e for e in open_page.watch.errors if "img-src" not in e] == []


def test_an_editor_copies_the_blogs_signup_box_on_a_phone(open_page, app, session, chromium, live_server):
    from subscribers import embed

    make_editor()
    session.remove()
    clock.freeze(clock.now())  # the snippet's token is stamped when it is made: the page's and ours alike
    try:
        expected = embed.snippet(app.config["MAILER"], app.config["SECRET_KEY"], app.jinja_env)
        phone = open_page(PHONE)
        phone.context.grant_permissions(["clipboard-read", "clipboard-write"])
        _sign_in(phone, "editor@example.org")
        phone.get_by_role("link", name="Signup box").click()
        expect(phone.get_by_role("heading", name="The signup box for your blog")).to_be_visible()
        phone.wait_for_load_state("load")  # the stylesheet and the Copy script, on a slow machine too
        code = phone.get_by_label("The signup box (HTML)")
        expect(code).to_have_value(expected)
        expect(code).not_to_be_editable()
        phone.get_by_role("button", name="Copy").click()
        expect(phone.locator("#snippet-status")).to_have_text("Copied. Now paste it into your blog.")
        assert phone.evaluate("navigator.clipboard.readText()") == expected
        preview = phone.frame_locator("iframe.signup-preview")
        expect(preview.get_by_label("Email address")).to_be_visible()
        # The bots' field stays off-screen in the preview too (its inline style is allowed there).
        assert preview.get_by_label("Leave this field empty").bounding_box()["x"] < -1000
        assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        # Without JavaScript the code is there to select by hand, and no Copy button that does nothing.
        no_script = chromium.new_context(viewport=PHONE, base_url=live_server, java_script_enabled=False)
        try:
            plain = no_script.new_page()
            _sign_in(plain, "editor@example.org")
            plain.goto("/admin/signup-box/")
            expect(plain.get_by_label("The signup box (HTML)")).to_have_value(expected)
            expect(plain.get_by_role("button", name="Copy")).to_be_hidden()
        finally:
            no_script.close()
    finally:
        clock.thaw()
    assert open_page.watch.external == [] and open_page.watch.errors == []
