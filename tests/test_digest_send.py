"""`mailer digests compose [--send-now]`, `digests send` and `stats` against a real database and Maildir."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from mailer.sends.models import Send, SendArticle
from mailer.links.models import Click
from mailer.outbox.models import OutboxMessage
from subscribers.models import SubscriberState
from tests import factories
from tests.contract import check_message


def count(session, model) -> int:
    return session.scalar(select(func.count()).select_from(model))


def subjects_by_recipient(messages) -> dict[str, str]:
    return {m["To"].addresses[0].addr_spec: str(m["Subject"]) for m in messages}


def test_compose_send_now_reaches_only_eligible_subscribers(runner, session, frozen_clock, deliver, config):
    factories.fixed_articles(session)
    factories.subscriber(session, "all@example.org")
    factories.subscriber(session, "two@example.org", topics=("lgbtiq-rights", "ukraine"))
    factories.subscriber(session, "climate@example.org", topics=("climate",))
    factories.subscriber(session, "gone@example.org", state=SubscriberState.unsubscribed)
    factories.subscriber(session, "pending@example.org", state=SubscriberState.pending)
    factories.subscriber(session, "paused@example.org", is_paused=True)
    factories.subscriber(session, "bounced@example.org", suppressed="bounced")
    session.commit()

    result = runner.invoke(["digests", "compose", "--send-now"])
    assert result.exit_code == 0, result.output
    assert "Two Dead And At Least 40 Detained" in result.output
    assert "lgbtiq-rights, ukraine: 1 recipient(s), 2 article(s)" in result.output
    assert "all topics: 1 recipient(s), 3 article(s)" in result.output
    assert "queued to 3 recipient(s)" in result.output

    messages = deliver()
    subjects = subjects_by_recipient(messages)
    assert set(subjects) == {"all@example.org", "two@example.org", "climate@example.org"}
    assert subjects["all@example.org"].endswith("and 2 more")
    assert subjects["two@example.org"].endswith("and 1 more")
    assert subjects["climate@example.org"] == "Accidentally Alex update: Climate March On Saturday"
    for message in messages:
        parts = check_message(message, postal_address=config["site"]["postal_address"])
        assert "/archive/" in parts["text"]
        # Every article and action link is tracked; the real URLs appear nowhere in the mail.
        assert factories.PETITION_URL not in parts["html"] and factories.PETITION_URL not in parts["text"]
    by_recipient = {m["To"].addresses[0].addr_spec: check_message(m, postal_address="") for m in messages}
    assert "Climate March" not in by_recipient["two@example.org"]["text"]
    assert "Climate March" in by_recipient["all@example.org"]["text"]
    # Each recipient's links carry their own token.
    assert by_recipient["all@example.org"]["unsubscribe_url"] != by_recipient["two@example.org"]["unsubscribe_url"]


def test_compose_twice_finds_nothing_the_second_time(runner, session, frozen_clock):
    factories.fixed_articles(session)
    session.commit()
    assert runner.invoke(["digests", "compose"]).exit_code == 0
    session.remove()
    result = runner.invoke(["digests", "compose"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "nothing new since the last digest"
    assert count(session, Send) == 1 and count(session, SendArticle) == 3


def test_nothing_new_sends_nothing(runner, session, frozen_clock):
    result = runner.invoke(["digests", "compose", "--send-now"])
    assert (result.exit_code, result.output.strip()) == (0, "nothing new since the last digest")
    assert count(session, Send) == 0 and count(session, OutboxMessage) == 0


def test_future_article_waits_until_it_is_published(runner, session, frozen_clock):
    factories.article(session, slug="now", title="Out Now", age=timedelta(minutes=1))
    factories.article(session, slug="later", title="Embargoed Until Noon", age=-timedelta(hours=3))
    session.commit()
    result = runner.invoke(["digests", "compose"])
    assert "Out Now" in result.output and "Embargoed" not in result.output
    session.remove()
    frozen_clock.advance(timedelta(hours=4))
    result = runner.invoke(["digests", "compose"])
    assert "Embargoed Until Noon" in result.output and "Out Now" not in result.output


def test_composed_digest_is_queued_later_once(runner, session, frozen_clock, deliver):
    factories.fixed_articles(session)
    factories.subscriber(session, "reader@example.org")
    session.commit()
    result = runner.invoke(["digests", "compose"])
    assert "not queued yet" in result.output
    assert count(session, OutboxMessage) == 0
    send_id = session.scalar(select(Send.id))
    session.remove()
    assert runner.invoke(["digests", "send", str(send_id)]).exit_code == 0
    session.remove()
    again = runner.invoke(["digests", "send", str(send_id)])
    assert again.exit_code == 2 and again.output.startswith("mailer: send 1 was already queued")
    assert len(deliver()) == 1


def test_send_of_unknown_id_is_a_one_line_error(runner):
    result = runner.invoke(["digests", "send", "99"])
    assert result.exit_code == 2
    assert result.output == "mailer: no send with id 99 (`mailer stats` lists them)\n"


def test_queueing_skips_recipients_already_in_the_outbox(app, session, frozen_clock):
    from mailer.digests import operations
    from mailer.sends import operations as send_operations

    factories.fixed_articles(session)
    reader = factories.subscriber(session, "reader@example.org")
    factories.subscriber(session, "other@example.org")
    send = operations.compose_next(session)
    session.add(OutboxMessage(kind="digest", dedupe_key=f"send:{send.id}:{reader.id}", recipient=reader.email,
                              subscriber_id=reader.id, send_id=send.id, message_id="<earlier@example.org>"))
    assert send_operations.queue(session, send) == 1
    session.commit()
    assert count(session, OutboxMessage) == 2


def test_stats_show_delivery_and_clicks(runner, session, frozen_clock, deliver, client):
    factories.fixed_articles(session)
    factories.subscriber(session, "a@example.org")
    factories.subscriber(session, "b@example.org")
    session.commit()
    runner.invoke(["digests", "compose", "--send-now"])
    messages = deliver()
    for message in messages:
        html = message.get_body(preferencelist=("html",)).get_content()
        petition = re.search(r'href="https://news.example.org(/l/[^"]+)"[^>]*>Sign the petition', html).group(1)
        assert client.get(petition).status_code == 302
        assert client.get(petition).status_code == 302  # the same reader twice: one unique clicker
    result = runner.invoke(["stats", "1"])
    assert result.exit_code == 0, result.output
    assert "delivery: queued 0, sending 0, sent 2, failed 0" in result.output
    assert "clicks: 4  unique clickers: 2" in result.output
    assert re.search(r"4 clicks\s+2 unique\s+0 anonymous\s+\[petition\] Sign the petition", result.output)
    overview = runner.invoke(["stats"])
    assert "sent 2/2" in overview.output and "clicks 4" in overview.output


def test_per_recipient_tracking_off_counts_clicks_anonymously(database_url, tmp_path, frozen_clock):
    from mailer import db
    from mailer.app import create_app
    from mailer.digests import operations
    from mailer.sends import operations as send_operations
    from mailer.links import tokens as link_tokens
    from tests.conftest import make_config

    app = create_app(make_config(database_url, tmp_path, tracking={"per_recipient": False}))
    with app.app_context():
        session = db.session
        factories.fixed_articles(session)
        factories.subscriber(session, "reader@example.org")
        send = operations.compose_next(session)
        send_operations.queue(session, send)
        session.commit()
        [envelope] = factories.deliver(app.config["MAILER"])
        content = envelope.content
        token = re.search(rb'/l/([\w.\-]+)"', content.replace(b"=\r\n", b"")).group(1).decode()
        assert link_tokens.read(token).subscriber_id is None  # the mail itself carries no recipient
        session.remove()
        assert app.test_client().get(f"/l/{token}").status_code == 302
        click = session.scalar(select(Click))
        assert click is not None and click.subscriber_id is None
    db.session.remove()
    app.extensions["engine"].dispose()


def test_one_render_per_topic_set_not_per_recipient(app, session, frozen_clock, monkeypatch):
    from mailer import emails
    from mailer.digests import operations
    from mailer.sends import operations as send_operations

    factories.fixed_articles(session)
    for i in range(6):
        factories.subscriber(session, f"all{i}@example.org")
        factories.subscriber(session, f"two{i}@example.org", topics=("lgbtiq-rights", "ukraine"))
    send = operations.compose_next(session)
    renders = []
    real_render = emails.render
    monkeypatch.setattr(emails, "render", lambda *a, **kw: renders.append(a[0]) or real_render(*a, **kw))
    assert send_operations.queue(session, send) == 12
    assert renders == ["digest", "digest", "digest"]  # two topic sets, and the web version


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # SQLite keeps no statistics
def test_a_send_refreshes_postgresqls_statistics_after_a_bulk_change(session):
    """A whole list imported just before a send: PostgreSQL planned for a table of a few readers, a
    nested loop of every subscriber over every topic key (minutes at 100k), until autovacuum came."""
    from sqlalchemy import insert, text

    from mailer import clock
    from mailer.sends import queries
    from subscribers.models import Subscriber

    def last_analyze():
        session.execute(text("SELECT pg_stat_clear_snapshot()"))
        return session.scalar(text("SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'subscribers'"))

    before = last_analyze()
    now = clock.now()
    session.execute(insert(Subscriber), [
        {"email": f"reader{i}@example.org", "name": "", "state": SubscriberState.confirmed, "created_at": now}
        for i in range(500)])
    session.execute(text("SELECT pg_stat_force_next_flush()"))
    session.commit()
    assert dict(queries.readers_per_topic_key(session)) == {"": 500}
    session.commit()
    analyzed = last_analyze()
    assert analyzed is not None and analyzed != before
    session.commit()
    queries.readers_per_topic_key(session)  # nothing changed since: no second ANALYZE
    session.commit()
    assert last_analyze() == analyzed
