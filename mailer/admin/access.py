"""What every room of the workspace shares: who is acting, the admin-only guard, and the audit call."""

from __future__ import annotations

import functools

from flask import abort, request
from flask_login import current_user

from mailer import db
from mailer.editors import operations as editor_operations
from mailer.editors.models import Editor
from mailer.extensions import login_manager


def get_or_404(model, object_id: int):
    """The row of `model` with this id, or a 404 page: every room's "which one?" answer."""
    row = db.session.get(model, object_id)
    if row is None:
        abort(404)
    return row


def actor() -> editor_operations.Actor:
    """The signed-in editor and the address they act from, for the audit log."""
    return editor_operations.Actor(current_user._get_current_object(), request.remote_addr or "")


def audit(action: str, obj=None, detail: str = "") -> None:
    """Add an audit row for a change the signed-in editor makes; committed with the change itself."""
    editor_operations.record(db.session, actor(), action, obj, detail)


def admin_only(view):
    """403 for an editor: accounts, settings, the audit log and the privacy notice are the admins'."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        if not current_user.is_admin:
            abort(403)
        return view(*args, **kwargs)

    return wrapper


@login_manager.user_loader
def _load_editor(user_id: str) -> Editor | None:
    """The editor of a session, while the account is enabled and the session's version is current."""
    editor_id, _, version = user_id.partition(":")
    if not (editor_id.isdigit() and version.isdigit()):
        return None
    editor = db.session.get(Editor, int(editor_id))
    if editor is None or editor.is_disabled or editor.session_version != int(version):
        return None
    return editor
