"""Editors' room for subscribers: search them, open one (their consent proof, mail and clicks), suppress or
lift a manual suppression, export everyone as CSV, and import a CSV (checked whole, then imported in the
background while a progress page watches). Opening a subscriber's page is access to personal
data, so it is audited like every change."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

from flask import Blueprint, Response, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload
from werkzeug.utils import secure_filename
from wtforms import BooleanField, StringField
from wtforms.validators import Length

from mailer import db
from mailer.admin import import_jobs
from mailer.admin.access import audit, get_or_404
from mailer.editors.models import ImportJob
from mailer.errors import SubscriberError
from mailer.extensions import csrf
from mailer.links.models import Click
from mailer.outbox.models import OutboxMessage
from mailer.sends.models import Send
from mailer.topics.models import SubscriberTopic, Topic
from subscribers import exporting, importing
from subscribers.models import Subscriber, SubscriberState, Suppression

blueprint = Blueprint("subscribers", __name__, url_prefix="/subscribers")

PAGE = 50
# The app refuses bodies over 64 KB; an uploaded list may be larger. Larger files: `mailer subscribers import`.
MAX_UPLOAD_BYTES = 2 * 1024 * 1024
MANUAL = "manual"
EXPIRED = "The form had expired or was incomplete. Please try again."
# Why a suppression that is not the editors' own cannot be lifted here.
NOT_LIFTABLE = {
    "bounced": "the address hard-bounced: mail to it cannot be delivered",
    "complained": "the reader marked our mail as spam",
    "erased": "the reader asked for their data to be erased",
    "unsubscribed": "the reader unsubscribed: only they can subscribe again",
}


class SuppressForm(FlaskForm):
    detail = StringField("Why (kept with the suppression)", validators=[Length(max=500)])


class LiftForm(FlaskForm):
    pass


class ImportForm(FlaskForm):
    file = FileField("CSV file (UTF-8; columns email, name, topics with slugs separated by ;)")
    confirmed = BooleanField("These people already gave consent elsewhere: confirm them at once, without "
                             "a confirmation mail (the consent record names this file as proof)")


def _subscriber(subscriber_id: int) -> Subscriber:
    return get_or_404(Subscriber, subscriber_id)


def _suppression(email: str) -> Suppression | None:
    return db.session.scalar(select(Suppression).where(Suppression.email == email))


def index():
    q = request.args.get("q", "").strip()[:254]
    name = request.args.get("name", "").strip()[:200]
    state = request.args.get("state", "").strip()
    topic = request.args.get("topic", "").strip()[:80]
    page = max(request.args.get("page", 1, type=int) or 1, 1)
    error = None
    query = select(Subscriber).options(selectinload(Subscriber.topics))
    if q:
        query = query.where(func.lower(Subscriber.email).contains(q.lower(), autoescape=True))
    if name:
        query = query.where(func.lower(Subscriber.name).contains(name.lower(), autoescape=True))
    if state:
        if state not in SubscriberState.__members__:
            error = (f"There is no state {state!r}: choose one of "
                     + ", ".join(SubscriberState.__members__) + ".")
        else:
            query = query.where(Subscriber.state == SubscriberState(state))
    if topic:
        query = query.where(Subscriber.id.in_(
            select(SubscriberTopic.subscriber_id).join(Topic, Topic.id == SubscriberTopic.topic_id)
            .where(Topic.slug == topic)))
    rows = [] if error else list(db.session.scalars(
        query.order_by(Subscriber.created_at.desc(), Subscriber.id.desc()).limit(PAGE + 1).offset((page - 1) * PAGE)))
    topics = list(db.session.scalars(select(Topic).order_by(Topic.slug)))
    args = {"q": q, "name": name, "state": state, "topic": topic}
    return render_template("admin/subscribers.html", rows=rows[:PAGE], has_more=len(rows) > PAGE, page=page,
                           args=args, states=list(SubscriberState.__members__), topics=topics,
                           error=error), (400 if error else 200)


def show(subscriber_id: int):
    subscriber = _subscriber(subscriber_id)
    # The audit row names the subscriber by id only: an erasure deletes the subscriber, and must not leave
    # their address behind in the audit log.
    audit("subscriber.view", subscriber)
    db.session.commit()
    return _page(subscriber)


def _page(subscriber: Subscriber, error: str | None = None, suppress_form: SuppressForm | None = None):
    mail = list(db.session.scalars(select(OutboxMessage).where(OutboxMessage.subscriber_id == subscriber.id)
                                   .order_by(OutboxMessage.id.desc())))
    clicks = list(db.session.execute(
        select(Click, Send).join(Send, Send.id == Click.send_id).options(selectinload(Click.link))
        .where(Click.subscriber_id == subscriber.id).order_by(Click.id.desc())))
    suppression = _suppression(subscriber.email)
    return render_template(
        "admin/subscribers_show.html", subscriber=subscriber, mail=mail, clicks=clicks, suppression=suppression,
        not_liftable=NOT_LIFTABLE.get(suppression.reason, f"its reason is {suppression.reason}")
        if suppression is not None and suppression.reason != MANUAL else None,
        suppress_form=suppress_form or SuppressForm(formdata=None), lift_form=LiftForm(formdata=None),
        error=error), (400 if error else 200)


def suppress(subscriber_id: int):
    subscriber = _subscriber(subscriber_id)
    form = SuppressForm()
    if not form.validate_on_submit():
        return _page(subscriber, EXPIRED if "csrf_token" in form.errors else
                     next(iter(form.errors.values()))[0], form)
    if _suppression(subscriber.email) is not None:
        return _page(subscriber, "This address is already suppressed.", form)
    detail = form.detail.data.strip()
    db.session.add(Suppression(email=subscriber.email, reason=MANUAL, detail=detail))
    audit("subscriber.suppress", subscriber, MANUAL)
    db.session.commit()
    flash(f"{subscriber.email} is suppressed: it gets no bulk mail until you lift it.")
    return redirect(url_for("admin.subscribers.show", subscriber_id=subscriber.id))


def unsuppress(subscriber_id: int):
    subscriber = _subscriber(subscriber_id)
    form = LiftForm()
    if not form.validate_on_submit():
        return _page(subscriber, EXPIRED)
    suppression = _suppression(subscriber.email)
    if suppression is None:
        return _page(subscriber, "This address is not suppressed.")
    if suppression.reason != MANUAL:
        return _page(subscriber, "This suppression cannot be lifted here: "
                     + NOT_LIFTABLE.get(suppression.reason, f"its reason is {suppression.reason}") + ".")
    audit("subscriber.unsuppress", subscriber, MANUAL)
    db.session.delete(suppression)
    db.session.commit()
    flash(f"The suppression of {subscriber.email} is lifted.")
    return redirect(url_for("admin.subscribers.show", subscriber_id=subscriber.id))


def export():
    out = io.StringIO()
    count = exporting.write_csv(out)
    audit("subscriber.export", None, f"{count} subscribers")
    db.session.commit()
    return Response(out.getvalue(), mimetype="text/csv", headers={
        "Content-Disposition": 'attachment; filename="subscribers.csv"'})


def upload():
    """The import form; on POST, the whole file checked (a row with an error imports nothing), then a job
    that imports it in the background, and a redirect to its progress page."""
    if request.method == "GET":
        return _import_page(ImportForm(formdata=None))
    # Before anything reads the body: a list may be larger than a form, and CSRF is checked here (the view
    # is exempt from the app-wide check, which would read the body under the app's smaller limit).
    request.max_content_length = MAX_UPLOAD_BYTES
    # The multipart parser holds up to this much of the body at once while it looks for a part's end.
    request.max_form_memory_size = MAX_UPLOAD_BYTES
    csrf.protect()
    form = ImportForm()
    upload_file = form.file.data
    if not form.validate_on_submit() or upload_file is None or not upload_file.filename:
        return _import_page(form, "Choose a CSV file to import.")
    name = secure_filename(upload_file.filename) or "upload.csv"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        upload_file.save(path)
        try:
            total, errors = importing.check_file(path, topic_slugs=[])
        except SubscriberError as exc:
            return _import_page(form, f"Nothing was imported: {exc}")
        if errors:
            return _import_page(form, f"Nothing was imported: {len(errors)} of {total} row(s) have errors. "
                                      "Fix them and upload the whole file again.", errors=errors)
        with path.open(encoding="utf-8-sig", newline="") as f:  # as the importer reads it
            content = f.read()
    job = import_jobs.create(name, content, total, form.confirmed.data, current_user._get_current_object())
    audit("subscriber.import", job, f"{name}: {total} rows" + (" (confirmed)" if form.confirmed.data else ""))
    db.session.commit()
    import_jobs.start(current_app._get_current_object(), job.id)
    return redirect(url_for("admin.subscribers.import_job", job_id=job.id), 303)


def _import_page(form: ImportForm, error: str | None = None, errors=()):
    jobs = list(db.session.scalars(select(ImportJob).order_by(ImportJob.id.desc()).limit(10)))
    return render_template("admin/subscribers_import.html", form=form, error=error, errors=errors, jobs=jobs,
                           unfinished=import_jobs.UNFINISHED), (400 if error else 200)


def import_job(job_id: int):
    """An import's progress (the page refreshes itself while it runs), then its result. Viewing a job that
    a stopped process left unfinished starts it again."""
    job = get_or_404(ImportJob, job_id)
    if import_jobs.resume_if_abandoned(current_app._get_current_object(), job):
        db.session.refresh(job)
    return render_template("admin/subscribers_import_job.html", job=job, unfinished=import_jobs.UNFINISHED,
                           problems=[line for line in job.errors.splitlines() if line])


csrf.exempt(upload)

blueprint.add_url_rule("/", "index", index, methods=["GET"])
blueprint.add_url_rule("/import", "upload", upload, methods=["GET", "POST"])
blueprint.add_url_rule("/imports/<int:job_id>", "import_job", import_job, methods=["GET"])
blueprint.add_url_rule("/export.csv", "export", export, methods=["GET"])
blueprint.add_url_rule("/<int:subscriber_id>", "show", show, methods=["GET"])
blueprint.add_url_rule("/<int:subscriber_id>/suppress", "suppress", suppress, methods=["POST"])
blueprint.add_url_rule("/<int:subscriber_id>/unsuppress", "unsuppress", unsuppress, methods=["POST"])
