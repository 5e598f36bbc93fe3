"""GDPR erasure: nothing of the person left in the database, counts kept, never imported or mailed again."""

from __future__ import annotations

import csv
import hashlib
import hmac
import re
from pathlib import Path

import pytest
from sqlalchemy import MetaData, func, select

from mailer.sends.models import Send, SendKind
from mailer.links.models import Click, Link
from mailer.outbox.models import OutboxMessage, OutboxState
from mailer.topics.models import SubscriberTopic, Topic
from subscribers import operations, tokens
from subscribers.models import ConsentEvent, InboxProof, Subscriber, SubscriberState, Suppression
from tests.contract import check_message
from tests.test_signup import csrf_token, sign_up
from tests.test_bad_input import page_text

ADDRESS = "zebulon.quux@example.org"
NAME = "Zebulon Quux"
BROWSER = "Mozilla/5.0 (ZebulonPhone 7)"
IP = "198.51.100.77"


def places_holding(engine, needle: str) -> list[str]:
    """Every table.column, across every table in the database, whose value contains `needle`."""
    metadata = MetaData()
    metadata.reflect(engine)
    found = []
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(table.select()):
                for column, value in zip(table.columns, row):
                    if isinstance(value, (bytes, memoryview)):
                        value = bytes(value).decode("utf-8", "replace")
                    if value is not None and needle.lower() in str(value).lower():
                        found.append(f"{table.name}.{column.name}")
    return sorted(set(found))


def count(session, model) -> int:
    return session.scalar(select(func.count()).select_from(model))


@pytest.fixture
def zebulon(client, session, deliver):
    """A subscriber with everything a subscriber leaves behind: consent, topics, mail, a click, a bounce."""
    session.add(Topic(slug="ukraine", title="Ukraine"))
    session.commit()
    client.environ_base.update(REMOTE_ADDR="198.51.100.77", HTTP_USER_AGENT=BROWSER)
    sign_up(client, email=ADDRESS, name=NAME, topics=["ukraine"])
    [confirmation] = deliver()
    confirm_path = re.search(r"https://news.example.org(/confirm/\S+)",
                             confirmation.get_body(("plain",)).get_content()).group(1)
    client.post(confirm_path, data={"csrf_token": csrf_token(client, confirm_path)})
    deliver()
    subscriber = session.scalar(select(Subscriber).where(Subscriber.email == ADDRESS))
    send = Send(kind=SendKind.digest, slug="first-digest", subject="Accidentally Alex update")
    session.add(send)
    session.flush()
    link = Link(send_id=send.id, url="https://petition.example.org/sign", label="Sign the petition")
    session.add(link)
    session.flush()
    session.add(Click(link_id=link.id, send_id=send.id, subscriber_id=subscriber.id))
    session.add(OutboxMessage(kind="digest", dedupe_key=f"send:{send.id}:{subscriber.id}", recipient=ADDRESS,
                              subscriber_id=subscriber.id, send_id=send.id, message_id="<d1@news.example.org>",
                              state=OutboxState.failed, last_error=f"550 5.1.1 <{ADDRESS}>: mailbox full"))
    session.add(Suppression(email=ADDRESS, reason="bounced"))
    session.commit()
    return subscriber.id


def maildir_files_naming(maildir: Path, needle: str) -> list[Path]:
    return [p for folder in ("new", "cur") if (maildir / folder).is_dir() for p in (maildir / folder).iterdir()
            if needle.lower().encode() in p.read_bytes().lower()]


def test_erase_leaves_no_copy_of_the_address_anywhere(app, runner, session, zebulon, config):
    engine = app.extensions["engine"]
    maildir = Path(config["mail"]["maildir"])
    session.remove()
    # The scan finds what it looks for: before erasure the address, name, IP address and browser are
    # in the database, and the maildir backend's copies are on disk.
    assert {"subscribers.email", "outbox.recipient", "outbox.content", "outbox.last_error",
            "suppressions.email"} <= set(places_holding(engine, ADDRESS))
    assert "subscribers.name" in places_holding(engine, NAME)
    assert places_holding(engine, IP) == ["consent_events.ip_address"]
    assert places_holding(engine, BROWSER) == ["consent_events.user_agent"]
    assert len(maildir_files_naming(maildir, ADDRESS)) == 2  # confirmation and welcome

    result = runner.invoke(["subscribers", "erase", ADDRESS])
    assert result.exit_code == 0 and result.stdout.strip().endswith("2 Maildir copies deleted")
    session.remove()
    for needle in (ADDRESS, NAME, IP, BROWSER):
        assert places_holding(engine, needle) == [], needle
    assert maildir_files_naming(maildir, ADDRESS) == [] and maildir_files_naming(maildir, NAME) == []
    marker = session.scalar(select(Suppression))
    assert (marker.reason, marker.detail) == ("erased", "bounced")
    # The marker is a keyed hash: the key comes from the instance secret ("test-secret"), not the database.
    key = hmac.new(b"test-secret", b"mailer.erased-address", hashlib.sha256).digest()
    assert marker.email == "hmac-sha256:" + hmac.new(key, ADDRESS.encode(), hashlib.sha256).hexdigest()


