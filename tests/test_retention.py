"""Retention: IP addresses and user agents, and who clicked, are kept no longer than the notice says."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from mailer import clock, scheduling
from mailer.config import load
from mailer.sends.models import Send, SendKind
from mailer.links.models import Click, Link
from mailer.errors import ConfigError
from mailer.links import queries as link_queries
from mailer.privacy import operations as retention
from mailer.privacy.operations import publish
from subscribers.models import ConsentAction, ConsentEvent
from tests import factories
from tests.test_bad_input import page_text

RETENTION_JOB = scheduling.BUILTIN_JOBS["apply-retention"][0]


def _run_job(app):
    scheduling._app = app
    scheduling.run_task(RETENTION_JOB)


def _consent(subscriber, days_ago: int, ip: str) -> None:
    subscriber.consent_events.append(ConsentEvent(
        action=ConsentAction.given, privacy_policy_version="2026-11-01", source="web", ip_address=ip,
        user_agent=f"Browser of {ip}", occurred_at=clock.now() - timedelta(days=days_ago)))


def test_consent_records_lose_ip_and_user_agent_after_keep_ip_days(app, session, frozen_clock):
    reader = factories.subscriber(session, "reader@example.org")
    for days_ago, ip in ((31, "192.0.2.31"), (45, "192.0.2.45"), (29, "192.0.2.29"), (0, "192.0.2.1")):
        _consent(reader, days_ago, ip)
    session.commit()
    _run_job(app)
    session.remove()
    rows = session.execute(select(ConsentEvent.ip_address, ConsentEvent.user_agent, ConsentEvent.action,
                                  ConsentEvent.privacy_policy_version).order_by(ConsentEvent.id)).all()
    assert rows == [("", "", ConsentAction.given, "2026-11-01"), ("", "", ConsentAction.given, "2026-11-01"),
                    ("192.0.2.29", "Browser of 192.0.2.29", ConsentAction.given, "2026-11-01"),
                    ("192.0.2.1", "Browser of 192.0.2.1", ConsentAction.given, "2026-11-01")]
    # A day later the 29-day-old record passes 30 days too.
    frozen_clock.advance(timedelta(days=2))
    _run_job(app)
    session.remove()
    assert session.scalars(select(ConsentEvent.ip_address).order_by(ConsentEvent.id)).all() == [
        "", "", "", "192.0.2.1"]


def test_retention_works_in_batches(app, session, frozen_clock):
    reader = factories.subscriber(session, "reader@example.org")
    for n in range(5):
        _consent(reader, 40, f"192.0.2.{n}")
    session.commit()
    assert retention.blank_old_request_details(session, 30, limit=2) == 2
    session.commit()
    assert retention.blank_old_request_details(session, 30, limit=2) == 2
    assert retention.blank_old_request_details(session, 30, limit=2) == 1
    assert retention.blank_old_request_details(session, 30, limit=2) == 0
    session.commit()
    assert set(session.scalars(select(ConsentEvent.ip_address))) == {""}


def test_keep_ip_days_is_read_from_config(app, session, frozen_clock, config):
    reader = factories.subscriber(session, "reader@example.org")
    _consent(reader, 8, "192.0.2.8")
    session.commit()
    app.config["MAILER"] = load(path=None, environ={}, overrides={
        **{s: dict(config[s]) for s in config}, "privacy": {**config["privacy"], "keep_ip_days": 7}})
    _run_job(app)
    session.remove()
    assert session.scalar(select(ConsentEvent.ip_address)) == ""


@pytest.fixture
def clicked_send(session):
    """A send with two links, clicked by two readers 100 days ago and by one of them yesterday."""
    alex, sam = factories.subscriber(session, "alex@example.org"), factories.subscriber(session, "sam@example.org")
    send = Send(kind=SendKind.alert, slug="old-alert", subject="Sign now")
    session.add(send)
    session.flush()
    petition = Link(send_id=send.id, url="https://petition.example.org/sign", label="Sign", kind="petition")
    donate = Link(send_id=send.id, url="https://donate.example.org/", label="Donate", kind="donate")
    session.add_all([petition, donate])
    session.flush()
    long_ago, yesterday = clock.now() - timedelta(days=100), clock.now() - timedelta(days=1)
    session.add_all([
        Click(link_id=petition.id, send_id=send.id, subscriber_id=alex.id, clicked_at=long_ago),
        Click(link_id=petition.id, send_id=send.id, subscriber_id=alex.id, clicked_at=long_ago),
        Click(link_id=petition.id, send_id=send.id, subscriber_id=sam.id, clicked_at=long_ago),
        Click(link_id=donate.id, send_id=send.id, subscriber_id=sam.id, clicked_at=long_ago),
        Click(link_id=donate.id, send_id=send.id, subscriber_id=alex.id, clicked_at=yesterday),
        Click(link_id=donate.id, send_id=send.id, subscriber_id=None, clicked_at=long_ago),
    ])
    session.commit()
    return send.id, alex.id


def test_clicks_stop_naming_their_reader_after_keep_days_and_link_counts_stay(app, session, frozen_clock,
                                                                              clicked_send):
    send_id, alex = clicked_send
    before = {row.label: row.clicks for row in link_queries.clicks_per_link(session, send_id)}
    total_before = link_queries.clicks_for_send(session, send_id)
    session.remove()
    _run_job(app)
    session.remove()
    after = link_queries.clicks_per_link(session, send_id)
    assert {row.label: row.clicks for row in after} == before == {"Sign": 3, "Donate": 3}
    assert link_queries.clicks_for_send(session, send_id) == total_before == 6
    # Only yesterday's click still names its reader.
    assert session.execute(select(Click.subscriber_id, Click.clicked_at).where(
        Click.subscriber_id.is_not(None))).all() == [(alex, clock.now() - timedelta(days=1))]
    assert {row.label: row.anonymous_clicks for row in after} == {"Sign": 3, "Donate": 2}


def test_retention_job_is_scheduled_and_idempotent(app, session, frozen_clock, clicked_send):
    assert RETENTION_JOB == "mailer.privacy.tasks:apply_retention"
    _run_job(app)
    _run_job(app)
    session.remove()
    assert len(session.scalars(select(Click)).all()) == 6


@pytest.mark.parametrize(("section", "key"), [("privacy", "keep_ip_days"), ("tracking", "keep_days")])
@pytest.mark.parametrize("value", [0, -5])
def test_retention_periods_must_be_at_least_a_day(section, key, value):
    with pytest.raises(ConfigError, match=f"{section}.{key} must be 1 or more"):
        load(path=None, environ={}, overrides={section: {key: value}})


# ---- the notice ----------------------------------------------------------------------------------

def _with(app, config, **sections):
    app.config["MAILER"] = load(path=None, environ={}, overrides={
        **{s: dict(config[s]) for s in config}, **{s: {**config[s], **v} for s, v in sections.items()}})


def test_privacy_notice_states_the_periods_the_controller_and_a_contact(app, client, config):
    _with(app, config, privacy={"controller": "Alex Example Ltd", "contact": "privacy@example.org",
                                "keep_ip_days": 14}, tracking={"keep_days": 60})
    text = page_text(client.get("/privacy"))
    assert "removed from your consent record 14 days after" in text
    assert "recorded as yours for 60 days" in text
    assert "The controller of your data is Alex Example Ltd. Write to privacy@example.org" in text


def test_privacy_notice_defaults_name_the_site_and_the_default_periods(client):
    text = page_text(client.get("/privacy"))
    assert "30 days after" in text and "for 90 days" in text
    assert "The controller of your data is Accidentally Alex." in text


def test_a_published_notice_still_states_the_periods_and_the_controller(app, client, session, config):
    publish(session, "2026-12-01", "# Our notice\n\nWe are careful.", None)
    session.commit()
    _with(app, config, privacy={"controller": "Alex Example Ltd", "contact": "https://example.org/contact"})
    text = page_text(client.get("/privacy"))
    assert "We are careful." in text and "Version 2026-12-01" in text
    assert "30 days after" in text and "Alex Example Ltd" in text and "https://example.org/contact" in text


def test_without_per_reader_tracking_the_notice_says_clicks_are_anonymous(app, client, config):
    _with(app, config, tracking={"per_recipient": False})
    text = page_text(client.get("/privacy"))
    assert "without recording who clicked" in text and "recorded as yours" not in text
