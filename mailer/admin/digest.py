"""The "Next digest" room: what goes in (hold back, a note), a preview, a test to me, send now, schedules."""

from __future__ import annotations

import re
import secrets
import zoneinfo
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from flask import Blueprint, Response, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy.exc import IntegrityError
from wtforms import HiddenField, TextAreaField
from wtforms.validators import DataRequired, Length

from mailer import clock, db
from mailer.admin import forms
from mailer.admin.access import audit
from mailer.digests import operations, queries, schedules
from mailer.digests.models import DigestSchedule
from mailer.errors import DigestError, NotFound
from mailer.sends import operations as send_operations
from mailer.sends import queries as send_queries
from mailer.sends.views import WEB_VERSION_POLICY
from mailer.topics import queries as topic_queries
from mailer.web import PAGE_POLICY
from subscribers import queries as subscriber_queries
from subscribers.operations import normalise_email

blueprint = Blueprint("digest", __name__, url_prefix="/digest")

MAX_NOTE = 2000
NEXT_RUNS = 3
DAYS = (("MON", "Mon"), ("TUE", "Tue"), ("WED", "Wed"), ("THU", "Thu"), ("FRI", "Fri"), ("SAT", "Sat"),
        ("SUN", "Sun"))
_TIME = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)")
# The preview page frames the mail from our own origin; everything else stays as closed as any page.
PREVIEW_PAGE_POLICY = PAGE_POLICY + "; frame-src 'self'"
# The framed mail: the archive's policy, but framed by the workspace's preview page.
PREVIEW_MAIL_POLICY = WEB_VERSION_POLICY.replace("frame-ancestors 'none'", "frame-ancestors 'self'")


class NoteForm(FlaskForm):
    note = TextAreaField("A note from the editors at the top of the next digest (optional)",
                         validators=[Length(max=MAX_NOTE)])


class SendForm(FlaskForm):
    form_key = HiddenField(validators=[DataRequired(), Length(min=16, max=64)])


@dataclass(frozen=True)
class ScheduleRow:
    schedule: DigestSchedule
    next_runs: list[datetime]  # in the schedule's zone


@dataclass(frozen=True)
class Audience:
    """Who a preview is for: a topic set (empty: every topic), and the subscriber it came from, if any."""

    topic_slugs: frozenset[str]
    email: str = ""

    def query(self) -> dict:
        return {"email": self.email} if self.email else {"topic": sorted(self.topic_slugs)}

    def label(self) -> str:
        who = ", ".join(sorted(self.topic_slugs)) or "every topic"
        return f"{self.email} (follows {who})" if self.email else f"a reader of {who}"


@lru_cache(maxsize=1)
def time_zones() -> list[str]:
    return sorted(zoneinfo.available_timezones())


def schedule_rows() -> list[ScheduleRow]:
    rows = []
    for schedule in schedules.all_schedules(db.session):
        trigger = schedules.trigger_for(schedule.cron, schedule.timezone)
        runs = [schedule.next_run_at]
        while len(runs) < NEXT_RUNS:
            runs.append(schedules.following_slot(trigger, runs[-1]))
        rows.append(ScheduleRow(schedule, [run.astimezone(trigger.timezone) for run in runs]))
    return rows


def _page(note_form: NoteForm | None = None, schedule_error: str = "", status: int = 200):
    session = db.session
    note_form = note_form or NoteForm(note=operations.next_note(session))
    articles = queries.new_articles(session, clock.now(), include_held=True)
    return render_template(
        "admin/digest.html", articles=articles, note_form=note_form, topics=topic_queries.by_title(db.session),
        schedules=schedule_rows(), days=DAYS, time_zones=time_zones(), schedule_error=schedule_error,
        default_zone=request.form.get("timezone") or current_app.config["MAILER"]["scheduler"]["timezone"],
        confirm=forms.ConfirmForm()), status


def index():
    """What the next digest carries: hold articles back, and write the note."""
    form = NoteForm()
    if request.method == "GET":
        return _page()
    if not form.validate_on_submit():
        return _page(form, status=400)
    session = db.session
    held = set(request.form.getlist("held"))
    for article in queries.new_articles(session, clock.now(), include_held=True):
        is_held = str(article.id) in held
        if article.is_held != is_held:
            operations.set_held(session, article, is_held)
            audit("article.hold" if is_held else "article.release", article, article.title)
    note = (form.note.data or "").strip()
    if note != operations.next_note(session):
        operations.set_note(session, note)
        audit("digest.note", None, note)
    session.commit()
    flash("Saved: the next digest carries what is not held back.")
    return redirect(url_for("admin.digest.index"))


def _audience() -> Audience:
    """The preview's reader from the query or form: a subscriber by email, or the topics ticked."""
    values = request.values
    email = (values.get("email") or "").strip()
    if email:
        subscriber = subscriber_queries.by_email(normalise_email(email))
        if subscriber is None:
            raise NotFound(f"No subscriber has the address {email}.")
        return Audience(frozenset(t.slug for t in subscriber.topics), subscriber.email)
    return Audience(frozenset(slug[:100] for slug in values.getlist("topic")))


def _render_preview(audience: Audience):
    """The next digest as `audience` gets it, composed and then rolled back: no Send is kept."""
    session = db.session
    try:
        send = operations.draft(session)
        return None if send is None else send_operations.preview(session, send, audience.topic_slugs)
    finally:
        session.rollback()


def preview():
    audience = _audience()
    rendered = _render_preview(audience)
    response = Response(render_template("admin/digest_preview.html", audience=audience, rendered=rendered,
                                        topics=topic_queries.by_title(db.session), confirm=forms.ConfirmForm()))
    response.headers["Content-Security-Policy"] = PREVIEW_PAGE_POLICY
    return response


