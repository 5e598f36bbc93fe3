"""The workspace's "Next digest" room: hold back, a note, preview, a test to me, send now, schedules."""

from __future__ import annotations

import os
import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import func, select

from mailer.articles.models import Article
from mailer.sends.models import Send
from mailer.digests.models import DigestSchedule
from mailer.editors.models import AuditEvent
from mailer.outbox.models import OutboxMessage
from tests import factories
from tests.contract import check_message
from tests.editors import PASSWORD, csrf_token, make_editor, post_form, sign_in
# The live server and the watched browser page of the reader's browser tests serve here too.
from tests.test_browser import PHONE, SCREENSHOTS, live_server, open_page  # noqa: F401

PAGE = "/admin/digest/"
CHECHNYA = factories.CHECHNYA["title"]
UKRAINE = factories.UKRAINE["title"]
CLIMATE = factories.CLIMATE["title"]


def count(session, model) -> int:
    return session.scalar(select(func.count()).select_from(model))


def signed_in_editor(client, session):
    factories.fixed_articles(session)
    session.commit()
    make_editor()
    sign_in(client)


def form_key(client) -> str:
    page = client.get("/admin/digest/send").get_data(as_text=True)
    return re.search(r'name="form_key" type="hidden" value="([^"]+)"', page).group(1)


def send_now(client, key: str):
    return client.post("/admin/digest/send", data={"csrf_token": csrf_token(client, PAGE), "form_key": key})


def actions(session) -> list[str]:
    """The audit log of this room (signing in is logged too)."""
    return [action for action in session.scalars(select(AuditEvent.action).order_by(AuditEvent.id))
            if action.startswith(("article.", "digest.", "schedule."))]


def test_the_page_lists_what_is_new_and_needs_a_sign_in(client, session, frozen_clock):
    factories.fixed_articles(session)
    session.commit()
    assert client.get(PAGE).status_code == 302
    make_editor()
    sign_in(client)
    response = client.get(PAGE)
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert CHECHNYA in page and UKRAINE in page and CLIMATE in page
    assert "style=" not in page and "<script" not in page
    assert 'href="/admin/digest/" aria-current="page">Next digest' in page


def test_a_held_article_waits_for_the_next_digest(client, session, frozen_clock, deliver):
    signed_in_editor(client, session)
    factories.subscriber(session, "all@example.org")
    session.commit()
    climate = session.scalar(select(Article).where(Article.title == CLIMATE))
    assert post_form(client, PAGE, PAGE, held=str(climate.id), note="").status_code == 302
    assert "held back for later" in client.get(PAGE).get_data(as_text=True)

    assert send_now(client, form_key(client)).status_code == 302
    first = session.scalar(select(Send))
    assert [a.title for a in first.articles] == [CHECHNYA, UKRAINE]
    text = check_message(deliver()[0], postal_address="")["text"]
    assert CHECHNYA in text and CLIMATE not in text

    post_form(client, PAGE, PAGE, note="")  # untick: it goes in the next one
    send_now(client, form_key(client))
    second = session.scalars(select(Send).order_by(Send.id)).all()[1]
    assert [a.title for a in second.articles] == [CLIMATE]
    assert actions(session) == ["article.hold", "digest.send", "article.release", "digest.send"]


def test_the_note_goes_at_the_top_of_the_next_digest_only(client, session, frozen_clock, deliver):
    signed_in_editor(client, session)
    factories.subscriber(session, "all@example.org")
    session.commit()
    post_form(client, PAGE, PAGE, note="Thank you for marching with us on Saturday.")
    assert "Thank you for marching" in client.get(PAGE).get_data(as_text=True)

    send_now(client, form_key(client))
    parts = check_message(deliver()[0], postal_address="")
    assert parts["text"].index("Thank you for marching") < parts["text"].index(CHECHNYA)
    assert parts["html"].index("Thank you for marching") < parts["html"].index("<h1")
    send = session.scalar(select(Send))
    assert send.editor_note == "Thank you for marching with us on Saturday."
    assert "Thank you for marching" in send.archive_html
    assert "Thank you for marching" not in client.get(PAGE).get_data(as_text=True)  # cleared once used


def test_preview_for_one_topic_shows_only_its_articles_and_no_send(client, session, frozen_clock):
    signed_in_editor(client, session)
    post_form(client, PAGE, PAGE, note="A word first.")
    response = client.get("/admin/digest/preview?topic=climate")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "frame-src 'self'" in response.headers["Content-Security-Policy"]
    text = re.search(r'<pre class="mail-preview">(.*?)</pre>', page, re.S).group(1)
    assert CLIMATE in text and CHECHNYA not in text and UKRAINE not in text and "A word first." in text
    html = client.get("/admin/digest/preview.html?topic=climate")
    assert html.status_code == 200 and "frame-ancestors 'self'" in html.headers["Content-Security-Policy"]
    body = html.get_data(as_text=True)
    assert CLIMATE in body and CHECHNYA not in body and "A word first." in body
    assert "/l/" not in body and "/u/" not in body and 'href="#"' in body
    assert count(session, Send) == 0


