"""The scheduler: APScheduler with its jobs in our database, so schedules survive restarts.

Jobs are thin: they name a task ("package.module:function") that runs inside the app, selects what is
due, calls an operation and commits.

One scheduler per database: the process that holds the "scheduler" lease runs the schedules; any other
(a second `mailer serve`, a `mailer scheduler` started twice) stands by, says so, and takes over when
the holder stops (at once after a clean stop, after `scheduler.lease_seconds` after a crash).
"""

from __future__ import annotations

import importlib
import logging
import threading

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler

from mailer import db, leases

log = logging.getLogger(__name__)

LEASE = "scheduler"

# The app the jobs of this process run in; set when a scheduler starts.
_app = None

# Built-in recurring jobs: id -> (task, trigger, trigger arguments).
BUILTIN_JOBS: dict[str, tuple[str, str, dict]] = {
    "poll-feeds": ("mailer.feeds.tasks:poll_all", "interval", {"minutes": 15}),
    # Digest schedules are rows this job reads each minute (at second 0), not jobs of their own:
    # APScheduler 3 does not poll its job store, so a job `mailer digests schedule` added from
    # another process would wait for this scheduler's next wake-up; a row is seen within a minute.
    "send-due-digests": ("mailer.digests.tasks:send_due_digests", "cron", {"minute": "*"}),
    "forget-sign-in-attempts": ("mailer.editors.tasks:forget_old_attempts", "interval", {"hours": 1}),
    "reduce-old-deliveries": ("mailer.sends.tasks:reduce_old_rows", "interval", {"hours": 1}),
    # privacy.keep_ip_days and tracking.keep_days are counted in days: an hourly pass keeps them to the hour.
    "apply-retention": ("mailer.privacy.tasks:apply_retention", "interval", {"hours": 1}),
    "deliver-webhooks": ("mailer.webhooks.tasks:deliver_events", "cron", {"minute": "*"}),
    # Does nothing unless bounces.is_scheduled: the job is always there, so turning it off needs no clean-up.
    "read-bounce-mailbox": ("mailer.bounces.tasks:read_bounce_mailbox", "interval", {"minutes": 5}),
}
# Jobs whose interval the config sets: job id -> (section, key) holding the minutes.
CONFIGURED_INTERVALS: dict[str, tuple[str, str]] = {
    "read-bounce-mailbox": ("bounces", "interval_minutes"),
}


def run_task(task: str) -> None:
    """Run `package.module:function` inside the app of this process."""
    module_name, _, name = task.partition(":")
    function = getattr(importlib.import_module(module_name), name)
    with _app.app_context():
        function()


def make_scheduler(app):
    global _app
    _app = app
    config = app.config["MAILER"]
    jobstore = SQLAlchemyJobStore(engine=app.extensions["engine"], tablename="apscheduler_jobs")
    scheduler = BackgroundScheduler(jobstores={"default": jobstore}, timezone=config["scheduler"]["timezone"],
                    job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600})
    for job_id, (task, trigger, args) in BUILTIN_JOBS.items():
        if job_id in CONFIGURED_INTERVALS:
            section, key = CONFIGURED_INTERVALS[job_id]
            args = {"minutes": config[section][key]}
        scheduler.add_job(run_task, trigger, args=[task], id=job_id, name=job_id, replace_existing=True, **args)
    return scheduler


class ScheduleKeeper(threading.Thread):
    """Runs the schedules in this process while it holds the scheduler lease; stands by otherwise.

    `check()` once before `start()` tells the start-up block which it is; the thread then renews (or
    tries to take) the lease every third of `scheduler.lease_seconds`.
    """

    def __init__(self, app):
        super().__init__(name="scheduler-lease", daemon=True)
        self.app = app
        self.seconds = app.config["MAILER"]["scheduler"]["lease_seconds"]
        self.holder = leases.holder_name()
        self.scheduler = None
        self.other: leases.Lease | None = None  # the lease of the process we stand by for
        self._stopping = threading.Event()

    @property
    def is_running(self) -> bool:
        """True while this process runs the schedules."""
        return self.scheduler is not None

    def describe(self) -> str:
        """One line for the start-up block."""
        if self.is_running:
            return "on: this process runs the schedules (it holds the scheduler lease)"
        return (f"standby: {self.other.holder if self.other else 'another process'} runs the schedules; "
                f"this process takes over if it stops")

    def check(self) -> bool:
        """Take or renew the lease, start or stop the schedules to match; True when they run here."""
        try:
            held, lease = leases.take(db.session, LEASE, self.holder, self.seconds)
        finally:
            db.session.remove()
        if held:
            if self.scheduler is None:
                self.scheduler = make_scheduler(self.app)
                self.scheduler.start()
                if self.other is not None:
                    log.warning("scheduler: %s stopped; this process runs the schedules now", self.other.holder)
            self.other = None
            return True
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
            self.scheduler = None
            log.warning("scheduler: another process took the scheduler lease (this one stalled past it); "
                        "standing by")
        elif lease is not None and self.other is not None and lease.holder != self.other.holder:
            log.warning("scheduler: standby: %s runs the schedules now", lease.holder)
        self.other = lease or self.other
        return False

    def run(self) -> None:
        while not self._stopping.wait(self.seconds / 3):
            try:
                with self.app.app_context():
                    self.check()
            except Exception:  # a database hiccup: try again at the next look; the lease outlasts a few
                log.exception("scheduler: could not renew the scheduler lease")

    def stop(self) -> None:
        """Stop the schedules here and give the lease up, so a standby takes over at once."""
        self._stopping.set()
        if self.is_alive():
            self.join()
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
            self.scheduler = None
        with self.app.app_context():
            try:
                leases.release(db.session, LEASE, self.holder)
            finally:
                db.session.remove()