def test_a_seized_database_cannot_tell_by_guessing_who_asked_to_be_erased(app, runner, session, zebulon):
    """Before keyed markers, hashing a list of guessed addresses found the erased ones in the database."""
    assert runner.invoke(["subscribers", "erase", ADDRESS]).exit_code == 0
    session.remove()
    engine = app.extensions["engine"]
    guess = ADDRESS.encode()
    for digest in (hashlib.sha256(guess).hexdigest(), hashlib.sha1(guess).hexdigest(), hashlib.md5(guess).hexdigest(),
                   hmac.new(b"", guess, hashlib.sha256).hexdigest()):
        assert places_holding(engine, digest) == []
    # With the secret key, the instance itself still recognises the address.
    from subscribers import queries
    assert queries.suppression_reasons([ADDRESS, "someone.else@example.org"]) == {ADDRESS: "erased"}


def test_erase_keeps_counts_and_makes_clicks_anonymous(app, runner, session, zebulon):
    outbox_before = count(session, OutboxMessage)
    session.remove()
    result = runner.invoke(["subscribers", "erase", ADDRESS])
    assert result.stdout.strip() == (f"erased {ADDRESS}: 2 consent events, 1 topic choices; "
                                     "3 messages blanked, 1 clicks made anonymous, 2 Maildir copies deleted")
    assert count(session, Subscriber) == count(session, ConsentEvent) == count(session, SubscriberTopic) == 0
    assert count(session, OutboxMessage) == outbox_before
    assert [m.recipient for m in session.scalars(select(OutboxMessage))] == ["", "", ""]
    assert [m.content for m in session.scalars(select(OutboxMessage))] == [None, None, None]
    [click] = session.scalars(select(Click))
    assert click.subscriber_id is None and click.link.label == "Sign the petition"


def test_erase_with_the_smtp_backend_leaves_other_maildir_files_alone(app, runner, session, zebulon, config,
                                                                     tmp_path):
    """Only the maildir backend's own folder is searched, and only when it is the backend in use."""
    from mailer.config import load
    maildir = Path(config["mail"]["maildir"])
    before = sorted(p.name for p in (maildir / "new").iterdir())
    app.config["MAILER"] = load(path=None, environ={}, overrides={
        **{s: dict(config[s]) for s in config}, "mail": {**config["mail"], "backend": "smtp"}})
    result = runner.invoke(["subscribers", "erase", ADDRESS])
    assert result.exit_code == 0 and "Maildir" not in result.stdout
    assert sorted(p.name for p in (maildir / "new").iterdir()) == before


def test_mail_queued_for_an_erased_person_is_never_delivered(app, client, session, deliver):
    sign_up(client, email=ADDRESS)
    subscriber = session.scalar(select(Subscriber))
    operations.erase(session, subscriber)
    session.commit()
    assert deliver() == []
    [row] = session.scalars(select(OutboxMessage))
    assert (row.state, row.recipient, row.last_error) == (OutboxState.failed, "", "recipient erased")


