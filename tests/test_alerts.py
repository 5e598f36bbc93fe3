"""`mailer alerts send`: one article, now, to the readers of its topics, ahead of queued digests."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import func, select

from mailer.sends.models import Send, SendKind
from mailer.outbox.models import OutboxMessage
from subscribers.models import SubscriberState
from tests import factories
from tests.contract import check_message


def count(session, model) -> int:
    return session.scalar(select(func.count()).select_from(model))


def recipients(messages) -> set[str]:
    return {m["To"].addresses[0].addr_spec for m in messages}


def everyone(session):
    """A reader of each kind: followers of each fixed topic, of everything, and the ineligible."""
    factories.subscriber(session, "all@example.org")
    factories.subscriber(session, "purge@example.org", topics=("chechen-anti-gay-purge",))
    factories.subscriber(session, "rights@example.org", topics=("lgbtiq-rights", "climate"))
    factories.subscriber(session, "ukraine@example.org", topics=("ukraine",))
    factories.subscriber(session, "climate@example.org", topics=("climate",))
    factories.subscriber(session, "paused@example.org", topics=("lgbtiq-rights",), is_paused=True)
    factories.subscriber(session, "gone@example.org", topics=("lgbtiq-rights",), state=SubscriberState.unsubscribed)
    factories.subscriber(session, "pending@example.org", state=SubscriberState.pending)
    factories.subscriber(session, "bounced@example.org", topics=("lgbtiq-rights",), suppressed="bounced")


def test_alert_reaches_followers_of_the_articles_topics_and_readers_of_everything(
        runner, session, frozen_clock, deliver, config):
    article = factories.article(session, **factories.CHECHNYA)
    everyone(session)
    session.commit()

    result = runner.invoke(["alerts", "send", str(article.id)])
    assert result.exit_code == 0, result.output
    assert "to: chechen-anti-gay-purge, lgbtiq-rights (and readers who follow every topic)" in result.output
    assert "queued to 3 recipient(s)" in result.output

    messages = deliver()
    assert recipients(messages) == {"all@example.org", "purge@example.org", "rights@example.org"}
    for message in messages:
        parts = check_message(message, postal_address=config["site"]["postal_address"])
        # strip(): the stdlib folds a 70-77 character Subject right after "Subject:", and its parser
        # keeps the fold's space, which mail clients drop.
        assert str(message["Subject"]).strip() == f"Urgent: {factories.CHECHNYA['title']}"
        # The calls to act come first, tracked; the real URLs appear nowhere in the mail.
        assert parts["text"].index("Sign the petition") < parts["text"].index("Reports from Grozny")
        body = parts["html"].split("<h1", 1)[1]  # past the preheader, which carries the summary
        assert body.index("Sign the petition") < body.index("Reports from Grozny")
        assert factories.PETITION_URL not in parts["text"] and factories.PETITION_URL not in parts["html"]
        assert "/archive/" in parts["text"]
    why = {m["To"].addresses[0].addr_spec: check_message(m, postal_address="")["text"] for m in messages}
    assert "about LGBTIQ Rights." in why["rights@example.org"]
    assert "about Chechen Anti Gay Purge." in why["purge@example.org"]
    assert session.scalar(select(OutboxMessage.kind).distinct()) == "alert"


def test_topics_option_overrides_the_articles_topics(runner, session, frozen_clock, deliver, config):
    article = factories.article(session, **factories.CHECHNYA)
    everyone(session)
    session.commit()

    result = runner.invoke(["alerts", "send", str(article.id), "--topics", "ukraine, climate"])
    assert result.exit_code == 0, result.output
    messages = deliver()
    assert recipients(messages) == {"all@example.org", "ukraine@example.org", "climate@example.org",
                                    "rights@example.org"}
    for message in messages:
        check_message(message, postal_address=config["site"]["postal_address"])


def test_article_without_topics_reaches_only_readers_of_everything(runner, session, frozen_clock, deliver, config):
    article = factories.article(session, slug="appeal", title="Evacuation Fund For Kharkiv",
                                actions=(("Give to the evacuation fund", "https://example.org/evacuate",
                                          factories.ActionKind.donate),))
    everyone(session)
    session.commit()
    result = runner.invoke(["alerts", "send", str(article.id)])
    assert "to: readers who follow every topic" in result.output
    messages = deliver()
    assert recipients(messages) == {"all@example.org"}
    check_message(messages[0], postal_address=config["site"]["postal_address"])


def test_action_link_in_an_alert_is_tracked_and_counted_in_stats(runner, session, frozen_clock, deliver, client):
    article = factories.article(session, **factories.CHECHNYA)
    factories.subscriber(session, "reader@example.org", topics=("lgbtiq-rights",))
    session.commit()
    runner.invoke(["alerts", "send", str(article.id)])
    [message] = deliver()
    html = check_message(message, postal_address="")["html"]
    petition = re.search(r'href="https://news.example.org(/l/[^"]+)"[^>]*>Sign the petition', html).group(1)

    response = client.get(petition)
    assert response.status_code == 302
    assert response.headers["Location"] == factories.PETITION_URL

    result = runner.invoke(["stats", "1"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"send 1 (alert): Urgent: {factories.CHECHNYA['title']}")
    assert "delivery: queued 0, sending 0, sent 1, failed 0" in result.output
    assert "clicks: 1  unique clickers: 1" in result.output
    assert re.search(r"1 clicks\s+1 unique\s+0 anonymous\s+\[petition\] Sign the petition", result.output)


def test_alert_is_in_the_archive_and_its_feed(runner, session, frozen_clock, client):
    article = factories.article(session, **factories.CHECHNYA)
    factories.subscriber(session, "reader@example.org")
    session.commit()
    runner.invoke(["alerts", "send", str(article.id)])
    send = session.scalar(select(Send))
    subject, slug = send.subject, send.slug
    session.remove()

    index = client.get("/archive/")
    assert index.status_code == 200 and f'href="/archive/{slug}"' in index.text and "Urgent: Two Dead" in index.text
    page = client.get(f"/archive/{slug}")
    assert page.status_code == 200
    assert "This is the web version of an urgent alert" in page.text
    assert "/unsubscribe/" not in page.text and "/preferences/" not in page.text
    assert subject in client.get("/archive.atom").text


def test_alert_rows_are_claimed_before_digest_rows_already_queued(runner, app, session, frozen_clock):
    from mailer.outbox.worker import claim_due

    factories.article(session, **factories.CLIMATE)
    for n in range(50):
        factories.subscriber(session, f"climate{n}@example.org", topics=("climate",))
    for n in range(5):
        factories.subscriber(session, f"ukraine{n}@example.org", topics=("ukraine",))
    session.commit()
    assert "queued to 50 recipient(s)" in runner.invoke(["digests", "compose", "--send-now"]).output
    session.remove()
    frozen_clock.advance(timedelta(minutes=5))  # the alert comes later: its rows are the newest
    alert = factories.article(session, **factories.UKRAINE)
    session.commit()
    assert "queued to 5 recipient(s)" in runner.invoke(["alerts", "send", str(alert.id)]).output
    session.remove()

    first = claim_due(app.config["MAILER"], 10)
    assert [row.kind for row in first] == ["alert"] * 5 + ["digest"] * 5
    assert {row.recipient for row in first[:5]} == {f"ukraine{n}@example.org" for n in range(5)}


def test_a_confirmation_goes_ahead_of_bulk_mail(app, session, frozen_clock):
    from mailer import emails
    from mailer.digests import operations
    from mailer.sends import operations as send_operations
    from mailer.outbox.operations import enqueue
    from mailer.outbox.worker import claim_due

    factories.article(session, **factories.CLIMATE)
    factories.subscriber(session, "reader@example.org")
    send_operations.queue(session, operations.compose_next(session))
    rendered = emails.Rendered(subject="Confirm", text="text", html="<p>html</p>")
    enqueue(session, kind="confirmation", dedupe_key="confirm:1", message=emails.build(
        app.config["MAILER"], to="new@example.org", rendered=rendered, unsubscribe_url="https://x/unsubscribe/t"))
    session.commit()
    session.remove()
    assert [row.kind for row in claim_due(app.config["MAILER"], 1)] == ["confirmation"]


def test_the_same_alert_twice_is_refused_unless_again(runner, session, frozen_clock, deliver):
    article = factories.article(session, **factories.CHECHNYA)
    factories.subscriber(session, "reader@example.org")
    session.commit()
    assert runner.invoke(["alerts", "send", str(article.id)]).exit_code == 0
    session.remove()

    again = runner.invoke(["alerts", "send", str(article.id), "--topics", "lgbtiq-rights,chechen-anti-gay-purge"])
    assert again.exit_code == 2
    assert again.output == (
        f"mailer: article {article.id} already went out as alert 1 to chechen-anti-gay-purge, lgbtiq-rights "
        "on 2026-11-23 09:00 UTC; add --again to send it once more\n")
    assert count(session, Send) == 1 and count(session, OutboxMessage) == 1

    deliberate = runner.invoke(["alerts", "send", str(article.id), "--again"])
    assert deliberate.exit_code == 0, deliberate.output
    assert len(deliver()) == 2


def test_alert_to_more_topics_reaches_only_readers_not_yet_alerted(runner, session, frozen_clock, deliver):
    article = factories.article(session, **factories.CHECHNYA)
    everyone(session)
    session.commit()
    assert runner.invoke(["alerts", "send", str(article.id), "--topics", "chechen-anti-gay-purge"]).exit_code == 0
    assert recipients(deliver()) == {"all@example.org", "purge@example.org"}

    wider = runner.invoke(["alerts", "send", str(article.id), "--topics", "chechen-anti-gay-purge,ukraine"])
    assert wider.exit_code == 0, wider.output
    assert "queued to 1 recipient(s)" in wider.output
    assert recipients(deliver()) == {"all@example.org", "purge@example.org", "ukraine@example.org"}

    same_people = runner.invoke(["alerts", "send", str(article.id), "--topics", "ukraine"])
    assert same_people.exit_code == 0 and same_people.output.startswith("nothing sent:")
    assert count(session, Send) == 2 and count(session, OutboxMessage) == 3


def test_an_alert_does_not_take_its_article_from_the_next_digest(runner, session, frozen_clock):
    """Decision: an alert never marks its article as carried; the week's digest still lists it."""
    article = factories.article(session, **factories.CHECHNYA)
    factories.subscriber(session, "reader@example.org")
    session.commit()
    runner.invoke(["alerts", "send", str(article.id)])
    session.remove()
    result = runner.invoke(["digests", "compose"])
    assert result.exit_code == 0, result.output
    assert f"{article.id}\t" in result.output and "Two Dead And At Least 40" in result.output
    assert session.scalar(select(Send.kind).where(Send.id == 2)) == SendKind.digest