def test_preview_as_a_subscriber_carries_none_of_their_tokens(client, session, frozen_clock):
    signed_in_editor(client, session)
    factories.subscriber(session, "two@example.org", topics=("lgbtiq-rights", "ukraine"))
    session.commit()
    page = client.get("/admin/digest/preview?email=two@example.org").get_data(as_text=True)
    text = re.search(r'<pre class="mail-preview">(.*?)</pre>', page, re.S).group(1)
    assert CHECHNYA in text and UKRAINE in text and CLIMATE not in text
    assert "news.example.org/l/" not in text and "Unsubscribe: #" in text
    assert client.get("/admin/digest/preview?email=nobody@example.org").status_code == 404
    assert count(session, Send) == 0


def test_a_test_mail_reaches_the_editor_only(client, session, frozen_clock, deliver):
    signed_in_editor(client, session)
    factories.subscriber(session, "all@example.org")
    session.commit()
    response = post_form(client, "/admin/digest/preview?topic=ukraine", "/admin/digest/test", topic="ukraine")
    assert response.status_code == 302
    messages = deliver()
    assert [m["To"].addresses[0].addr_spec for m in messages] == ["editor@example.org"]
    assert str(messages[0]["Subject"]) == f"[Test] Accidentally Alex update: {UKRAINE}"
    text = messages[0].get_body(preferencelist=("plain",)).get_content()
    assert UKRAINE in text and CHECHNYA not in text
    assert count(session, Send) == 0
    assert session.scalar(select(OutboxMessage.kind)) == "test"
    assert actions(session) == ["digest.test"]


def test_a_test_mail_goes_through_smtp(client, session, database_url, tmp_path, frozen_clock, smtp_server):
    from mailer import db
    from mailer.outbox import backends
    from mailer.outbox.worker import run_once
    from tests.conftest import make_config

    signed_in_editor(client, session)
    assert post_form(client, "/admin/digest/preview", "/admin/digest/test").status_code == 302
    db.session.remove()
    config = make_config(database_url, tmp_path, mail={"backend": "smtp"},
                         **{"mail.smtp": {"host": smtp_server.host, "port": smtp_server.port, "timeout": 5}})
    backend = backends.from_config(config)
    try:
        run_once(config, backend)
    finally:
        backend.close()
    [received] = smtp_server.received
    assert received.rcpt_tos == ["editor@example.org"]
    assert b"Subject: [Test] Accidentally Alex update:" in received.content


def test_send_now_confirms_then_sends_once_per_form(client, session, frozen_clock, deliver):
    signed_in_editor(client, session)
    factories.subscriber(session, "all@example.org")
    factories.subscriber(session, "two@example.org", topics=("lgbtiq-rights", "ukraine"))
    factories.subscriber(session, "climate@example.org", topics=("climate",))
    session.commit()
    page = client.get("/admin/digest/send").get_data(as_text=True)
    assert "<strong>3 reader(s)</strong>" in page and count(session, Send) == 0
    key = form_key(client)

    assert send_now(client, key).status_code == 302
    assert "Digest queued to 3 reader(s)" in client.get(PAGE).get_data(as_text=True)
    assert count(session, Send) == 1 and count(session, OutboxMessage) == 3
    send = session.scalar(select(Send))
    assert send.form_key == key and send.created_by_id is not None

    send_now(client, key)  # a double click, or the form sent again
    assert "This form was already sent" in client.get(PAGE).get_data(as_text=True)
    assert count(session, Send) == 1 and count(session, OutboxMessage) == 3
    assert len(deliver()) == 3
    assert actions(session) == ["digest.send"]


def test_send_now_racing_its_own_double_click_keeps_the_first_send(client, session, frozen_clock, monkeypatch):
    from mailer.sends import queries
    from mailer.sends.models import SendKind

    signed_in_editor(client, session)
    factories.subscriber(session, "all@example.org")
    key = form_key(client)
    # The other request of a double click committed its send after this one looked for the key.
    session.add(Send(kind=SendKind.digest, slug="the-other-request", subject="The other request", form_key=key))
    session.commit()
    real_lookup, looks = queries.send_by_form_key, []

    def late_lookup(db_session, wanted):
        looks.append(wanted)
        return None if len(looks) == 1 else real_lookup(db_session, wanted)

    monkeypatch.setattr(queries, "send_by_form_key", late_lookup)
    assert send_now(client, key).status_code == 302
    assert "This form was already sent" in client.get(PAGE).get_data(as_text=True)
    assert session.scalars(select(Send.slug)).all() == ["the-other-request"]
    assert count(session, OutboxMessage) == 0 and actions(session) == []


