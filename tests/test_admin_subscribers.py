"""The workspace's Subscribers room: search (address, name, state, topic; paged, newest first), one
subscriber's page (consent proof, mail, clicks; the view itself audited), suppress and lift a manual
suppression only, and the CSV export."""

from __future__ import annotations

import csv
import io
import re
import time
from datetime import timedelta

import pytest
from sqlalchemy import select

from mailer import clock
from mailer.admin import import_jobs
from mailer.editors.models import AuditEvent, ImportJob
from mailer.leases import Lease
from mailer.links.models import Click, Link
from mailer.outbox.models import OutboxMessage, OutboxState
from mailer.sends.models import Send, SendKind
from subscribers import importing
from subscribers.models import ConsentAction, ConsentEvent, Subscriber, SubscriberState, Suppression
from tests import factories
from tests.editors import make_editor, post_form, sign_in

INDEX = "/admin/subscribers/"


@pytest.fixture
def editor_client(client):
    make_editor()
    sign_in(client)
    return client


def _audit(session) -> list[tuple[str, str, str]]:
    session.expire_all()
    return list(session.execute(select(AuditEvent.action, AuditEvent.object_id, AuditEvent.detail)
                                .where(AuditEvent.action.like("subscriber.%")).order_by(AuditEvent.id)))


def _suppression(session, email: str) -> Suppression | None:
    session.expire_all()
    return session.scalar(select(Suppression).where(Suppression.email == email))


def _plain(html: str) -> None:
    assert "<script" not in html and "style=" not in html


# ---- search ------------------------------------------------------------------------------------------

def test_search_by_address_name_state_and_topic(editor_client, session):
    factories.subscriber(session, "ana@example.org", name="Ana Lima", topics=("ukraine",))
    factories.subscriber(session, "bob@example.net", name="Bob", topics=("climate",),
                         state=SubscriberState.pending)
    factories.subscriber(session, "cleo@example.org", name="Cleo", state=SubscriberState.unsubscribed)
    session.commit()

    def found(**args) -> set[str]:
        response = editor_client.get(INDEX, query_string=args)
        assert response.status_code == 200
        html = response.get_data(as_text=True)
        _plain(html)
        assert '<div class="table-wrap">' in html
        return {e for e in ("ana@example.org", "bob@example.net", "cleo@example.org") if f">{e}</a>" in html}

    assert found() == {"ana@example.org", "bob@example.net", "cleo@example.org"}
    assert found(q="EXAMPLE.org") == {"ana@example.org", "cleo@example.org"}
    assert found(q="%") == set()  # a LIKE wildcard is searched for as itself
    assert found(name="lima") == {"ana@example.org"}
    assert found(state="pending") == {"bob@example.net"}
    assert found(topic="ukraine") == {"ana@example.org"}
    assert found(q="example.org", state="unsubscribed") == {"cleo@example.org"}


def test_a_bad_state_filter_is_a_400_with_the_reason(editor_client, session):
    factories.subscriber(session, "ana@example.org")
    session.commit()
    response = editor_client.get(INDEX, query_string={"state": "deleted"})
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "There is no state &#39;deleted&#39;: choose one of pending, confirmed, unsubscribed." in html
    assert "ana@example.org</a>" not in html


def test_the_list_is_paged_by_50_newest_first(editor_client, session):
    start = clock.now() - timedelta(days=1)
    for n in range(51):
        row = factories.subscriber(session, f"reader{n:02d}@example.org")
        row.created_at = start + timedelta(minutes=n)
    session.commit()
    first = editor_client.get(INDEX, query_string={"q": "reader"}).get_data(as_text=True)
    assert first.index("reader50@example.org") < first.index("reader49@example.org")
    assert "reader00@example.org" not in first and "reader01@example.org" in first
    assert "page=2" in first and "q=reader" in first
    second = editor_client.get(INDEX, query_string={"q": "reader", "page": 2}).get_data(as_text=True)
    assert "reader00@example.org" in second and "reader01@example.org" not in second
    assert "page=1" in second and "page=3" not in second


