"""`mailer digests schedule`: recurring digests, one per schedule slot, in the editor's time zone."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, text

from mailer import db, scheduling
from mailer.digests import schedules, tasks
from mailer.sends.models import Send
from mailer.digests.models import DigestSchedule
from mailer.outbox.models import OutboxMessage
from tests import factories
from tests.conftest import make_config
from tests.contract import check_message

UTC = timezone.utc
LONDON = ZoneInfo("Europe/London")
# The frozen clock's time, Monday 2026-11-23 09:00 UTC, is a slot of "0 9 * * MON" in UTC.
SLOT_KEY = "schedule:1:2026-11-23T09:00Z"


def count(session, model) -> int:
    return session.scalar(select(func.count()).select_from(model))


def fire_times(trigger, after: datetime, n: int) -> list[datetime]:
    """The trigger's next n fire times after `after`, as APScheduler finds them one by one."""
    times, previous = [], None
    for _ in range(n):
        previous = trigger.get_next_fire_time(previous, previous + timedelta(microseconds=1) if previous else after)
        times.append(previous)
    return times


def slots(trigger, after: datetime, n: int) -> list[datetime]:
    """A schedule's next n slots after `after`, as the digest job moves from one to the next."""
    times = [trigger.get_next_fire_time(None, after).astimezone(UTC)]
    while len(times) < n:
        times.append(schedules.following_slot(trigger, times[-1]))
    return times


# ---- the command ----------------------------------------------------------------------------------

def test_add_list_and_remove_a_schedule(runner, session, frozen_clock):
    added = runner.invoke(["digests", "schedule", "--cron", "0 9 * * FRI", "--tz", "Europe/London"])
    assert added.exit_code == 0, added.output
    assert added.output.startswith('added schedule 1\t"0 9 * * FRI" Europe/London\t'
                                   'next Fri 2026-11-27 09:00 GMT (09:00 UTC)')
    session.remove()

    listed = runner.invoke(["digests", "schedule"])
    assert listed.exit_code == 0, listed.output
    assert listed.output == ('1\t"0 9 * * FRI" Europe/London\tnext Fri 2026-11-27 09:00 GMT (09:00 UTC)'
                             '\tlast never\n')
    rows = json.loads(runner.invoke(["digests", "schedule", "--json"]).output)
    assert rows == [{"id": 1, "cron": "0 9 * * FRI", "timezone": "Europe/London",
                     "next_run_at": "2026-11-27T09:00:00+00:00", "last_run_at": None}]

    removed = runner.invoke(["digests", "schedule", "--remove", "1"])
    assert (removed.exit_code, removed.output) == (0, "removed schedule 1\n")
    session.remove()
    assert count(session, DigestSchedule) == 0
    empty = runner.invoke(["digests", "schedule"])
    assert empty.exit_code == 0 and empty.stdout == ""
    assert "no schedules yet" in empty.stderr


def test_next_run_is_shown_in_the_schedules_zone_in_summer(runner, frozen_clock):
    frozen_clock.freeze(datetime(2027, 6, 1, 12, 0, tzinfo=UTC))
    added = runner.invoke(["digests", "schedule", "--cron", "0 9 * * MON", "--tz", "Europe/London"])
    assert "next Mon 2027-06-07 09:00 BST (08:00 UTC)" in added.output


def test_the_zone_defaults_to_scheduler_timezone(database_url, tmp_path, frozen_clock):
    from click.testing import CliRunner

    from mailer.app import create_app
    from mailer.cli import cli

    app = create_app(make_config(database_url, tmp_path, scheduler={"timezone": "America/New_York"}))
    try:
        result = CliRunner().invoke(cli, ["digests", "schedule", "--cron", "0 9 * * FRI"], obj={"app": app})
        assert result.exit_code == 0, result.output
        assert '"0 9 * * FRI" America/New_York\tnext Fri 2026-11-27 09:00 EST (14:00 UTC)' in result.output
    finally:
        with app.app_context():
            db.session.remove()
        app.extensions["engine"].dispose()


