"""The background import of a CSV uploaded in the workspace: an ImportJob row and a thread that runs it.

The rows go in through subscribers.importing in chunks; each chunk commits together with the job's
progress, so the counters never run ahead of or behind the rows. A thread holds the job's lease (a row in
`leases`, renewed with every chunk): a job whose lease has lapsed was left by a process that stopped,
and the next view of its page resumes it after the rows already done. Addresses already in are skipped,
so even a row imported twice would be in once.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import uuid
from datetime import timedelta
from pathlib import Path

from flask import Flask
from sqlalchemy import delete, update

from mailer import clock, db, leases
from mailer.editors import operations as editor_operations
from mailer.editors.models import Editor, ImportJob
from mailer.errors import MailerError
from mailer.leases import Lease
from subscribers import importing

log = logging.getLogger(__name__)

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
UNFINISHED = (QUEUED, RUNNING)
# A chunk of 500 rows takes seconds; a lease not renewed for this long belongs to a process that stopped.
LEASE_SECONDS = 120


class LostLease(Exception):
    """Another process took the job over: this thread stops without committing its chunk."""


def create(filename: str, content: str, total_rows: int, is_confirmed: bool, editor: Editor | None) -> ImportJob:
    """A queued job for a checked file (added to the session; the caller commits, then calls `start`)."""
    job = ImportJob(created_by_id=editor.id if editor is not None else None, filename=filename, content=content,
                    is_confirmed=is_confirmed, state=QUEUED, total_rows=total_rows)
    db.session.add(job)
    db.session.flush()
    return job


def start(app: Flask, job_id: int) -> bool:
    """Run the job in a thread of this process, unless a live process holds it; True when started here."""
    holder = f"{leases.holder_name()} import {uuid.uuid4().hex[:12]}"  # each thread a holder of its own
    if not claim(job_id, holder):
        return False
    threading.Thread(target=_run, args=(app, job_id, holder), name=f"import-job-{job_id}", daemon=True).start()
    return True


def resume_if_abandoned(app: Flask, job: ImportJob) -> bool:
    """Start an unfinished job again when no live process holds it (its process stopped); True if resumed."""
    return job.state in UNFINISHED and start(app, job.id)


def _lease_name(job_id: int) -> str:
    return f"import-job:{job_id}"


def claim(job_id: int, holder: str) -> bool:
    """Take the job's lease when it is free or lapsed (committed); False while another holder keeps it, or
    once the job has ended."""
    taken, _ = leases.take(db.session, _lease_name(job_id), holder, LEASE_SECONDS)
    if not taken:
        return False
    # Read after taking the lease: a holder that just finished ended the job and let its lease go in one commit.
    job = db.session.get(ImportJob, job_id, populate_existing=True)
    if job is None or job.state not in UNFINISHED:
        leases.release(db.session, _lease_name(job_id), holder)
        return False
    return True


def _renew(job_id: int, holder: str) -> None:
    """Inside a chunk's transaction: keep the lease, or stop if another holder has it (the chunk rolls back)."""
    kept = db.session.execute(
        update(Lease).where(Lease.name == _lease_name(job_id), Lease.holder == holder)
        .values(expires_at=clock.now() + timedelta(seconds=LEASE_SECONDS))).rowcount
    if not kept:
        raise LostLease


def _run(app: Flask, job_id: int, holder: str) -> None:
    with app.app_context():
        try:
            run(job_id, holder)
        except LostLease:
            log.info("import job %s: another process took it over", job_id)
        except Exception as exc:
            log.exception("import job %s failed", job_id)
            db.session.rollback()
            _fail(job_id, holder, exc)
        finally:
            db.session.remove()


def run(job_id: int, holder: str) -> ImportJob:
    """Import the job's rows after those already done, in chunks, then empty its content and audit it."""
    job = db.session.get(ImportJob, job_id)
    job.state = RUNNING
    base_created, base_skipped, base_errors = job.created_count, job.skipped_count, job.errors
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / job.filename
        # newline="" keeps the file byte for byte: a quoted field may hold a line break.
        with path.open("w", encoding="utf-8", newline="") as f:
            f.write(job.content or "")
        _renew(job_id, holder)
        db.session.commit()

        def save_progress(progress: importing.Progress) -> None:
            _renew(job_id, holder)
            job.done_rows = progress.rows_done
            job.created_count = base_created + progress.report.imported
            job.skipped_count = base_skipped + progress.report.skipped
            job.errors = "\n".join(filter(None, [base_errors, *map(str, progress.report.problems)]))

        importing.import_csv(path, topic_slugs=[slug for slug in job.topics.split(",") if slug],
                             is_confirmed=job.is_confirmed, skip_rows=job.done_rows, on_chunk=save_progress)
    _renew(job_id, holder)
    job.state, job.content, job.finished_at = DONE, None, clock.now()
    _audit_end(job, f"{job.filename}: imported {job.created_count}, skipped {job.skipped_count}")
    db.session.execute(delete(Lease).where(Lease.name == _lease_name(job_id), Lease.holder == holder))
    db.session.commit()
    return job


def _fail(job_id: int, holder: str, exc: Exception) -> None:
    job = db.session.get(ImportJob, job_id)
    reason = str(exc) if isinstance(exc, MailerError) else f"an unexpected error ({type(exc).__name__})"
    job.state, job.content, job.finished_at = FAILED, None, clock.now()
    job.errors = "\n".join(filter(None, [job.errors, f"The import stopped: {reason}."]))
    _audit_end(job, f"{job.filename}: stopped after {job.done_rows} of {job.total_rows} rows")
    db.session.execute(delete(Lease).where(Lease.name == _lease_name(job_id), Lease.holder == holder))
    db.session.commit()


def _audit_end(job: ImportJob, detail: str) -> None:
    # The editor who uploaded the file started it; the end is theirs too (no request, so no address).
    editor = db.session.get(Editor, job.created_by_id) if job.created_by_id is not None else None
    editor_operations.record(db.session, editor_operations.Actor(editor), "subscriber.import.end", job, detail)