def test_the_room_is_for_signed_in_editors_only(client, session):
    response = client.get(INDEX)
    assert response.status_code == 302 and "/admin/login" in response.location


# ---- one subscriber ----------------------------------------------------------------------------------

def test_a_subscribers_page_shows_consent_mail_and_clicks_and_audits_the_view(editor_client, session):
    reader = factories.subscriber(session, "ana@example.org", name="Ana Lima", topics=("ukraine", "climate"),
                                  is_paused=True)
    session.add(ConsentEvent(subscriber_id=reader.id, action=ConsentAction.given, privacy_policy_version="2026-03",
                             source="web", ip_address="203.0.113.7", user_agent="Firefox/140",
                             detail="climate ukraine"))
    send = Send(kind=SendKind.alert, slug="alert-1", subject="Sign the petition today")
    session.add(send)
    session.flush()
    session.add(OutboxMessage(kind="alert", dedupe_key=f"send:{send.id}:{reader.id}", recipient=reader.email,
                              subscriber_id=reader.id, send_id=send.id, message_id="<m1@example.org>",
                              subject="Sign the petition today", state=OutboxState.failed,
                              last_error="550 mailbox full"))
    link = Link(send_id=send.id, url=factories.PETITION_URL, label="Sign the petition", kind="petition")
    session.add(link)
    session.flush()
    session.add(Click(link_id=link.id, send_id=send.id, subscriber_id=reader.id))
    session.commit()

    response = editor_client.get(f"{INDEX}{reader.id}")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    _plain(html)
    for text in ("<h1>ana@example.org</h1>", "<dd>Ana Lima</dd>", "<dd>confirmed</dd>",
                 "<dt>Paused</dt><dd>yes</dd>", "<dd>climate, ukraine</dd>", "<td>given</td>", "<td>2026-03</td>",
                 "<td>web</td>", "<td>203.0.113.7</td>", "<td>Firefox/140</td>", "<td>climate ukraine</td>",
                 "<td>alert</td>", "<td>failed</td>", "<td>550 mailbox full</td>",
                 "Sign the petition (petition)", f'/admin/sends/{send.id}">Sign the petition today</a>'):
        assert text in html, text
    # By id only: an erasure must not leave the address in the audit log.
    assert _audit(session) == [("subscriber.view", str(reader.id), "")]


def test_an_unknown_subscriber_is_a_404(editor_client, session):
    assert editor_client.get(f"{INDEX}999999").status_code == 404
    assert editor_client.post(f"{INDEX}999999/suppress").status_code in (400, 404)
    assert _audit(session) == []


# ---- suppression -------------------------------------------------------------------------------------

def test_suppress_and_lift_a_manual_suppression(editor_client, session):
    reader = factories.subscriber(session, "ana@example.org")
    session.commit()
    page = f"{INDEX}{reader.id}"
    response = post_form(editor_client, page, f"{page}/suppress", detail="asked by phone")
    assert response.status_code == 302
    row = _suppression(session, "ana@example.org")
    assert (row.reason, row.detail) == ("manual", "asked by phone")
    assert "is suppressed" in editor_client.get(page).get_data(as_text=True)

    again = post_form(editor_client, page, f"{page}/suppress", detail="twice")
    assert again.status_code == 400 and "already suppressed" in again.get_data(as_text=True)

    assert post_form(editor_client, page, f"{page}/unsuppress").status_code == 302
    assert _suppression(session, "ana@example.org") is None
    changes = [row for row in _audit(session) if row[0] != "subscriber.view"]
    assert changes == [("subscriber.suppress", str(reader.id), "manual"),
                       ("subscriber.unsuppress", str(reader.id), "manual")]


@pytest.mark.parametrize("reason", ["bounced", "complained", "erased"])
def test_a_suppression_not_made_here_cannot_be_lifted(editor_client, session, reason):
    reader = factories.subscriber(session, "ana@example.org", suppressed=reason)
    session.commit()
    page = f"{INDEX}{reader.id}"
    html = editor_client.get(page).get_data(as_text=True)
    assert "This suppression cannot be lifted here:" in html and "Lift the suppression" not in html
    response = editor_client.post(f"{page}/unsuppress", data={"csrf_token": _token(html)})
    assert response.status_code == 400
    assert "This suppression cannot be lifted here:" in response.get_data(as_text=True)
    assert _suppression(session, "ana@example.org").reason == reason