@pytest.mark.parametrize("args, reason", [
    (["--cron", "0 9 * *"], "is not a cron expression (minute hour day month weekday"),
    (["--cron", "61 9 * * MON"], "is not a cron expression"),
    (["--cron", "0 9 * * FUNDAY"], "is not a cron expression"),
    (["--cron", "0 9 * * 8"], "is not within 0-7"),
    (["--cron", "0 9 * * MON-5"], "mixes names and numbers"),
    (["--cron", "0 9 31 2 *"], "never fires"),
    (["--cron", "0 " * 60], "longer than 100 characters"),
    (["--cron", "0 9 * * MON", "--tz", "Europe/Londn"], "is not a time zone"),
    (["--cron", "0 9 * * MON", "--tz", ""], "is not a time zone"),
    (["--cron", "0 9 * * MON", "--tz", "../../etc/passwd"], "is not a time zone"),
    (["--tz", "Europe/London"], "--tz goes with --cron"),
    (["--remove", "1", "--cron", "0 9 * * MON"], "--remove takes no --cron"),
    (["--remove", "99"], "no schedule with id 99"),
    (["--remove", "abc"], "'abc' is not a valid integer"),
])
def test_bad_input_is_one_line_and_stores_nothing(runner, session, args, reason):
    result = runner.invoke(["digests", "schedule", *args])
    assert result.exit_code == 2
    assert result.output.startswith("mailer: ") and result.output.count("\n") == 1, result.output
    assert reason in result.output
    assert count(session, DigestSchedule) == 0


# ---- cron and time zones, pure ----------------------------------------------------------------------

@pytest.mark.parametrize("numbers, names", [
    ("1", "MON"), ("0", "SUN"), ("7", "SUN"), ("1-5", "MON-FRI"), ("*/2", "SUN,TUE,THU,SAT"),
    ("0-1", "SUN,MON"), ("5-7", "FRI,SAT,SUN"), ("1,3", "MON,WED"),
])
def test_weekday_numbers_mean_what_they_mean_in_crontab(numbers, names):
    """APScheduler 3 counts weekdays from Monday = 0; crontab from Sunday = 0 (and 7)."""
    after = datetime(2026, 11, 21, tzinfo=UTC)
    by_number = fire_times(schedules.trigger_for(f"0 9 * * {numbers}", "UTC"), after, 7)
    by_name = fire_times(schedules.trigger_for(f"0 9 * * {names}", "UTC"), after, 7)
    assert by_number == by_name


def test_monday_is_monday():
    first = fire_times(schedules.trigger_for("0 9 * * 1", "UTC"), datetime(2026, 11, 21, tzinfo=UTC), 1)[0]
    assert first == datetime(2026, 11, 23, 9, 0, tzinfo=UTC) and first.strftime("%A") == "Monday"


@pytest.mark.parametrize("after, expected_utc", [
    # Clocks go back on Sunday 2026-10-25: 09:00 BST is 08:00 UTC, 09:00 GMT is 09:00 UTC.
    (datetime(2026, 10, 12, tzinfo=UTC), [(10, 12, 8), (10, 19, 8), (10, 26, 9), (11, 2, 9)]),
    # Clocks go forward on Sunday 2027-03-28.
    (datetime(2027, 3, 15, tzinfo=UTC), [(3, 15, 9), (3, 22, 9), (3, 29, 8), (4, 5, 8)]),
])
def test_a_london_schedule_fires_at_nine_local_across_the_clock_change(after, expected_utc):
    trigger = schedules.trigger_for("0 9 * * MON", "Europe/London")
    times = slots(trigger, after, 4)
    assert times == fire_times(trigger, after, 4)
    assert [(t.astimezone(LONDON).hour, t.astimezone(LONDON).strftime("%a")) for t in times] == [(9, "Mon")] * 4
    assert [(t.astimezone(UTC).month, t.astimezone(UTC).day, t.astimezone(UTC).hour) for t in times] == expected_utc


def test_a_local_time_that_happens_twice_is_one_slot():
    """01:30 happens twice in London on 2026-10-25 (BST, then GMT): one digest, as cron would send.
    APScheduler alone would fire at both."""
    trigger = schedules.trigger_for("30 1 * * SUN", "Europe/London")
    after = datetime(2026, 10, 17, tzinfo=UTC)
    assert slots(trigger, after, 3) == [datetime(2026, 10, 18, 0, 30, tzinfo=UTC),
                                        datetime(2026, 10, 25, 0, 30, tzinfo=UTC),
                                        datetime(2026, 11, 1, 1, 30, tzinfo=UTC)]
    assert fire_times(trigger, after, 3)[2].astimezone(UTC) == datetime(2026, 10, 25, 1, 30, tzinfo=UTC)


