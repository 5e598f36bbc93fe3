"""Signing in and out of the workspace, two-factor enrolment, and one's own account."""

from __future__ import annotations

from flask import (Blueprint, current_app, flash, redirect, render_template, request, session, url_for)
from flask_login import current_user, login_user, logout_user

from mailer import clock, db
from mailer.admin import forms
from mailer.admin.access import actor
from mailer.editors import operations
from mailer.editors.models import Editor
from mailer.errors import EditorError, LoginRefused

blueprint = Blueprint("auth", __name__)

# How long a correct password waits for its second factor.
SECOND_FACTOR_SECONDS = 300


def _ip() -> str:
    return request.remote_addr or ""


def _safe_next() -> str:
    """Where to go after signing in: a path inside the workspace, never another site."""
    target = request.args.get("next", "")
    if target.startswith("/admin/") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("admin.index")


def _finish_sign_in(editor: Editor):
    operations.signed_in(db.session, editor, _ip())
    db.session.commit()
    session.clear()  # a new session for a new privilege level (no fixation)
    session.permanent = True
    login_user(editor)
    session["seen_at"] = int(clock.now().timestamp())
    return redirect(_safe_next())


def login():
    if current_user.is_authenticated:
        return redirect(url_for("admin.index"))
    form = forms.LoginForm()
    error, status = None, 200
    if request.args.get("expired"):
        error = "You were signed out after a long pause. Please sign in again."
    if request.method == "POST" and form.validate_on_submit():
        try:
            editor = operations.check_credentials(db.session, form.email.data, form.password.data, _ip())
        except LoginRefused as exc:
            db.session.commit()  # the failed attempt counts, in every process
            error, status = str(exc), exc.status_code
        else:
            if not editor.has_totp:
                return _finish_sign_in(editor)
            db.session.commit()
            session.clear()
            session["second_factor"] = {"id": editor.id, "v": editor.session_version,
                                        "at": int(clock.now().timestamp())}
            return redirect(url_for("admin.auth.second_factor", next=request.args.get("next", "")))
    elif request.method == "POST":
        error, status = "Enter your email address and password.", 400
    return render_template("admin/login.html", form=form, error=error,
                           action=url_for("admin.auth.login", next=request.args.get("next", ""))), status


def _pending_editor() -> Editor | None:
    pending = session.get("second_factor")
    if not pending or int(clock.now().timestamp()) - pending["at"] > SECOND_FACTOR_SECONDS:
        return None
    editor = db.session.get(Editor, pending["id"])
    if editor is None or editor.is_disabled or editor.session_version != pending["v"]:
        return None
    return editor


def second_factor():
    editor = _pending_editor()
    if editor is None:
        session.pop("second_factor", None)
        flash("Please sign in again.")
        return redirect(url_for("admin.auth.login"))
    form = forms.CodeForm()
    error, status = None, 200
    if form.validate_on_submit():
        try:
            operations.check_second_factor(db.session, editor, form.code.data, _ip())
        except LoginRefused as exc:
            db.session.commit()
            error, status = str(exc), exc.status_code
        else:
            return _finish_sign_in(editor)
    return render_template("admin/second_factor.html", form=form, error=error), status


def sign_out():
    form = forms.ConfirmForm()
    if form.validate_on_submit():
        if request.form.get("everywhere"):
            operations.sign_out_everywhere(db.session, current_user, actor())
            db.session.commit()
        logout_user()
        session.clear()
    return redirect(url_for("admin.auth.signed_out"))


def signed_out():
    return render_template("admin/signed_out.html")


def account():
    """One's own account: password, two-factor, signing out everywhere."""
    form = forms.PasswordForm()
    if form.validate_on_submit():
        try:
            operations.check_credentials(db.session, current_user.email, form.current.data, _ip())
            operations.set_password(db.session, current_user, form.new.data, actor())
        except (LoginRefused, EditorError) as exc:
            db.session.commit()
            flash(str(exc) if isinstance(exc, EditorError) else "The current password is not right.")
        else:
            db.session.commit()
            login_user(current_user)  # this session carries on with the new session version
            flash("Password changed. Every other session of your account has ended.")
        return redirect(url_for("admin.auth.account"))
    return render_template("admin/account.html", form=form, confirm=forms.ConfirmForm(),
                           recovery_left=operations.unused_recovery_codes(db.session, current_user))


def two_factor():
    """Enrol in two-factor: a new secret for the app, then a code from it turns it on."""
    form = forms.CodeForm()
    editor = current_user
    if request.method == "POST" and request.form.get("remove") and forms.ConfirmForm().validate_on_submit():
        if operations.totp_required(db.session):
            flash("Two-factor is required for every account here; it cannot be removed.")
        else:
            operations.remove_totp(db.session, editor, actor())
            db.session.commit()
            flash("Two-factor removed.")
        return redirect(url_for("admin.auth.account"))
    codes, error = None, None
    if form.validate_on_submit():
        try:
            codes = operations.confirm_totp(db.session, editor, form.code.data, actor())
        except EditorError as exc:
            error = str(exc)
        else:
            db.session.commit()
    elif not editor.has_totp and not editor.totp_secret:
        operations.start_totp(editor)
        db.session.commit()
    return render_template("admin/two_factor.html", form=form, codes=codes, error=error,
                           secret=editor.totp_secret, uri=operations.provisioning_uri(
                               editor, current_app.config["MAILER"].site_name),
                           required=request.args.get("required")), (400 if error else 200)


blueprint.add_url_rule("/login", "login", login, methods=["GET", "POST"])
blueprint.add_url_rule("/login/code", "second_factor", second_factor, methods=["GET", "POST"])
blueprint.add_url_rule("/logout", "sign_out", sign_out, methods=["POST"])
blueprint.add_url_rule("/signed-out", "signed_out", signed_out, methods=["GET"])
blueprint.add_url_rule("/account", "account", account, methods=["GET", "POST"])
blueprint.add_url_rule("/account/two-factor", "two_factor", two_factor, methods=["GET", "POST"])
