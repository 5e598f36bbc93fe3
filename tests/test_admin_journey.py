"""One continuous journey through the workspace in a real browser (Debian's Chromium through Playwright), on
a phone (390 px) and on a desktop (1280 px).

The app is served over HTTP on a local port with the `smtp` mail backend pointed at a real local SMTP server,
and a delivery worker drains the outbox as `mailer serve` does. Only the first admin is made in a shell (the
real CLI, in a process of its own); everything after happens in the browser: the admin adds an editor; the
editor turns on two-factor and signs in with it, adds a topic, a reader signs up for it and confirms from the
mail, the editor writes an article with a petition link, previews the next digest as a reader of that topic,
sends a test to themself (it arrives), schedules a weekly digest, sends an urgent alert to the topic after the
confirm step (it arrives), the reader follows the tracked petition link from that mail, the click shows on
the alert's page, and the admin's audit log lists each step.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pyotp
import pytest
from playwright.sync_api import expect

from mailer import clock
from tests.conftest import make_config
from tests.editors import PASSWORD
from tests.test_admin_browser import READER_PHONE
from tests.test_browser import DESKTOP, PHONE, live_server, open_page  # noqa: F401 (fixtures)

pytestmark = pytest.mark.browser
expect.set_options(timeout=15_000)

ROOT = Path(__file__).resolve().parent.parent
ADMIN, EDITOR, READER = "admin@example.org", "sam@example.org", "reader@example.org"
PETITION_URL = "https://petition.example.net/free-the-kyiv-four"
TITLE = "Free the Kyiv Four"


@pytest.fixture
def config(database_url, tmp_path, smtp_server):
    """The test config with the smtp backend pointed at the local SMTP server, polled every second."""
    return make_config(database_url, tmp_path, mail={"backend": "smtp"}, delivery={"poll_seconds": 1},
                       **{"mail.smtp": {"host": smtp_server.host, "port": smtp_server.port, "timeout": 5}})


@pytest.fixture
def delivery_worker(app, live_server):
    """The delivery worker `mailer serve` runs beside the web app, in a thread of this process."""
    from mailer.outbox import backends
    from mailer.outbox.worker import WorkerThread

    worker = WorkerThread(app, backends.from_config(app.config["MAILER"]))
    worker.start()
    yield worker
    worker.stop()
    worker.join(10)


def _create_admin_in_a_shell(database_url: str, tmp_path: Path) -> None:
    """`mailer users create … --role admin`, the one step typed in a shell."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("MAILER_")}
    env.update(MAILER_DATABASE_URL=database_url, MAILER_SITE_SECRET_KEY="test-secret", PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-m", "mailer", "users", "create", ADMIN, "--role", "admin",
                           "--password-stdin"], input=PASSWORD + "\n", env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def _arrived(smtp_server, recipient: str, subject: str, count: int = 1):
    """Wait for the delivery worker to hand the mail to the SMTP server; the last message for `recipient`
    whose subject contains `subject`."""
    deadline = time.monotonic() + 60
    while True:
        found = [r.message for r in list(smtp_server.received)
                 if recipient in r.rcpt_tos and subject in str(r.message["Subject"])]
        if len(found) >= count:
            return found[-1]
        assert time.monotonic() < deadline, f"no mail {subject!r} for {recipient} reached the SMTP server"
        time.sleep(0.2)


def _text(message) -> str:
    return message.get_body(("plain",)).get_content()


