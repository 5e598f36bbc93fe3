"""The Sends room: how a digest went (figures, clicks, CSV), retrying its failed mail, cancelling its queue."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

from sqlalchemy import select, update

from mailer import clock
from mailer.sends.models import Send
from mailer.links.models import Link
from mailer.editors.models import AuditEvent
from mailer.outbox.models import OutboxMessage, OutboxState
from subscribers.models import Subscriber, SubscriberState
from tests import factories
from tests.editors import make_editor, post_form, sign_in

RELAY_REPLY = "550 5.1.1 <b@example.org>: Recipient address rejected: User unknown"


def queue_digest(runner, session, *emails: str) -> Send:
    for email in emails:
        factories.subscriber(session, email)
    session.commit()
    result = runner.invoke(["digests", "compose", "--send-now"])
    assert result.exit_code == 0, result.output
    session.remove()
    return session.scalars(select(Send).order_by(Send.id.desc())).first()


def rows_of(session, send_id: int) -> dict[str, OutboxMessage]:
    session.remove()
    rows = session.scalars(select(OutboxMessage).where(OutboxMessage.send_id == send_id))
    return {row.recipient: row for row in rows}


def figure(page: str, name: str) -> str:
    return re.search(r'<span class="figure">([^<]+)</span> ' + re.escape(name), page).group(1)


def signed_in(client):
    make_editor()
    sign_in(client)


def test_a_sends_figures_clicks_and_csv(runner, client, session, frozen_clock, deliver):
    factories.fixed_articles(session)
    send = queue_digest(runner, session, "a@example.org", "b@example.org")
    messages = deliver()
    assert len(messages) == 2
    reader_a = next(m for m in messages if m["To"].addresses[0].addr_spec == "a@example.org")
    html = reader_a.get_body(preferencelist=("html",)).get_content()
    petition = re.search(r'href="https://news.example.org(/l/[^"]+)"[^>]*>Sign the petition', html).group(1)
    frozen_clock.advance(timedelta(minutes=90))
    assert client.get(petition).status_code == 302
    assert client.get(petition).status_code == 302  # the same reader twice: one unique clicker
    # b unsubscribes two days later: counted; a formula-like label must stay text in the CSV.
    session.execute(update(Subscriber).where(Subscriber.email == "b@example.org").values(
        state=SubscriberState.unsubscribed, unsubscribed_at=send.queued_at + timedelta(days=2)))
    session.execute(update(Link).where(Link.send_id == send.id, Link.url == factories.PETITION_URL)
                    .values(label="=HYPERLINK(\"https://evil.example\")"))
    session.commit()
    signed_in(client)

    listing = client.get("/admin/sends/").get_data(as_text=True)
    assert f'href="/admin/sends/{send.id}"' in listing
    assert "<td>2</td><td>2</td><td>0</td><td>1</td>" in listing  # recipients, delivered, failed, unique clicks

    response = client.get(f"/admin/sends/{send.id}")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert figure(page, "recipients") == "2" and figure(page, "delivered") == "2"
    assert figure(page, "failed") == "0" and figure(page, "cancelled") == "0"
    assert figure(page, "queued or sending") == "0"
    assert figure(page, "unsubscribed within 7 days") == "1"
    assert figure(page, "unique clicks") == "1"
    assert figure(page, "action rate") == "50.0%"  # one of two delivered readers signed
    assert f'href="/archive/{send.slug}"' in page
    assert f"<td>petition</td><td class=\"url\"><a href=\"{factories.PETITION_URL}\"" in page
    assert "<td>2</td><td>1</td><td>0</td></tr>" in page  # the petition: 2 clicks, 1 unique, no scanner
    assert "Clicks over the first 48 hours (2)" in page
    assert "2026-11-23 10:00: 2</title>" in page  # both clicks in the second hour's bar
    assert "<script" not in page and "style=" not in page

    export = client.get(f"/admin/sends/{send.id}/export.csv")
    assert export.status_code == 200 and export.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(export.get_data(as_text=True))))
    assert rows[0] == ["label", "kind", "url", "clicks", "unique_clickers", "scanner_fetches"]
    petition_row = next(row for row in rows if len(row) == 6 and row[2] == factories.PETITION_URL)
    assert petition_row == ["'=HYPERLINK(\"https://evil.example\")", "petition", factories.PETITION_URL, "2", "1",
                            "0"]
    totals = dict(row for row in rows[rows.index(["figure", "value"]) + 1:])
    assert totals["delivered"] == "2" and totals["failed"] == "0" and totals["recipients"] == "2"
    assert totals["unique_clickers"] == "1" and totals["unsubscribed_within_7_days"] == "1"
    assert totals["action_rate"] == "0.5000"


def test_failed_messages_are_shown_and_retried(runner, client, session, frozen_clock, deliver):
    factories.fixed_articles(session)
    send = queue_digest(runner, session, "a@example.org", "b@example.org")
    session.execute(update(OutboxMessage).where(OutboxMessage.send_id == send.id).values(
        state=OutboxState.failed, last_error=RELAY_REPLY, attempts=5))
    session.commit()
    signed_in(client)
    page_url = f"/admin/sends/{send.id}"
    page = client.get(page_url).get_data(as_text=True)
    assert figure(page, "failed") == "2"
    assert "a@example.org" in page and "Recipient address rejected: User unknown" in page

    rows = rows_of(session, send.id)
    one = rows["b@example.org"].id
    frozen_clock.advance(timedelta(hours=1))
    response = post_form(client, page_url, f"{page_url}/messages/{one}/retry")
    assert response.status_code == 302
    rows = rows_of(session, send.id)
    assert rows["b@example.org"].state == OutboxState.queued and rows["b@example.org"].attempts == 0
    assert rows["b@example.org"].next_attempt_at == clock.now()
    assert rows["a@example.org"].state == OutboxState.failed
    assert session.scalar(select(AuditEvent).where(AuditEvent.action == "send.retry")).object_id == str(send.id)

    # The same message again is no longer failed: refused with the reason, nothing changed.
    response = post_form(client, page_url, f"{page_url}/messages/{one}/retry")
    assert response.status_code == 400 and "not failed" in response.get_data(as_text=True)
    # A message of another send is refused too.
    factories.article(session, slug="later", title="A Later Story", age=-timedelta(minutes=30))
    session.commit()
    frozen_clock.advance(timedelta(hours=1))
    other = queue_digest(runner, session, "c@example.org")
    foreign = next(iter(rows_of(session, other.id).values())).id
    response = post_form(client, page_url, f"{page_url}/messages/{foreign}/retry")
    assert response.status_code == 400 and "not one of this send" in response.get_data(as_text=True)
    assert rows_of(session, other.id)["c@example.org"].state == OutboxState.queued
    # Without the CSRF token nothing happens.
    assert client.post(f"{page_url}/messages/{rows['a@example.org'].id}/retry").status_code == 400
    assert rows_of(session, send.id)["a@example.org"].state == OutboxState.failed

    # Retry all asks once more, then queues every failed message again.
    confirm = client.get(f"{page_url}/retry").get_data(as_text=True)
    assert "Retry every failed message" in confirm and 'name="confirmed"' in confirm
    assert post_form(client, f"{page_url}/retry", f"{page_url}/retry").status_code == 200  # not confirmed
    assert rows_of(session, send.id)["a@example.org"].state == OutboxState.failed
    response = post_form(client, f"{page_url}/retry", f"{page_url}/retry", confirmed="1")
    assert response.status_code == 302
    assert "1 failed message(s) are queued again." in client.get(page_url).get_data(as_text=True)
    delivered = {m["To"].addresses[0].addr_spec for m in deliver()}
    assert {"a@example.org", "b@example.org"} <= delivered
    assert {row.state for row in rows_of(session, send.id).values()} == {OutboxState.sent}


def test_cancel_withdraws_the_queue_and_the_worker_sends_none_of_it(runner, client, session, frozen_clock, deliver):
    factories.fixed_articles(session)
    send = queue_digest(runner, session, "a@example.org", "b@example.org", "c@example.org")
    # One message is with a worker right now (its lease still running): cancelling leaves it alone.
    session.execute(update(OutboxMessage).where(OutboxMessage.recipient == "c@example.org").values(
        state=OutboxState.sending, claimed_at=clock.now()))
    session.commit()
    signed_in(client)
    page_url = f"/admin/sends/{send.id}"
    assert f'href="{page_url}/cancel"' in client.get(page_url).get_data(as_text=True)
    confirm = client.get(f"{page_url}/cancel").get_data(as_text=True)
    assert "will not be sent" in confirm

    response = post_form(client, f"{page_url}/cancel", f"{page_url}/cancel", confirmed="1")
    assert response.status_code == 302
    rows = rows_of(session, send.id)
    assert rows["a@example.org"].state == rows["b@example.org"].state == OutboxState.cancelled
    assert rows["c@example.org"].state == OutboxState.sending
    assert session.get(Send, send.id).cancelled_at == clock.now()
    audit = session.scalar(select(AuditEvent).where(AuditEvent.action == "send.cancel"))
    assert audit.detail == "2 queued message(s) cancelled."
    page = client.get(page_url).get_data(as_text=True)
    assert figure(page, "cancelled") == "2" and figure(page, "queued or sending") == "1"

    assert deliver() == []  # the worker claims none of the cancelled messages
    assert {row.state for row in rows_of(session, send.id).values()} == {OutboxState.cancelled,
                                                                          OutboxState.sending}

    # Nothing left to cancel: said plainly, nothing changed.
    response = post_form(client, f"{page_url}/cancel", f"{page_url}/cancel", confirmed="1")
    assert response.status_code == 400 and "Nothing to cancel" in response.get_data(as_text=True)
    assert len(session.scalars(select(AuditEvent).where(AuditEvent.action == "send.cancel")).all()) == 1


def test_an_unknown_send_is_not_found(client, session):
    signed_in(client)
    for url in ("/admin/sends/999", "/admin/sends/999/export.csv", "/admin/sends/999/cancel", "/admin/sends/999/retry"):
        assert client.get(url).status_code == 404
    assert client.get("/admin/sends/").status_code == 200


def test_the_room_is_behind_sign_in(client):
    response = client.get("/admin/sends/")
    assert response.status_code == 302 and "/admin/login" in response.location