def test_erased_person_is_not_imported_but_may_sign_up_again_on_the_web(
        app, client, runner, session, deliver, tmp_path, config):
    sign_up(client, email=ADDRESS)
    deliver()
    operations.erase(session, session.scalar(select(Subscriber)))
    session.commit()

    path = tmp_path / "list.csv"
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([["email"], [ADDRESS]])
    result = runner.invoke(["subscribers", "import", str(path), "--confirmed"])
    assert result.stdout.strip() == "imported 0, skipped 1, errors 0"
    assert "erased on request" in result.stderr
    assert count(session, Subscriber) == 0

    # The web form is the way back: double opt-in, and confirming lifts the hashed suppression.
    assert sign_up(client, email=ADDRESS).status_code == 302
    first, mail = deliver()  # the Maildir still holds the first confirmation
    parts = check_message(mail, postal_address=config["site"]["postal_address"])
    confirm_path = re.search(r"https://news.example.org(/confirm/\S+)", parts["text"]).group(1)
    assert count(session, Suppression) == 1  # signing up alone does not lift it: only confirming does
    client.post(confirm_path, data={"csrf_token": csrf_token(client, confirm_path)})
    assert session.scalar(select(Subscriber.state)) == SubscriberState.confirmed
    assert count(session, Suppression) == 0


def _inbox_link(messages) -> str:
    text = messages[-1].get_body(("plain",)).get_content()
    return re.search(r"https://news.example.org(/inbox/\S+)", text).group(1)


def test_erase_me_needs_a_link_from_the_inbox(app, client, session, deliver, zebulon, config):
    subscriber = session.get(Subscriber, zebulon)
    token = tokens.preferences_token(subscriber.id, subscriber.token_version)
    page = client.get(f"/preferences/{token}").get_data(as_text=True)
    assert f'href="/preferences/{token}/erase">Erase me</a>' in page
    assert ADDRESS not in page and "z\u2022\u2022\u2022@example.org" in page

    # The preferences link alone shows what happens next and changes nothing.
    page = client.get(f"/preferences/{token}/erase")
    assert "we email a link to z\u2022\u2022\u2022@example.org" in page_text(page) and ADDRESS not in page_text(page)
    assert count(session, Subscriber) == 1

    # A POST without the form's CSRF token (another site's form) is refused.
    refused = client.post(f"/preferences/{token}/erase", data={})
    assert refused.status_code == 400 and count(session, InboxProof) == 0

    sent = client.post(f"/preferences/{token}/erase",
                       data={"csrf_token": csrf_token(client, f"/preferences/{token}/erase")})
    assert sent.status_code == 200 and "Check your inbox" in page_text(sent)
    assert count(session, Subscriber) == 1
    [proof] = session.scalars(select(InboxProof))
    link = _inbox_link(deliver())
    nonce = link.removeprefix("/inbox/")
    # Only a hash of the link's random part is stored.
    assert proof.nonce_hash == hashlib.sha256(nonce.encode()).hexdigest() and nonce not in proof.nonce_hash
    assert proof.purpose == "erase" and proof.used_at is None

    # A scanner's GET spends nothing.
    assert "Erase everything about me" in page_text(client.get(link))
    assert client.get(link).status_code == 200

    done = client.post(link, data={"csrf_token": csrf_token(client, link)})
    assert done.status_code == 200 and "Your data is erased" in page_text(done)
    assert count(session, Subscriber) == 0 and count(session, InboxProof) == 0
    session.remove()  # SQLite: the scan's own connection needs the lock this session holds
    assert places_holding(app.extensions["engine"], ADDRESS) == []
    assert maildir_files_naming(Path(config["mail"]["maildir"]), ADDRESS) == []

    # The old links now lead nowhere, in words a person understands.
    gone = client.get(f"/preferences/{token}")
    assert gone.status_code == 400 and "no longer valid" in page_text(gone)
    assert client.get(link).status_code == 400


def test_download_my_data_needs_a_link_from_the_inbox(app, client, session, deliver, zebulon):
    subscriber = session.get(Subscriber, zebulon)
    token = tokens.preferences_token(subscriber.id, subscriber.token_version)
    path = f"/preferences/{token}/data"
    asked = client.get(path)
    assert asked.status_code == 200 and asked.mimetype == "text/html" and IP not in page_text(asked)
    client.post(path, data={"csrf_token": csrf_token(client, path)})
    link = _inbox_link(deliver())
    download = client.post(link, data={"csrf_token": csrf_token(client, link)})
    assert download.status_code == 200 and download.mimetype == "application/json"
    assert "attachment" in download.headers["Content-Disposition"]
    data = download.get_json()
    assert data["email"] == ADDRESS and data["consent_history"][0]["ip_address"] == IP
    assert [c["label"] for c in data["clicks"]] == ["Sign the petition"]
    # Single use: the same link again is refused, and the data is not shown twice.
    again = client.post(link, data={"csrf_token": csrf_token(client, path)})
    assert again.status_code == 400 and "already used" in page_text(again) and ADDRESS not in page_text(again)