def _path(url: str) -> str:
    """A link from a mail (https://news.example.org/…) as a path to open on the local server."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _sign_in(page, email: str, *, totp_secret: str | None = None) -> None:
    page.goto("/admin/")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    if totp_secret is not None:
        page.get_by_label("The 6-digit code").fill(pyotp.TOTP(totp_secret).at(clock.now()))
        page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()


def _fits(page, viewport) -> None:
    """Nothing on the page makes a reader scroll sideways."""
    page.wait_for_load_state("load")
    assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"], page.url


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["390px", "1280px"])
def test_the_whole_journey_from_the_first_admin_to_a_click_on_an_alert(
        viewport, open_page, chromium, live_server, delivery_worker, smtp_server, database_url, tmp_path):
    _create_admin_in_a_shell(database_url, tmp_path)
    # Frozen so the second sign-in's code is a new one (a code is taken once): the clock moves 30 s below.
    clock.freeze(clock.now())
    try:
        _journey(viewport, open_page, chromium, live_server, smtp_server)
    finally:
        clock.thaw()
    assert open_page.watch.external == []
    # The only complaints allowed: the digest preview's sandboxed frame refusing what its policy refuses.
    assert [e for e in open_page.watch.errors if "sandbox" not in e] == []


def _journey(viewport, open_page, chromium, live_server, smtp_server) -> None:
    # The admin adds an editor.
    admin = open_page(viewport)
    _sign_in(admin, ADMIN)
    admin.get_by_role("link", name="Accounts", exact=True).click()
    admin.get_by_label("Email address").fill(EDITOR)
    admin.get_by_label("First password").fill(PASSWORD)
    admin.get_by_label("Role", exact=True).select_option("editor")
    admin.get_by_role("button", name="Add account").click()
    expect(admin.get_by_text(f"Account created for {EDITOR}")).to_be_visible()
    _fits(admin, viewport)

    # The editor signs in, turns on two-factor, and signs in again with a code.
    editor = open_page(viewport)
    _sign_in(editor, EDITOR)
    editor.get_by_role("link", name=EDITOR).click()
    editor.get_by_role("link", name="Turn on two-factor").click()
    secret = editor.locator("#secret").inner_text()
    editor.get_by_label("Code from the app").fill(pyotp.TOTP(secret).at(clock.now()))
    editor.get_by_role("button", name="Turn on two-factor").click()
    expect(editor.locator("ul.codes code")).to_have_count(10)
    _fits(editor, viewport)
    editor.get_by_role("button", name="Sign out").click()
    clock.advance(timedelta(seconds=30))
    _sign_in(editor, EDITOR, totp_secret=secret)

    # A topic, and a reader who signs up for it and confirms from the mail.
    editor.get_by_role("link", name="Topics", exact=True).click()
    editor.get_by_label("Slug (lower-case").fill("ukraine")
    editor.get_by_label("Title readers see (made").fill("Ukraine")
    editor.get_by_role("button", name="Add topic").click()
    expect(editor.get_by_text("Topic Ukraine added")).to_be_visible()
    reader = open_page(viewport)
    reader.goto("/subscribe")
    reader.get_by_label("Email address").fill(READER)
    reader.get_by_label("Ukraine").check()
    reader.get_by_label("I have read and agreed to the Privacy Policy").check()
    reader.get_by_role("button", name="Sign up").click()
    expect(reader.get_by_role("heading", level=1)).to_have_text("Thanks for signing up!")
    confirmation = _arrived(smtp_server, READER, "onfirm")
    reader.goto(_path(next(word for word in _text(confirmation).split() if "/confirm/" in word)))
    reader.get_by_role("button", name="Confirm my subscription").click()
    expect(reader.get_by_role("heading", level=1)).to_have_text("You are subscribed")

    # An article with a petition link.
    editor.get_by_role("link", name="Articles", exact=True).click()
    editor.get_by_role("link", name="Write an article").click()
    editor.get_by_label("Title").fill(TITLE)
    editor.get_by_label("Body (Markdown)").fill("Four volunteers were detained in Kyiv on Monday.\n\n"
                                                "They face **ten years** for handing out food.")
    editor.get_by_label("Ukraine").check()
    editor.locator("#action-0-label").fill("Sign the petition")
    editor.locator("#action-0-url").fill(PETITION_URL)
    editor.locator("#action-0-kind").select_option("petition")
    editor.get_by_role("button", name="Save").click()
    expect(editor.get_by_text(f"Saved “{TITLE}”.")).to_be_visible()
    _fits(editor, viewport)

    # The next digest, previewed as a reader of that one topic, and a test to the editor's own address.
    editor.get_by_role("link", name="Next digest", exact=True).click()
    expect(editor.get_by_text(TITLE)).to_be_visible()
    fieldset = editor.locator("fieldset").first
    assert fieldset.evaluate("f => getComputedStyle(f).borderTopStyle") != "none"
    editor.locator("form", has=editor.get_by_role("button", name="Preview for these topics")) \
        .get_by_label("Ukraine").check()
    editor.get_by_role("button", name="Preview for these topics").click()
    expect(editor.get_by_role("heading", name="Preview of the next digest")).to_be_visible()
    expect(editor.locator("pre.mail-preview")).to_contain_text(TITLE)
    expect(editor.frame_locator("iframe.mail-preview").get_by_text(TITLE).first).to_be_visible()
    _fits(editor, viewport)
    editor.get_by_role("button", name=f"Send a test to me ({EDITOR})").click()
    expect(editor.get_by_text(f"A test is on its way to {EDITOR}.")).to_be_visible()
    test_mail = _arrived(smtp_server, EDITOR, "[Test]")
    assert TITLE in _text(test_mail)

    # A weekly digest: Mondays at 09:00, Lisbon time.
    editor.get_by_role("link", name="Next digest", exact=True).click()
    editor.get_by_label("Mon", exact=True).check()
    editor.get_by_label("At (hours:minutes)").fill("09:00")
    editor.get_by_label("Time zone").select_option("Europe/Lisbon")
    editor.get_by_role("button", name="Add schedule").click()
    schedules = editor.locator("table.list").first
    expect(schedules).to_contain_text("0 9 * * MON")
    expect(schedules).to_contain_text("Europe/Lisbon")
    assert len(re.findall(r"Mon \d{4}-\d\d-\d\d 09:00", schedules.inner_text())) == 3
    _fits(editor, viewport)

    # An urgent alert to the one topic, through its confirm step.
    editor.get_by_role("link", name="Urgent alert", exact=True).click()
    option = editor.locator("#article_id option", has_text=TITLE)
    editor.get_by_label("Article").select_option(option.get_attribute("value"))
    editor.get_by_label("Ukraine").check()
    editor.get_by_role("button", name="Preview and count readers").click()
    expect(editor.get_by_text("It reaches 1 reader(s)")).to_be_visible()
    _fits(editor, viewport)
    editor.get_by_role("button", name="Send the alert to 1 reader(s) now").click()
    expect(editor.get_by_role("heading", name=re.compile(r"Alert \d+ is going out"))).to_be_visible()
    alert = _arrived(smtp_server, READER, TITLE)
    tracked = re.search(r"Sign the petition: (https://news\.example\.org/l/\S+)", _text(alert))
    assert tracked, _text(alert)

    # The reader follows the tracked petition link from the mail; the petition site answers locally.
    # A phone's browser: a headless one's user agent counts as a link scanner, and a scanner's click
    # is left out of the send's figures.
    mail_reader = chromium.new_context(viewport=viewport, base_url=live_server, user_agent=READER_PHONE)
    try:
        mail_reader.route(re.compile(r"^https://petition\.example\.net/"), lambda route: route.fulfill(
            status=200, content_type="text/html", body="<title>Petition</title><h1>Free the Kyiv Four</h1>"))
        page = mail_reader.new_page()
        page.goto("/subscribe")
        page.set_content(f'<a href="{live_server}{_path(tracked.group(1))}">Sign the petition</a>')  # the mail
        page.get_by_role("link", name="Sign the petition").click()
        page.wait_for_url(PETITION_URL)
    finally:
        mail_reader.close()

    # The click shows on the alert's page.
    editor.get_by_role("link", name="Sends", exact=True).click()
    editor.get_by_role("link", name=re.compile(TITLE)).first.click()
    row = editor.locator("tr", has_text="Sign the petition")
    expect(row).to_contain_text("petition")
    expect(row.locator("td").nth(3)).to_have_text("1")
    expect(editor.locator(".card", has_text="unique clicks")).to_contain_text("1")
    expect(editor.locator(".card", has_text="action rate")).to_contain_text("100.0%")
    _fits(editor, viewport)

    # The admin's audit log lists each step.
    admin.get_by_role("link", name="Audit log", exact=True).click()
    log = admin.locator("table.list").inner_text()
    for who, action in (("cli", "editor.create"), (ADMIN, "editor.create"), (EDITOR, "editor.totp_enable"),
                        (EDITOR, "editor.sign_in"), (EDITOR, "topic.create"), (EDITOR, "article.create"),
                        (EDITOR, "digest.test"), (EDITOR, "schedule.add"), (EDITOR, "alert.send")):
        assert re.search(rf"{re.escape(who)}\s+{re.escape(action)}", log), (who, action)
    _fits(admin, viewport)


def test_a_csv_upload_refreshes_its_progress_page_until_the_import_is_done(open_page, session, tmp_path):
    from sqlalchemy import func, select

    from subscribers.models import Subscriber
    from tests.editors import make_editor

    make_editor()
    session.remove()
    emails = [f"reader{n:04d}@example.org" for n in range(2500)]
    csv_file = tmp_path / "supporters.csv"
    csv_file.write_text("email,name\n" + "".join(f"{email},Reader {n}\n" for n, email in enumerate(emails)))
    page = open_page(PHONE)
    _sign_in(page, "editor@example.org")
    page.get_by_role("link", name="Subscribers", exact=True).click()
    page.goto("/admin/subscribers/import")
    page.get_by_label("CSV file").set_input_files(str(csv_file))
    page.get_by_label("These people already gave consent elsewhere").check()
    page.get_by_role("button", name="Import").click()
    page.wait_for_url(re.compile(r"/admin/subscribers/imports/\d+$"))
    # No script: the page reloads itself (meta refresh) until the import is done.
    expect(page.locator("#import-state")).to_have_text(
        re.compile(r"^Done: 2500 row\(s\) read, 2500 imported,\s+0 skipped\.$"), timeout=120_000)
    _fits(page, PHONE)
    assert page.locator('meta[http-equiv="refresh"]').count() == 0
    session.remove()
    assert session.scalar(select(func.count()).select_from(Subscriber)) == 2500
    assert open_page.watch.external == [] and open_page.watch.errors == []