def test_a_local_time_the_clocks_skip_fires_an_hour_later():
    """01:30 does not exist in London on 2027-03-28: that Sunday's slot is 02:30 BST."""
    trigger = schedules.trigger_for("30 1 * * SUN", "Europe/London")
    assert slots(trigger, datetime(2027, 3, 27, tzinfo=UTC), 2) == [datetime(2027, 3, 28, 1, 30, tzinfo=UTC),
                                                                    datetime(2027, 4, 4, 0, 30, tzinfo=UTC)]


# ---- the job ----------------------------------------------------------------------------------------

def add_schedule(session, cron="0 9 * * MON", tz="UTC") -> DigestSchedule:
    schedule = schedules.add(session, cron, tz)
    session.commit()
    return schedule


def test_a_slot_run_twice_sends_one_digest(app, session, frozen_clock, deliver, config):
    """A second run of the same slot (a second scheduler, a retry, a catch-up) finds the slot's Send,
    even when there is something new to send by then."""
    factories.fixed_articles(session)
    factories.subscriber(session, "all@example.org")
    factories.subscriber(session, "climate@example.org", topics=("climate",))
    add_schedule(session)
    session.remove()

    tasks.send_due_digests()
    send = session.scalar(select(Send))
    assert send.slot_key == SLOT_KEY and send.recipients_count == 2
    schedule = session.get(DigestSchedule, 1)
    assert schedule.last_run_at == frozen_clock.now()
    assert schedule.next_run_at == datetime(2026, 11, 30, 9, 0, tzinfo=UTC)

    # A scheduler that read the schedule before the first one moved it on runs the slot again.
    schedule.next_run_at = frozen_clock.now()
    factories.article(session, slug="late", title="Filed A Minute Late", age=timedelta(seconds=30))
    session.commit()
    session.remove()
    tasks.send_due_digests()
    assert schedules.send_slot(session, 1, frozen_clock.now()).note == "already sent as digest 1"
    session.rollback()

    assert count(session, Send) == 1
    assert count(session, OutboxMessage) == 2
    messages = deliver()
    assert sorted(m["To"].addresses[0].addr_spec for m in messages) == ["all@example.org", "climate@example.org"]
    for message in messages:
        assert "Filed A Minute Late" not in check_message(message, postal_address=config["site"]["postal_address"])["text"]