def test_subject_is_one_line_and_capped(runner, session, frozen_clock, deliver, config):
    title = "Evacuation " * 40
    article = factories.article(session, slug="long", title=title.strip())
    factories.subscriber(session, "reader@example.org")
    session.commit()
    runner.invoke(["alerts", "send", str(article.id)])
    [message] = deliver()
    check_message(message, postal_address=config["site"]["postal_address"])
    subject = str(message["Subject"]).strip()
    assert subject.startswith("Urgent: Evacuation") and subject.endswith("…")
    assert len(subject) <= len("Urgent: ") + 151


def test_unknown_article_is_one_line_and_sends_nothing(runner, session):
    result = runner.invoke(["alerts", "send", "99"])
    assert result.exit_code == 2
    assert result.output == "mailer: no article with id 99 (`mailer articles list` shows them)\n"
    assert count(session, Send) == 0


def test_future_article_cannot_be_alerted(runner, session, frozen_clock):
    article = factories.article(session, slug="embargo", title="Embargoed Until Noon", age=-timedelta(hours=3))
    factories.subscriber(session, "reader@example.org")
    session.commit()
    result = runner.invoke(["alerts", "send", str(article.id)])
    assert result.exit_code == 2
    assert result.output == (f"mailer: article {article.id} is to be published 2026-11-23 12:00 UTC: "
                             "an alert cannot go out before its article\n")
    assert count(session, Send) == 0 and count(session, OutboxMessage) == 0


