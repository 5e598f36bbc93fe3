"""Verbs of digest schedules: add, list and remove one, and run the slot that has come.

A schedule is a row (cron expression, time zone, next slot); the scheduler's one-minute job
(`mailer.digests.tasks.send_due_digests`) runs every schedule whose slot has come. A slot's digest is a
Send whose unique slot_key names the schedule and the slot, so a slot run twice sends one digest.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import select
from sqlalchemy.orm import Session

from mailer import clock
from mailer.digests import operations
from mailer.sends import operations as send_operations
from mailer.sends.models import Send
from mailer.digests.models import DigestSchedule
from mailer.errors import DigestError, NotFound

# A slot found this late (the scheduler was down) is skipped, not sent at an odd hour: its articles
# go out in the next digest anyway. The same grace as the scheduler's own jobs.
LATE_SLOT_GRACE = timedelta(hours=1)
MAX_CRON_LENGTH = 100
# Cron numbers weekdays from Sunday = 0 (7 is Sunday too).
CRON_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def trigger_for(cron: str, timezone: str) -> CronTrigger:
    """The trigger of a crontab line read in an IANA time zone; DigestError naming what is wrong.

    Weekday numbers mean what they mean in crontab (1 = Monday): APScheduler 3 alone would read
    "0 9 * * 1" as Tuesdays.
    """
    try:
        zone = zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise DigestError(f"--tz {timezone!r} is not a time zone; use a name like Europe/London or UTC") from None
    if len(cron) > MAX_CRON_LENGTH:
        raise DigestError(f"--cron is longer than {MAX_CRON_LENGTH} characters")
    fields = cron.split()
    if len(fields) == 5:
        fields[4] = _weekday_names(cron, fields[4])
    try:
        return CronTrigger.from_crontab(" ".join(fields), timezone=zone)
    except ValueError as exc:
        raise DigestError(f"--cron {cron!r} is not a cron expression (minute hour day month weekday, "
                          f"e.g. \"0 9 * * MON\"): {exc}") from None


def _weekday_names(cron: str, field: str) -> str:
    """A crontab weekday field with its numbers as names: "1-5" -> "mon,tue,wed,thu,fri"."""
    items = []
    for item in field.split(","):
        base, has_step, step = item.partition("/")
        if not any(c.isdigit() for c in base) and not (base == "*" and has_step):
            items.append(item)  # names ("MON", "mon-fri") and "*" mean the same to APScheduler
            continue
        try:
            if base == "*":
                first, last = 0, 6
            elif "-" in base:
                first, last = (int(n) for n in base.split("-"))
            else:
                first = int(base)
                last = 7 if has_step else first
            every = int(step) if has_step else 1
        except ValueError:
            raise DigestError(f"--cron {cron!r}: the weekday {item!r} mixes names and numbers; "
                              f"use MON-FRI or 1-5") from None
        if not (0 <= first <= last <= 7) or every < 1:
            raise DigestError(f"--cron {cron!r}: the weekday {item!r} is not within 0-7 (0 and 7 are Sunday)")
        items.extend(CRON_WEEKDAYS[day % 7] for day in range(first, last + 1, every))
    return ",".join(dict.fromkeys(items))


def add(session: Session, cron: str, timezone: str) -> DigestSchedule:
    """Add a schedule after checking its cron expression and time zone; the caller commits."""
    cron = " ".join(cron.split())
    trigger = trigger_for(cron, timezone)
    now = clock.now()
    next_run_at = trigger.get_next_fire_time(None, now)  # in the schedule's zone
    if next_run_at is None:
        raise DigestError(f"--cron {cron!r} never fires (no such date); check the day and month")
    schedule = DigestSchedule(cron=cron, timezone=timezone, next_run_at=next_run_at.astimezone(UTC),
                              created_at=now)
    session.add(schedule)
    session.flush()
    return schedule


def set_paused(session: Session, schedule: DigestSchedule, paused: bool) -> None:
    """Pause or resume a schedule. Resuming starts from its next slot after now: slots missed while
    paused are not sent late (a weekly digest resumed on Thursday waits for Monday)."""
    if paused == schedule.is_paused:
        raise DigestError(f"schedule {schedule.id} is already {'paused' if paused else 'running'}")
    schedule.is_paused = paused
    if not paused:
        next_run_at = trigger_for(schedule.cron, schedule.timezone).get_next_fire_time(None, clock.now())
        schedule.next_run_at = next_run_at.astimezone(UTC)


def remove(session: Session, schedule_id: int) -> None:
    """Remove a schedule; digests it already sent stay in the archive. The caller commits."""
    schedule = session.get(DigestSchedule, schedule_id)
    if schedule is None:
        raise NotFound(f"no schedule with id {schedule_id} (`mailer digests schedule` lists them)")
    session.delete(schedule)


def all_schedules(session: Session) -> list[DigestSchedule]:
    return list(session.scalars(select(DigestSchedule).order_by(DigestSchedule.id)))


def due_ids(session: Session, now: datetime) -> list[int]:
    """The schedules whose next slot has come (paused ones wait)."""
    return list(session.scalars(select(DigestSchedule.id).where(DigestSchedule.next_run_at <= now,
                                                                DigestSchedule.is_paused.is_(False))
                                .order_by(DigestSchedule.next_run_at, DigestSchedule.id)))


def slot_key(schedule_id: int, slot_at: datetime) -> str:
    """The Send.slot_key of a schedule's slot, e.g. 'schedule:3:2026-11-23T09:00Z'."""
    return f"schedule:{schedule_id}:{slot_at:%Y-%m-%dT%H:%MZ}"


