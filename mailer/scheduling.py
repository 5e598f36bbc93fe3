"""The scheduler: APScheduler with its jobs in our database, so schedules survive restarts.

Jobs are thin: they name a task ("package.module:function") that runs inside the app, selects what is
due, calls an operation and commits.
"""

from __future__ import annotations

import importlib
import logging

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.blocking import BlockingScheduler

log = logging.getLogger(__name__)

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


def make_scheduler(app, blocking: bool = False):
    global _app
    _app = app
    config = app.config["MAILER"]
    jobstore = SQLAlchemyJobStore(engine=app.extensions["engine"], tablename="apscheduler_jobs")
    cls = BlockingScheduler if blocking else BackgroundScheduler
    scheduler = cls(jobstores={"default": jobstore}, timezone=config["scheduler"]["timezone"],
                    job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600})
    for job_id, (task, trigger, args) in BUILTIN_JOBS.items():
        if job_id in CONFIGURED_INTERVALS:
            section, key = CONFIGURED_INTERVALS[job_id]
            args = {"minutes": config[section][key]}
        scheduler.add_job(run_task, trigger, args=[task], id=job_id, name=job_id, replace_existing=True, **args)
    return scheduler


def start_background(app):
    """Start the scheduler in a thread of this process (`mailer serve`)."""
    scheduler = make_scheduler(app)
    scheduler.start()
    return scheduler
