"""The workspace dashboard: figures a campaigner reads at a glance, from real rows."""

from __future__ import annotations

from datetime import date, timedelta

from mailer.admin import dashboard
from subscribers.models import SubscriberState
from tests import factories
from tests.editors import make_editor, sign_in


def test_dashboard_shows_subscribers_sends_and_the_outbox(runner, client, session, frozen_clock, deliver):
    factories.fixed_articles(session)
    factories.subscriber(session, "all@example.org")
    factories.subscriber(session, "two@example.org", topics=("lgbtiq-rights", "ukraine"))
    factories.subscriber(session, "pending@example.org", state=SubscriberState.pending)
    session.commit()
    assert runner.invoke(["digests", "compose", "--send-now"]).exit_code == 0
    deliver()
    assert runner.invoke(["digests", "schedule", "--cron", "0 9 * * MON", "--tz", "Europe/London"]).exit_code == 0
    make_editor()
    sign_in(client)

    response = client.get("/admin/")
    assert response.status_code == 302 and response.location == "/admin/dashboard/"
    page = client.get("/admin/dashboard/").get_data(as_text=True)
    assert '<span class="figure">2</span> confirmed' in page
    assert '<span class="figure">1</span> pending' in page
    assert "<td>2</td><td>2</td><td>0</td><td>0</td>" in page  # 2 recipients, 2 delivered, 0 failed, 0 clicks
    assert "2026-11-23 09:00 UTC" in page  # this Monday 09:00 in London is 09:00 UTC in winter
    assert "<td>LGBTIQ Rights</td><td>1</td>" in page
    assert "3 in all" in page  # three signups today, in the chart's title


def test_signups_per_day_covers_thirty_days_with_empty_ones(session, frozen_clock):
    factories.subscriber(session, "a@example.org")
    session.commit()
    frozen_clock.advance(timedelta(days=2))
    days = dashboard.signups_per_day(session)
    assert len(days) == 30 and days[-1] == (date(2026, 11, 25), 0) and (date(2026, 11, 23), 1) in days
    bars = dashboard.chart_bars(days)
    assert max(bar.height for bar in bars) == 104 and sum(1 for bar in bars if bar.height) == 1


def test_an_editor_with_no_rooms_yet_is_not_sent_to_an_admin_page(client):
    make_editor()
    sign_in(client)
    assert client.get("/admin/", follow_redirects=True).status_code == 200