def test_a_post_without_csrf_token_changes_nothing(editor_client, session):
    reader = factories.subscriber(session, "ana@example.org")
    session.commit()
    response = editor_client.post(f"{INDEX}{reader.id}/suppress", data={"detail": "no token"})
    assert response.status_code == 400
    assert _suppression(session, "ana@example.org") is None


def _token(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


# ---- export ------------------------------------------------------------------------------------------

def test_export_is_the_cli_csv_and_audited(editor_client, session):
    factories.subscriber(session, "=1+2@example.org", name="Ana", topics=("ukraine",))
    factories.subscriber(session, "bob@example.org", state=SubscriberState.pending, is_paused=True)
    session.commit()
    response = editor_client.get(f"{INDEX}export.csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0] == ["email", "name", "state", "topics", "created_at", "confirmed_at"]
    assert [r[:4] for r in rows[1:]] == [["'=1+2@example.org", "Ana", "confirmed", "ukraine"],
                                         ["bob@example.org", "", "pending (paused)", ""]]
    assert _audit(session) == [("subscriber.export", "", "2 subscribers")]
    assert session.scalar(select(Subscriber.id).where(Subscriber.email == "bob@example.org"))


# ---- import ------------------------------------------------------------------------------------------

def _upload(client, content: bytes, filename: str = "list.csv", **data):
    token = _token(client.get(f"{INDEX}import").get_data(as_text=True))
    return client.post(f"{INDEX}import", data={"csrf_token": token, "file": (io.BytesIO(content), filename), **data},
                       content_type="multipart/form-data")


def _emails(session) -> dict[str, SubscriberState]:
    session.expire_all()
    return {email: state for email, state in session.execute(select(Subscriber.email, Subscriber.state))}


def _progress_page(response) -> str:
    """Where an accepted upload sends the editor: its import's progress page."""
    assert response.status_code == 303, response.get_data(as_text=True)
    assert re.fullmatch(r"/admin/subscribers/imports/\d+", response.location)
    return response.location


def _follow(client, location: str) -> str:
    """Load the progress page and reload it, as its refresh does, until it stops refreshing; the last HTML."""
    deadline = time.monotonic() + 120
    while True:
        page = client.get(location)
        assert page.status_code == 200
        html = page.get_data(as_text=True)
        _plain(html)
        if '<meta http-equiv="refresh" content="2">' not in html:
            return html
        assert "row(s) done" in html
        assert time.monotonic() < deadline, "the import did not finish"
        time.sleep(0.2)


def _job(session) -> ImportJob:
    session.expire_all()
    job = session.scalar(select(ImportJob).order_by(ImportJob.id.desc()))
    session.rollback()  # SQLite: the import thread writes; this test holds no transaction open meanwhile
    return job


def test_a_file_with_bad_rows_shows_each_and_imports_nothing(editor_client, session):
    factories.topic(session, "ukraine")
    session.commit()
    content = ("email,name,topics\n"
               "new@example.org,New Reader,ukraine\n"
               "not-an-address,Bad,\n"
               "other@example.org,Other,nosuchtopic\n"
               "a@example.org,One,two,three\n"
               "second@example.org,,\n").encode()
    response = _upload(editor_client, content)
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    _plain(html)
    assert "Nothing was imported: 3 of 5 row(s) have errors." in html
    for line, reason in ((3, "&#39;not-an-address&#39;: "), (4, "Unknown topic: nosuchtopic"),
                         (5, "4 fields, but the header has 3")):
        assert re.search(rf"<tr><td>{line}</td><td>[^<]*{reason}", html), (line, reason)
    assert "<tr><td>2</td>" not in html and "<tr><td>6</td>" not in html
    assert _emails(session) == {} and _audit(session) == [] and _job(session) is None


def test_a_clean_upload_imports_in_the_background_and_reports_each_skip(editor_client, session):
    factories.topic(session, "ukraine")
    factories.subscriber(session, "old@example.org")
    factories.subscriber(session, "gone@example.org", state=SubscriberState.unsubscribed, suppressed="bounced")
    session.commit()
    content = ("email,name,topics\n"
               "new@example.org,New Reader,ukraine\n"
               "new@EXAMPLE.org,Again,\n"  # the same address: a domain has no case
               "old@example.org,Old,\n"
               "gone@example.org,Gone,\n"
               "second@example.org,,\n").encode()
    html = _follow(editor_client, _progress_page(_upload(editor_client, content)))
    assert "Done: 5 row(s) read, 2 imported,\n3 skipped." in html
    assert "line 3: skipped: new@example.org: same address as line 2" in html
    assert "line 5: skipped: gone@example.org: bounced; an import does not subscribe it again" in html
    emails = _emails(session)
    assert emails["new@example.org"] == SubscriberState.pending  # double opt-in: the confirmation mail is queued
    assert emails["second@example.org"] == SubscriberState.pending
    assert emails["gone@example.org"] == SubscriberState.unsubscribed
    job = _job(session)
    assert (job.state, job.content, job.done_rows, job.created_count, job.skipped_count) == ("done", None, 5, 2, 3)
    assert _audit(session) == [("subscriber.import", str(job.id), "list.csv: 5 rows"),
                               ("subscriber.import.end", str(job.id), "list.csv: imported 2, skipped 3")]
    listing = editor_client.get(f"{INDEX}import").get_data(as_text=True)
    assert f'href="/admin/subscribers/imports/{job.id}">list.csv</a>' in listing


def test_a_few_thousand_rows_through_the_form_are_each_imported_once(editor_client, session):
    emails = [f"reader{n:04d}@example.org" for n in range(3000)]
    content = "email,name\n" + "".join(f"{email},{'Reader ' * 6}{n}\n" for n, email in enumerate(emails))
    assert len(content) > 64 * 1024
    html = _follow(editor_client, _progress_page(_upload(editor_client, content.encode(), confirmed="y")))
    assert "Done: 3000 row(s) read, 3000 imported,\n0 skipped." in html
    session.expire_all()
    rows = list(session.execute(select(Subscriber.email, Subscriber.state)))
    session.rollback()
    assert sorted(email for email, _ in rows) == emails  # each row once, none missing
    assert {state for _, state in rows} == {SubscriberState.confirmed}
    job = _job(session)
    assert (job.state, job.content, job.done_rows, job.total_rows, job.created_count) == ("done", None, 3000, 3000, 3000)
    assert _audit(session)[0] == ("subscriber.import", str(job.id), "list.csv: 3000 rows (confirmed)")


def _crashed_job(session, tmp_path, editor, emails, done: int, lease_expires_at) -> ImportJob:
    """What a process that stopped half way leaves: the rows of its committed chunks, the job `running` with
    those rows counted, and its lease."""
    content = "email,name\n" + "".join(f"{email},\n" for email in emails)
    first_part = tmp_path / "list.csv"
    first_part.write_text("email,name\n" + "".join(f"{email},\n" for email in emails[:done]))
    assert importing.import_csv(first_part, topic_slugs=[], is_confirmed=True).imported == done
    job = ImportJob(created_by_id=editor.id, filename="list.csv", content=content, is_confirmed=True,
                    state="running", total_rows=len(emails), done_rows=done, created_count=done)
    session.add(job)
    session.flush()
    session.add(Lease(name=f"import-job:{job.id}", holder="stopped-host:4242:0", expires_at=lease_expires_at))
    session.commit()
    return job


def test_a_job_left_running_by_a_stopped_process_resumes_when_viewed_and_imports_each_row_once(
        client, session, tmp_path):
    editor = make_editor()
    emails = [f"reader{n:04d}@example.org" for n in range(2000)]
    job = _crashed_job(session, tmp_path, editor, emails, 1000, clock.now() - timedelta(minutes=5))
    sign_in(client)
    html = _follow(client, f"{INDEX}imports/{job.id}")
    assert "Done: 2000 row(s) read, 2000 imported,\n0 skipped." in html
    session.expire_all()
    assert sorted(session.scalars(select(Subscriber.email))) == emails
    session.rollback()
    job = _job(session)
    # It went on after row 1000: had it started again from the top, 1000 rows would count as skipped.
    assert (job.state, job.content, job.created_count, job.skipped_count) == ("done", None, 2000, 0)
    assert session.scalar(select(Lease).where(Lease.name == f"import-job:{job.id}")) is None


def test_a_job_whose_process_still_holds_it_is_not_started_twice(client, session, tmp_path):
    editor = make_editor()
    emails = [f"reader{n:04d}@example.org" for n in range(10)]
    job = _crashed_job(session, tmp_path, editor, emails, 5, clock.now() + timedelta(minutes=1))
    sign_in(client)
    html = client.get(f"{INDEX}imports/{job.id}").get_data(as_text=True)
    assert '<meta http-equiv="refresh" content="2">' in html and "Importing: 5 of 10 row(s) done" in html
    # No thread of this process took the job: the live holder still has it, and nobody else may take it.
    assert not import_jobs.claim(job.id, "someone-else")
    session.expire_all()
    assert session.get(Lease, f"import-job:{job.id}").holder == "stopped-host:4242:0"
    assert _job(session).done_rows == 5
    assert client.get(f"{INDEX}imports/999").status_code == 404


def test_a_job_that_has_just_ended_is_not_taken_again(client, session):
    # A page that read the job while it ran may ask for it just after its thread ended it and let its lease go.
    job = ImportJob(filename="list.csv", content=None, state="done", total_rows=1, done_rows=1, created_count=1)
    session.add(job)
    session.commit()
    assert not import_jobs.claim(job.id, "a-page-view")
    session.expire_all()
    assert session.get(Lease, f"import-job:{job.id}") is None and _job(session).state == "done"


def test_a_job_that_cannot_go_on_stops_with_the_reason_and_forgets_the_file(client, session):
    editor = make_editor()
    # Its topic was deleted after the file was checked.
    job = ImportJob(created_by_id=editor.id, filename="list.csv", content="email\nana@example.org\n",
                    topics="nosuchtopic", state="queued", total_rows=1)
    session.add(job)
    session.commit()
    sign_in(client)
    html = _follow(client, f"{INDEX}imports/{job.id}")
    assert "Stopped after 0 of 1 row(s)" in html and "The import stopped: Unknown topic: nosuchtopic." in html
    job = _job(session)
    assert (job.state, job.content) == ("failed", None)
    assert _emails(session) == {}
    assert _audit(session) == [("subscriber.import.end", str(job.id), "list.csv: stopped after 0 of 1 rows")]


@pytest.mark.parametrize("content, reason", [
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", "is not UTF-8 text"),
    (b"name,topics\nAna,ukraine\n", "has no &#39;email&#39; column in its header line"),
    (b"", "is empty"),
])
def test_a_file_that_is_not_a_subscriber_csv_is_a_400_that_imports_nothing(editor_client, session, content, reason):
    response = _upload(editor_client, content, filename="picture.png")
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "Nothing was imported: picture.png " in html and reason in html
    assert _emails(session) == {} and _audit(session) == []


def test_an_upload_without_a_file_or_a_csrf_token_is_refused(editor_client, session):
    token = _token(editor_client.get(f"{INDEX}import").get_data(as_text=True))
    no_file = editor_client.post(f"{INDEX}import", data={"csrf_token": token}, content_type="multipart/form-data")
    assert no_file.status_code == 400 and "Choose a CSV file to import." in no_file.get_data(as_text=True)
    no_token = editor_client.post(f"{INDEX}import", data={"file": (io.BytesIO(b"email\na@example.org\n"), "a.csv")},
                                  content_type="multipart/form-data")
    assert no_token.status_code == 400
    assert _emails(session) == {}
