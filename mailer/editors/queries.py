"""Reads of editor accounts and the audit log."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailer.editors.models import AuditEvent, Editor


def all_editors(session: Session) -> list[Editor]:
    return list(session.scalars(select(Editor).order_by(Editor.email)))


def as_row(editor: Editor) -> dict:
    return {
        "id": editor.id,
        "email": editor.email,
        "role": editor.role.value,
        "disabled": editor.is_disabled,
        "two_factor": editor.has_totp,
        "created_at": editor.created_at.isoformat(),
        "last_login_at": editor.last_login_at.isoformat() if editor.last_login_at else None,
    }


def audit_events(session: Session, *, limit: int = 200, offset: int = 0, editor_id: int | None = None,
                 action_prefix: str = "") -> list[AuditEvent]:
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit).offset(offset)
    if editor_id is not None:
        query = query.where(AuditEvent.editor_id == editor_id)
    if action_prefix:
        query = query.where(AuditEvent.action.startswith(action_prefix))
    return list(session.scalars(query))
