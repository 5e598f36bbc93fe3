"""The scheduler keeps its jobs in our database and runs thin tasks inside the app."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, text

from mailer import db, scheduling
from mailer.feeds.models import Feed


def test_builtin_jobs_are_stored_in_the_database(app, session):
    session.remove()
    scheduler = scheduling.make_scheduler(app)
    scheduler.start(paused=True)
    try:
        job = scheduler.get_job("poll-feeds")
        assert job is not None and job.trigger.interval == timedelta(minutes=15)
    finally:
        scheduler.shutdown(wait=False)
    with app.extensions["engine"].connect() as conn:
        assert sorted(conn.execute(text("SELECT id FROM apscheduler_jobs")).scalars()) == sorted(scheduling.BUILTIN_JOBS)
        assert sorted(scheduling.BUILTIN_JOBS) == ["apply-retention", "deliver-webhooks", "forget-sign-in-attempts",
                                                   "poll-feeds", "read-bounce-mailbox", "reduce-old-deliveries",
                                                   "send-due-digests"]


def test_starting_twice_keeps_one_copy_of_each_job(app, session):
    """A restart (or `mailer serve` after `mailer scheduler`) replaces the job, never doubles it."""
    session.remove()
    for _ in range(2):
        scheduler = scheduling.make_scheduler(app)
        scheduler.start(paused=True)
        scheduler.shutdown(wait=False)
    with app.extensions["engine"].connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM apscheduler_jobs")).scalar() == len(scheduling.BUILTIN_JOBS)


def test_a_task_runs_inside_the_app(app, session):
    """run_task resolves 'module:function' and runs it with the app's database: a broken feed is
    recorded on the feed, not raised out of the scheduler thread."""
    session.add(Feed(url="http://127.0.0.1:9/feed.xml"))  # port 9 (discard): nothing listens
    session.commit()
    session.remove()
    scheduling.make_scheduler(app)  # binds the app the tasks of this process run in
    scheduling.run_task("mailer.feeds.tasks:poll_all")
    feed = db.session.scalar(select(Feed))
    assert feed.last_error and feed.last_polled_at is not None
