"""The scheduler: APScheduler with its jobs in our database, so schedules survive restarts."""

from __future__ import annotations

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler


def make_scheduler(app, background: bool = True):
    config = app.config["MAILER"]
    jobstore = SQLAlchemyJobStore(engine=app.extensions["engine"], tablename="apscheduler_jobs")
    return BackgroundScheduler(jobstores={"default": jobstore}, timezone=config["scheduler"]["timezone"])


def start_background(app):
    """Start the scheduler in a thread of this process (`mailer serve`)."""
    scheduler = make_scheduler(app)
    scheduler.start()
    return scheduler
