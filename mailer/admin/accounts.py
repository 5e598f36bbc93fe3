"""Admins' room: editor accounts, the "require two-factor" setting, and the audit log."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for

from mailer import db
from mailer.admin import forms
from mailer.admin.access import actor, admin_only, get_or_404
from mailer.editors import operations, queries
from mailer.editors.models import Editor
from mailer.errors import EditorError

blueprint = Blueprint("accounts", __name__, url_prefix="/accounts")

AUDIT_PAGE = 100


def _editor(editor_id: int) -> Editor:
    return get_or_404(Editor, editor_id)


@admin_only
def index():
    form = forms.EditorForm()
    error = None
    if form.validate_on_submit():
        try:
            editor = operations.create(db.session, form.email.data, form.password.data, form.role.data, actor())
        except EditorError as exc:
            db.session.rollback()
            error = str(exc)
        else:
            db.session.commit()
            flash(f"Account created for {editor.email}. Give them the password by another channel than email.")
            return redirect(url_for("admin.accounts.index"))
    elif request.method == "POST":
        error = "Fill in the address and a first password."
    return render_template("admin/accounts.html", editors=queries.all_editors(db.session), form=form,
                           error=error, role_form=forms.RoleForm(), confirm=forms.ConfirmForm(),
                           totp_form=forms.RequireTotpForm(required=operations.totp_required(db.session)),
                           ), (400 if error else 200)


@admin_only
def set_role(editor_id: int):
    editor = _editor(editor_id)
    form = forms.RoleForm()
    if form.validate_on_submit():
        _apply(lambda: operations.set_role(db.session, editor, form.role.data, actor()),
               f"{editor.email} is now {form.role.data}.")
    return redirect(url_for("admin.accounts.index"))


@admin_only
def disable(editor_id: int):
    editor = _editor(editor_id)
    if forms.ConfirmForm().validate_on_submit():
        if editor.is_disabled:
            _apply(lambda: operations.enable(db.session, editor, actor()), f"{editor.email} can sign in again.")
        else:
            _apply(lambda: operations.disable(db.session, editor, actor()),
                   f"{editor.email} is disabled; their sessions have ended.")
    return redirect(url_for("admin.accounts.index"))


@admin_only
def require_totp():
    form = forms.RequireTotpForm()
    if form.validate_on_submit():
        operations.require_totp(db.session, bool(form.required.data), actor())
        db.session.commit()
        flash("Two-factor is now required for every account." if form.required.data
              else "Two-factor is now each person's choice.")
    return redirect(url_for("admin.accounts.index"))


def _apply(change, done: str) -> None:
    try:
        change()
    except EditorError as exc:
        db.session.rollback()
        flash(str(exc))
    else:
        db.session.commit()
        flash(done)


@admin_only
def audit():
    page = request.args.get("page", 1, type=int) or 1
    page = max(page, 1)
    events = queries.audit_events(db.session, limit=AUDIT_PAGE + 1, offset=(page - 1) * AUDIT_PAGE,
                                  action_prefix=request.args.get("action", "")[:60])
    return render_template("admin/audit.html", events=events[:AUDIT_PAGE], page=page,
                           has_more=len(events) > AUDIT_PAGE, action=request.args.get("action", ""))


blueprint.add_url_rule("/", "index", index, methods=["GET", "POST"])
blueprint.add_url_rule("/<int:editor_id>/role", "set_role", set_role, methods=["POST"])
blueprint.add_url_rule("/<int:editor_id>/disable", "disable", disable, methods=["POST"])
blueprint.add_url_rule("/require-two-factor", "require_totp", require_totp, methods=["POST"])
blueprint.add_url_rule("/audit", "audit", audit, methods=["GET"])