def test_unknown_or_empty_topics_are_one_line(runner, session, frozen_clock):
    article = factories.article(session, **factories.CHECHNYA)
    factories.subscriber(session, "reader@example.org")
    session.commit()
    unknown = runner.invoke(["alerts", "send", str(article.id), "--topics", "lgbtiq-rights,atlantis,mars"])
    assert unknown.exit_code == 2
    assert unknown.output == "mailer: no topic atlantis, mars (`mailer topics list` shows them)\n"
    empty = runner.invoke(["alerts", "send", str(article.id), "--topics", " , "])
    assert empty.exit_code == 2 and empty.output.startswith("mailer: --topics names no topic")
    assert empty.output.count("\n") == 1
    assert count(session, Send) == 0 and count(session, OutboxMessage) == 0


def test_no_eligible_recipient_is_a_clear_line_and_no_send(runner, session, frozen_clock):
    article = factories.article(session, **factories.UKRAINE)
    factories.subscriber(session, "climate@example.org", topics=("climate",))
    factories.subscriber(session, "paused@example.org", topics=("ukraine",), is_paused=True)
    session.commit()
    result = runner.invoke(["alerts", "send", str(article.id)])
    assert result.exit_code == 0
    assert result.output == ("nothing sent: no confirmed, unpaused, unsuppressed subscriber among "
                             "ukraine (and readers who follow every topic) who has not had this article as an alert yet\n")
    assert count(session, Send) == 0 and count(session, OutboxMessage) == 0
