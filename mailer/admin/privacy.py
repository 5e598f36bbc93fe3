"""Admins' room for the privacy notice: the published versions, and a form to preview and publish a new one.
A published version never changes; consents given from then on record the new version. Publishing is audited."""

from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import StringField, TextAreaField
from wtforms.validators import Length

from mailer import db
from mailer.admin.access import admin_only, audit
from mailer.articles.rendering import markdown_to_html
from mailer.errors import PrivacyError
from mailer.privacy import operations, queries

blueprint = Blueprint("privacy", __name__, url_prefix="/privacy")

EXPIRED = "The form had expired or was incomplete. Please try again."
MAX_BODY = 100_000


class PublishForm(FlaskForm):
    version = StringField("New version (letters, digits, dots and hyphens, like 2026-12-01)",
                          validators=[Length(max=operations.MAX_VERSION,
                                             message="A version is at most 50 characters.")])
    body = TextAreaField("The notice, in Markdown", validators=[Length(max=MAX_BODY,
                                                                      message="The notice is too long.")])


def _first_error(form) -> str:
    if "csrf_token" in form.errors:
        return EXPIRED
    return next((errors[0] for errors in form.errors.values() if errors), EXPIRED)


@admin_only
def index():
    """GET lists the versions with the form (prefilled with the current notice); POST previews or publishes."""
    current = queries.current(db.session)
    form = PublishForm() if request.method == "POST" else PublishForm(
        formdata=None, body=current.body_source if current else "")
    error = preview = None
    if form.validate_on_submit():
        if "preview" in request.form:
            preview = markdown_to_html(form.body.data or "")
        else:
            try:
                notice = operations.publish(db.session, form.version.data, form.body.data,
                                            current_user._get_current_object())
                audit("privacy.publish", notice, notice.version)
            except PrivacyError as exc:
                db.session.rollback()
                error = str(exc)
            else:
                db.session.commit()
                flash(f"Version {notice.version} published: consents given from now on record it.")
                return redirect(url_for("admin.privacy.index"))
    elif form.is_submitted():
        error = _first_error(form)
    return render_template("admin/privacy.html", notices=queries.all_notices(db.session), current=current,
                           configured=current_app.config["MAILER"]["site"]["privacy_policy_version"],
                           form=form, error=error, preview=preview), (400 if error else 200)


blueprint.add_url_rule("/", "index", index, methods=["GET", "POST"])