def test_send_now_with_nothing_new_sends_nothing(client, session, frozen_clock):
    make_editor()
    sign_in(client)
    response = client.get("/admin/digest/send", follow_redirects=True)
    assert "Nothing new since the last digest" in response.get_data(as_text=True)
    send_now(client, "k" * 32)
    assert count(session, Send) == 0


def test_send_now_needs_the_csrf_token(client, session, frozen_clock):
    signed_in_editor(client, session)
    response = client.post("/admin/digest/send", data={"form_key": "k" * 32})
    assert response.status_code == 400 and count(session, Send) == 0


def test_add_and_remove_a_schedule(client, session, frozen_clock):
    make_editor()
    sign_in(client)
    response = post_form(client, PAGE, "/admin/digest/schedules", day=["MON", "FRI"], time="09:30",
                         timezone="Europe/London")
    assert response.status_code == 302
    schedule = session.scalar(select(DigestSchedule))
    assert (schedule.cron, schedule.timezone) == ("30 9 * * MON,FRI", "Europe/London")
    page = client.get(PAGE).get_data(as_text=True)
    assert "Mon 2026-11-23 09:30 GMT<br>Fri 2026-11-27 09:30 GMT<br>Mon 2026-11-30 09:30 GMT" in page

    assert post_form(client, PAGE, f"/admin/digest/schedules/{schedule.id}/remove").status_code == 302
    assert count(session, DigestSchedule) == 0
    assert actions(session) == ["schedule.add", "schedule.remove"]


def test_a_bad_time_or_zone_saves_nothing(client, session, frozen_clock):
    make_editor()
    sign_in(client)
    bad_zone = post_form(client, PAGE, "/admin/digest/schedules", day="MON", time="09:00", timezone="Mars/Olympus")
    assert bad_zone.status_code == 400 and "is not a time zone" in bad_zone.get_data(as_text=True)
    bad_time = post_form(client, PAGE, "/admin/digest/schedules", day="MON", time="25:00", timezone="UTC")
    assert bad_time.status_code == 400 and "like 09:00" in bad_time.get_data(as_text=True)
    assert count(session, DigestSchedule) == 0 and actions(session) == []


@pytest.mark.browser
def test_the_room_fits_a_phone_and_frames_its_preview(session, frozen_clock, open_page):
    factories.fixed_articles(session)
    session.commit()
    make_editor()
    session.remove()
    page = open_page(PHONE)
    page.goto("/admin/login")
    page.get_by_label("Email address").fill("editor@example.org")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.goto(PAGE)
    expect(page.get_by_role("heading", level=1)).to_have_text("Next digest")
    page.wait_for_load_state("load")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]

    page.get_by_label("Climate", exact=True).check()
    page.get_by_role("button", name="Preview for these topics").click()
    expect(page.frame_locator("iframe.mail-preview").get_by_role("heading", level=1)).to_have_text(CLIMATE)
    expect(page.locator("pre.mail-preview")).to_contain_text(CLIMATE)
    if os.environ.get("SCREENSHOTS") == "1":
        page.screenshot(path=str(SCREENSHOTS / "admin-digest-preview.png"), full_page=True)
    page.wait_for_load_state("load")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    assert open_page.watch.errors == [] and open_page.watch.external == []


def test_a_paused_schedule_sends_nothing_and_resumes_at_its_next_time(client, session, frozen_clock):
    """Time travel through the workspace: a weekly schedule, paused over its slot, then resumed."""
    from datetime import UTC, datetime, timedelta

    from mailer.digests import tasks

    factories.fixed_articles(session)
    factories.subscriber(session, "all@example.org")
    session.commit()
    make_editor()
    sign_in(client)
    post_form(client, PAGE, "/admin/digest/schedules", day=["TUE"], time="09:00", timezone="UTC")
    schedule = session.scalar(select(DigestSchedule))
    assert schedule.next_run_at == datetime(2026, 11, 24, 9, 0, tzinfo=UTC)  # frozen on Monday 09:00
    assert post_form(client, PAGE, f"/admin/digest/schedules/{schedule.id}/pause").status_code == 302
    assert "Paused: nothing goes out" in client.get(PAGE).get_data(as_text=True)

    frozen_clock.advance(timedelta(days=2))  # Wednesday: Tuesday's slot passed while paused
    session.remove()
    tasks.send_due_digests()
    assert count(session, Send) == 0

    sign_in(client)  # two days on, the session has ended for idleness
    assert post_form(client, PAGE, f"/admin/digest/schedules/{schedule.id}/pause").status_code == 302
    session.expire_all()
    assert session.get(DigestSchedule, schedule.id).next_run_at == datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    session.remove()
    tasks.send_due_digests()  # resumed on Wednesday: the missed Tuesday is not sent late
    assert count(session, Send) == 0
    frozen_clock.advance(timedelta(days=6))  # the next Tuesday, 09:00
    session.remove()
    tasks.send_due_digests()
    assert count(session, Send) == 1
    assert [a for a in actions(session) if a.startswith("schedule.")] == [
        "schedule.add", "schedule.pause", "schedule.resume"]
