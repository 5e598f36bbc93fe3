"""GDPR erasure: nothing of the person left in the database, counts kept, never imported or mailed again."""

from __future__ import annotations

import csv
import hashlib
import re

import pytest
from sqlalchemy import MetaData, func, select

from mailer.sends.models import Send, SendKind
from mailer.links.models import Click, Link
from mailer.outbox.models import OutboxMessage, OutboxState
from mailer.topics.models import SubscriberTopic, Topic
from subscribers import operations, tokens
from subscribers.models import ConsentEvent, Subscriber, SubscriberState, Suppression
from tests.contract import check_message
from tests.test_signup import csrf_token, sign_up

ADDRESS = "zebulon.quux@example.org"
NAME = "Zebulon Quux"


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


def test_erase_leaves_no_copy_of_the_address_anywhere(app, runner, session, zebulon):
    engine = app.extensions["engine"]
    session.remove()
    # The scan finds what it looks for: before erasure the address and name are in several places.
    assert {"subscribers.email", "outbox.recipient", "outbox.content", "outbox.last_error",
            "suppressions.email"} <= set(places_holding(engine, ADDRESS))
    assert "subscribers.name" in places_holding(engine, NAME)

    assert runner.invoke(["subscribers", "erase", ADDRESS]).exit_code == 0
    session.remove()
    assert places_holding(engine, ADDRESS) == []
    assert places_holding(engine, NAME) == []
    marker = session.scalar(select(Suppression))
    assert marker.email == "sha256:" + hashlib.sha256(ADDRESS.encode()).hexdigest()
    assert (marker.reason, marker.detail) == ("erased", "bounced")


def test_erase_keeps_counts_and_makes_clicks_anonymous(app, runner, session, zebulon):
    outbox_before = count(session, OutboxMessage)
    session.remove()
    result = runner.invoke(["subscribers", "erase", ADDRESS])
    assert result.stdout.strip() == (f"erased {ADDRESS}: 2 consent events, 1 topic choices; "
                                     "3 messages blanked, 1 clicks made anonymous")
    assert count(session, Subscriber) == count(session, ConsentEvent) == count(session, SubscriberTopic) == 0
    assert count(session, OutboxMessage) == outbox_before
    assert [m.recipient for m in session.scalars(select(OutboxMessage))] == ["", "", ""]
    assert [m.content for m in session.scalars(select(OutboxMessage))] == [None, None, None]
    [click] = session.scalars(select(Click))
    assert click.subscriber_id is None and click.link.label == "Sign the petition"


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


def test_erase_me_on_the_preferences_page(app, client, session, zebulon):
    subscriber = session.get(Subscriber, zebulon)
    token = tokens.manage_token(subscriber.id, subscriber.token_version)
    page = client.get(f"/preferences/{token}").get_data(as_text=True)
    assert f'href="/preferences/{token}/erase">Erase me</a>' in page

    # The confirm step: looking at it changes nothing.
    page = client.get(f"/preferences/{token}/erase").get_data(as_text=True)
    assert "Erase everything about me" in page and ADDRESS in page
    assert count(session, Subscriber) == 1

    # A POST without the form's CSRF token (another site's form) is refused.
    refused = client.post(f"/preferences/{token}/erase", data={})
    assert refused.status_code == 400 and "Please try again" in refused.get_data(as_text=True)
    assert count(session, Subscriber) == 1

    done = client.post(f"/preferences/{token}/erase",
                       data={"csrf_token": csrf_token(client, f"/preferences/{token}/erase")})
    assert done.status_code == 200 and "Your data is erased" in done.get_data(as_text=True)
    assert count(session, Subscriber) == 0
    session.remove()  # SQLite: the scan's own connection needs the lock this session holds
    assert places_holding(app.extensions["engine"], ADDRESS) == []

    # The old link now leads nowhere, in words a person understands.
    gone = client.get(f"/preferences/{token}")
    assert gone.status_code == 400 and "no longer valid" in gone.get_data(as_text=True)


def test_erase_link_with_a_forged_token_is_refused(client, session, zebulon):
    response = client.get("/preferences/forged-token/erase")
    assert response.status_code == 400
    assert count(session, Subscriber) == 1