@dataclass(frozen=True)
class SlotRun:
    """What running a schedule's slot did, for the scheduler's log."""

    schedule_id: int
    slot_at: datetime | None
    send: Send | None = None
    recipients: int = 0
    note: str = ""

    def line(self) -> str:
        slot = f"{self.slot_at:%Y-%m-%d %H:%M} UTC" if self.slot_at else "no slot"
        if self.send is not None:
            return (f"schedule {self.schedule_id}, slot {slot}: "
                    f"digest {self.send.id} queued to {self.recipients} recipient(s)")
        return f"schedule {self.schedule_id}, slot {slot}: {self.note}"


def run_due(session: Session, schedule_id: int) -> SlotRun:
    """Run the schedule's slot if it has come: compose the next digest and queue it, once per slot.

    The schedule row is locked and moved on to its next slot in the same transaction as the digest,
    so the caller's commit records both or neither. Slots missed while no scheduler ran are
    coalesced into the latest one; a slot more than LATE_SLOT_GRACE late is skipped.
    """
    now = clock.now()
    # populate_existing: the locked row as it is now, not as this session may have seen it earlier.
    schedule = session.scalar(select(DigestSchedule).where(DigestSchedule.id == schedule_id)
                              .with_for_update().execution_options(populate_existing=True))
    if schedule is None or schedule.next_run_at > now:  # removed, or another scheduler ran it first
        return SlotRun(schedule_id, None, note="not due")
    trigger = trigger_for(schedule.cron, schedule.timezone)
    slot_at = _latest_slot(trigger, schedule.next_run_at, now)
    schedule.last_run_at = slot_at
    schedule.next_run_at = following_slot(trigger, slot_at)  # slot_at is the last one by now, so after now
    if now - slot_at > LATE_SLOT_GRACE:
        return SlotRun(schedule.id, slot_at, note=f"skipped: {now - slot_at} late (the scheduler was not running); "
                                                  f"its articles go in the next digest")
    return send_slot(session, schedule.id, slot_at)


def send_slot(session: Session, schedule_id: int, slot_at: datetime) -> SlotRun:
    """Compose and queue the digest of one slot, unless that slot already has one (slot_key).

    Nothing new since the last digest: no Send at all. Two runs racing past the check meet the
    unique slot_key at flush (IntegrityError), and the caller rolls the second back.
    """
    key = slot_key(schedule_id, slot_at)
    existing = session.scalar(select(Send).where(Send.slot_key == key))
    if existing is not None:
        return SlotRun(schedule_id, slot_at, note=f"already sent as digest {existing.id}")
    send = operations.compose_next(session)
    if send is None:
        return SlotRun(schedule_id, slot_at, note="nothing new since the last digest: nothing sent")
    send.slot_key = key
    session.flush()
    recipients = send_operations.queue(session, send)
    return SlotRun(schedule_id, slot_at, send, recipients)


def _latest_slot(trigger: CronTrigger, slot_at: datetime, now: datetime) -> datetime:
    """The last slot at or before now, starting from the stored one (several if the scheduler was down)."""
    while (following := following_slot(trigger, slot_at)) <= now:
        slot_at = following
    return slot_at


def following_slot(trigger: CronTrigger, slot_at: datetime) -> datetime:
    """The slot after slot_at, in UTC.

    A local time that happens twice when the clocks go back (01:30 on the last Sunday of October in
    London) is one slot, as in cron: APScheduler alone fires at both.
    """
    def after(moment: datetime) -> datetime:
        # In UTC: local-time arithmetic would move 01:30 (second time round) back to the first.
        # APScheduler's `now` argument is where its search starts.
        moment = moment.astimezone(UTC)
        return trigger.get_next_fire_time(moment, moment + timedelta(microseconds=1))

    def wall_clock(moment: datetime) -> datetime:
        return moment.astimezone(trigger.timezone).replace(tzinfo=None)

    following = after(slot_at)
    if wall_clock(following) == wall_clock(slot_at):
        following = after(following)
    return following.astimezone(UTC)