def preview_html():
    """The preview's HTML part on its own, framed by the preview page (a mail needs inline styles)."""
    rendered = _render_preview(_audience())
    if rendered is None:
        abort(404)
    response = Response(rendered.html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = PREVIEW_MAIL_POLICY
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    return response


def send_test():
    """One copy of the preview to the signed-in editor, through the outbox; no send, no archive."""
    if not forms.ConfirmForm().validate_on_submit():
        abort(400)
    audience = _audience()
    rendered = _render_preview(audience)
    if rendered is None:
        flash("Nothing to test: the next digest has nothing for these topics.")
    else:
        message = send_operations.queue_test(db.session, rendered, current_user.email)
        audit("digest.test", message, audience.label())
        db.session.commit()
        flash(f"A test is on its way to {current_user.email}.")
    return redirect(url_for("admin.digest.preview", **audience.query()))


def confirm_send():
    """Send now, step one: how many readers it reaches, and a form with a key of its own."""
    session = db.session
    try:
        send = operations.draft(session)
        plans = send_operations.plan(session, send) if send is not None else []
        articles = len(send.articles) if send is not None else 0
    finally:
        session.rollback()
    if not articles:
        flash("Nothing new since the last digest: there is nothing to send.")
        return redirect(url_for("admin.digest.index"))
    form = SendForm(form_key=secrets.token_urlsafe(24))
    return render_template("admin/digest_confirm.html", form=form, plans=plans, articles=articles,
                           recipients=sum(p.recipients for p in plans if p.articles))


def send_now():
    """Send now, step two: compose and queue in one transaction, once per form key."""
    form = SendForm()
    if not form.validate_on_submit():
        abort(400)
    session = db.session
    key = form.form_key.data
    try:
        send, is_new = operations.send_now(session, key, current_user.id)
        if is_new:
            audit("digest.send", send, f"{send.recipients_count} recipient(s): {send.subject}")
        session.commit()
    except IntegrityError:  # the same form, sent twice at once: the other request made the send
        session.rollback()
        send, is_new = send_queries.send_by_form_key(session, key), False
    if send is None:
        flash("Nothing new since the last digest: nothing was sent.")
    elif is_new:
        flash(f"Digest queued to {send.recipients_count} reader(s): {send.subject}")
    else:
        flash(f"This form was already sent: digest {send.id} went to {send.recipients_count} reader(s).")
    return redirect(url_for("admin.digest.index"))


def add_schedule():
    """A schedule from ticked days, a time and a zone, written as a crontab line ("0 9 * * MON")."""
    if not forms.ConfirmForm().validate_on_submit():
        abort(400)
    days = [day for day, _ in DAYS if day in request.form.getlist("day")]
    time = _TIME.fullmatch((request.form.get("time") or "").strip())
    if time is None:
        return _page(schedule_error="Give the time as hours and minutes, like 09:00.", status=400)
    cron = f"{int(time.group(2))} {int(time.group(1))} * * {','.join(days) or '*'}"
    try:
        schedule = schedules.add(db.session, cron, (request.form.get("timezone") or "").strip()[:64])
    except DigestError as exc:
        db.session.rollback()
        return _page(schedule_error=str(exc), status=400)
    audit("schedule.add", schedule, f"{schedule.cron} {schedule.timezone}")
    db.session.commit()
    flash(f"Schedule added: {schedule.cron} ({schedule.timezone}).")
    return redirect(url_for("admin.digest.index"))


def remove_schedule(schedule_id: int):
    if not forms.ConfirmForm().validate_on_submit():
        abort(400)
    schedule = db.session.get(DigestSchedule, schedule_id)
    if schedule is None:
        raise NotFound("That schedule is gone already.")
    audit("schedule.remove", schedule, f"{schedule.cron} {schedule.timezone}")
    schedules.remove(db.session, schedule_id)
    db.session.commit()
    flash(f"Schedule removed: {schedule.cron} ({schedule.timezone}).")
    return redirect(url_for("admin.digest.index"))


def pause_schedule(schedule_id: int):
    """Pause a running schedule, or resume a paused one."""
    if not forms.ConfirmForm().validate_on_submit():
        abort(400)
    schedule = db.session.get(DigestSchedule, schedule_id)
    if schedule is None:
        raise NotFound("That schedule is gone.")
    pause = not schedule.is_paused
    schedules.set_paused(db.session, schedule, pause)
    audit("schedule.pause" if pause else "schedule.resume", schedule, f"{schedule.cron} {schedule.timezone}")
    db.session.commit()
    flash(f"Schedule {'paused' if pause else 'resumed'}: {schedule.cron} ({schedule.timezone}).")
    return redirect(url_for("admin.digest.index"))


blueprint.add_url_rule("/", "index", index, methods=["GET", "POST"])
blueprint.add_url_rule("/preview", "preview", preview, methods=["GET"])
blueprint.add_url_rule("/preview.html", "preview_html", preview_html, methods=["GET"])
blueprint.add_url_rule("/test", "send_test", send_test, methods=["POST"])
blueprint.add_url_rule("/send", "confirm_send", confirm_send, methods=["GET"])
blueprint.add_url_rule("/send", "send_now", send_now, methods=["POST"])
blueprint.add_url_rule("/schedules", "add_schedule", add_schedule, methods=["POST"])
blueprint.add_url_rule("/schedules/<int:schedule_id>/pause", "pause_schedule", pause_schedule, methods=["POST"])
blueprint.add_url_rule("/schedules/<int:schedule_id>/remove", "remove_schedule", remove_schedule, methods=["POST"])