def test_two_schedulers_at_the_same_minute_send_one_digest(app, session, frozen_clock, caplog):
    factories.fixed_articles(session)
    factories.subscriber(session, "reader@example.org")
    add_schedule(session)
    session.remove()
    start = threading.Barrier(2)

    def scheduler():
        with app.app_context():
            start.wait()
            tasks.send_due_digests()

    with caplog.at_level("INFO", logger="mailer.digests.tasks"):
        threads = [threading.Thread(target=scheduler) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not [r for r in caplog.records if r.levelname in ("WARNING", "ERROR")]
    assert session.scalars(select(Send.slot_key)).all() == [SLOT_KEY]
    assert count(session, OutboxMessage) == 1


def test_the_next_slot_sends_what_is_new_since(app, session, frozen_clock):
    factories.fixed_articles(session)
    factories.subscriber(session, "reader@example.org")
    add_schedule(session)
    session.remove()
    tasks.send_due_digests()
    factories.article(session, slug="week-two", title="Week Two News", age=timedelta(seconds=30))
    session.commit()
    session.remove()

    tasks.send_due_digests()  # the same minute: not due
    assert count(session, Send) == 1
    session.remove()
    frozen_clock.advance(timedelta(days=7))
    tasks.send_due_digests()
    sends = session.scalars(select(Send).order_by(Send.id)).all()
    assert [s.slot_key for s in sends] == [SLOT_KEY, "schedule:1:2026-11-30T09:00Z"]
    assert [a.title for a in sends[1].articles] == ["Week Two News"]


def test_nothing_new_sends_nothing_and_says_so(app, session, runner, frozen_clock, caplog):
    factories.subscriber(session, "reader@example.org")
    add_schedule(session)
    session.remove()
    with caplog.at_level("INFO", logger="mailer.digests.tasks"):
        tasks.send_due_digests()
    assert count(session, Send) == 0 and count(session, OutboxMessage) == 0
    assert [r.getMessage() for r in caplog.records] == [
        "schedule 1, slot 2026-11-23 09:00 UTC: nothing new since the last digest: nothing sent"]
    assert session.get(DigestSchedule, 1).next_run_at == datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    session.remove()
    listed = runner.invoke(["digests", "schedule"]).output
    assert listed.endswith("next Mon 2026-11-30 09:00 UTC (09:00 UTC)\tlast 2026-11-23 09:00 UTC\n")


def test_missed_slots_catch_up_as_one_digest(app, session, frozen_clock):
    """The scheduler was down for two weeks and comes back 20 minutes after a slot: one digest, now."""
    factories.fixed_articles(session)
    factories.subscriber(session, "reader@example.org")
    add_schedule(session)
    session.remove()
    frozen_clock.advance(timedelta(days=14, minutes=20))
    tasks.send_due_digests()
    assert session.scalars(select(Send.slot_key)).all() == ["schedule:1:2026-12-07T09:00Z"]
    assert session.get(DigestSchedule, 1).next_run_at == datetime(2026, 12, 14, 9, 0, tzinfo=UTC)


def test_a_slot_hours_late_is_skipped_and_its_articles_wait(app, session, frozen_clock, caplog):
    factories.fixed_articles(session)
    factories.subscriber(session, "reader@example.org")
    add_schedule(session)
    session.remove()
    frozen_clock.advance(timedelta(hours=5))
    with caplog.at_level("INFO", logger="mailer.digests.tasks"):
        tasks.send_due_digests()
    assert count(session, Send) == 0
    assert "skipped: 5:00:00 late" in caplog.text
    session.remove()
    frozen_clock.advance(timedelta(days=7) - timedelta(hours=5))
    tasks.send_due_digests()
    assert len(session.scalar(select(Send)).articles) == 3


def test_the_job_moves_a_schedule_past_a_repeated_local_time(app, session, frozen_clock):
    frozen_clock.freeze(datetime(2026, 10, 24, 12, 0, tzinfo=UTC))
    add_schedule(session, "30 1 * * SUN", "Europe/London")
    session.remove()
    frozen_clock.freeze(datetime(2026, 10, 25, 0, 30, tzinfo=UTC))  # 01:30 BST, the first 01:30
    tasks.send_due_digests()
    assert session.get(DigestSchedule, 1).next_run_at == datetime(2026, 11, 1, 1, 30, tzinfo=UTC)


def test_a_removed_schedule_sends_nothing(app, session, frozen_clock):
    factories.fixed_articles(session)
    factories.subscriber(session, "reader@example.org")
    add_schedule(session)
    schedules.remove(session, 1)
    session.commit()
    session.remove()
    tasks.send_due_digests()
    assert count(session, Send) == 0


# ---- the scheduler ----------------------------------------------------------------------------------

def test_the_schedule_job_is_stored_and_fires_every_minute(app, session):
    session.remove()
    scheduler = scheduling.make_scheduler(app)
    scheduler.start(paused=True)
    try:
        trigger = scheduler.get_job("send-due-digests").trigger
        after = datetime(2026, 11, 23, 8, 59, 30, tzinfo=UTC)
        assert fire_times(trigger, after, 3) == [datetime(2026, 11, 23, 9, m, tzinfo=UTC) for m in (0, 1, 2)]
    finally:
        scheduler.shutdown(wait=False)
    with app.extensions["engine"].connect() as conn:
        assert "send-due-digests" in conn.execute(text("SELECT id FROM apscheduler_jobs")).scalars().all()


def test_a_running_scheduler_sends_a_schedule_added_after_it_started(app, session, runner, frozen_clock):
    """No restart: the job reads the schedules table each time it runs. (Instead of waiting for the
    next minute, the test moves the job's next run to now.)"""
    factories.fixed_articles(session)
    factories.subscriber(session, "reader@example.org")
    session.commit()
    session.remove()
    scheduler = scheduling.make_scheduler(app)
    scheduler.start()
    try:
        assert runner.invoke(["digests", "schedule", "--cron", "0 9 * * MON"]).exit_code == 0
        session.remove()
        scheduler.modify_job("send-due-digests", next_run_time=datetime.now(UTC))
        deadline = time.monotonic() + 30
        while (sent := slot_keys_sent(session)) == [] and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        scheduler.shutdown(wait=True)
    assert sent == [SLOT_KEY]


def slot_keys_sent(session) -> list[str]:
    """Read without keeping SQLite's write lock (our transactions begin IMMEDIATE) from the scheduler."""
    try:
        return session.scalars(select(Send.slot_key)).all()
    finally:
        session.remove()