def test_erase_link_with_a_forged_token_is_refused(client, session, zebulon):
    response = client.get("/preferences/forged-token/erase")
    assert response.status_code == 400
    assert count(session, Subscriber) == 1


def test_erase_blanks_webhook_events_naming_the_address(app, runner, session, zebulon):
    """A webhook event (subscriber.confirmed, say) carries the address in its JSON: queued ones are not sent."""
    from mailer.webhooks.models import Webhook, WebhookDelivery
    hook = Webhook(url="https://crm.example.org/hook", secret="s")
    session.add(hook)
    session.flush()
    session.add_all([
        WebhookDelivery(webhook_id=hook.id, event="subscriber.confirmed", dedupe_key="a",
                        payload=f'{{"email": "{ADDRESS}"}}', state="queued"),
        WebhookDelivery(webhook_id=hook.id, event="subscriber.confirmed", dedupe_key="b",
                        payload=f'{{"email": "{ADDRESS}", "name": "{NAME}"}}', state="sent"),
        WebhookDelivery(webhook_id=hook.id, event="subscriber.confirmed", dedupe_key="c",
                        payload='{"email": "someone_else%@example.org"}', state="queued")])
    session.commit()
    assert runner.invoke(["subscribers", "erase", ADDRESS]).exit_code == 0
    session.remove()
    rows = session.execute(select(WebhookDelivery.dedupe_key, WebhookDelivery.payload, WebhookDelivery.state)
                           .order_by(WebhookDelivery.dedupe_key)).all()
    # The third event names someone else: it stays as it was.
    assert rows == [("a", "{}", "failed"), ("b", "{}", "sent"),
                    ("c", '{"email": "someone_else%@example.org"}', "queued")]
    session.remove()
    assert places_holding(app.extensions["engine"], ADDRESS) == []
    assert places_holding(app.extensions["engine"], NAME) == []


def test_forget_in_maildir_removes_only_that_readers_files(tmp_path):
    box = tmp_path / "mail"
    for folder in ("new", "cur", "tmp"):
        (box / folder).mkdir(parents=True)
    files = {
        "new/1": f"Return-Path: <b@x>\nDelivered-To: {ADDRESS}\nTo: {ADDRESS}\n\nhello\n",
        "cur/2:2,S": f"Return-Path: <b@x>\nDelivered-To: {ADDRESS}\nTo: {ADDRESS}\n\nread already\n",
        "new/3": f"Return-Path: <b@x>\nDelivered-To: x{ADDRESS}\nTo: x{ADDRESS}\n\nnot theirs\n",
        "new/4": f"Return-Path: <b@x>\nDelivered-To: {ADDRESS}.evil\n\nnot theirs either\n",
        "new/5": f"Return-Path: <b@x>\nDelivered-To: other@example.org\n\nmentions {ADDRESS} in the body\n",
    }
    for name, text in files.items():
        (box / name).write_text(text)
    assert operations.forget_in_maildir(box, ADDRESS) == 2
    assert sorted(str(p.relative_to(box)) for p in box.rglob("*") if p.is_file()) == ["new/3", "new/4", "new/5"]
    assert operations.forget_in_maildir(tmp_path / "no-such-maildir", ADDRESS) == 0


def test_an_erasure_from_before_keyed_markers_is_still_honoured(app, client, runner, session, deliver, tmp_path):
    """Markers written as plain SHA-256 keep the person out of imports until they come back themselves."""
    session.add(Suppression(email="sha256:" + hashlib.sha256(ADDRESS.encode()).hexdigest(), reason="erased"))
    session.commit()
    path = tmp_path / "list.csv"
    path.write_text(f"email\n{ADDRESS}\n")
    result = runner.invoke(["subscribers", "import", str(path), "--confirmed"])
    assert result.stdout.strip() == "imported 0, skipped 1, errors 0" and "erased on request" in result.stderr
    sign_up(client, email=ADDRESS)
    confirm_path = re.search(r"https://news.example.org(/confirm/\S+)",
                             deliver()[-1].get_body(("plain",)).get_content()).group(1)
    client.post(confirm_path, data={"csrf_token": csrf_token(client, confirm_path)})
    assert count(session, Suppression) == 0
