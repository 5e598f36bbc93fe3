"""Editor accounts, their sign-in attempts and recovery codes, the audit log, and workspace settings."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Enum, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from mailer import clock
from mailer.db import Base


class EditorRole(str, enum.Enum):
    admin = "admin"    # everything, including accounts, settings and the audit log
    editor = "editor"  # content, topics, subscribers' records and sends


class Editor(Base):
    """A person who signs in to /admin/. Flask-Login's user: `get_id` carries the session version."""

    __tablename__ = "editors"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)  # lower case
    password_hash: Mapped[str] = mapped_column(String(200))  # argon2id
    role: Mapped[EditorRole] = mapped_column(Enum(EditorRole, native_enum=False, length=10, validate_strings=True))
    is_disabled: Mapped[bool] = mapped_column(default=False)
    # Every session carries it; bumping it ("sign out everywhere", disabling, a new password) ends them all.
    session_version: Mapped[int] = mapped_column(default=1)
    totp_secret: Mapped[str | None] = mapped_column(String(64))  # set while enrolling; in use once totp_enabled_at
    totp_enabled_at: Mapped[datetime | None]
    totp_last_counter: Mapped[int] = mapped_column(default=0)  # a code is accepted once, never replayed
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    last_login_at: Mapped[datetime | None]

    # Flask-Login's interface.
    is_anonymous = False

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_active(self) -> bool:
        return not self.is_disabled

    def get_id(self) -> str:
        return f"{self.id}:{self.session_version}"

    @property
    def is_admin(self) -> bool:
        return self.role == EditorRole.admin

    @property
    def has_totp(self) -> bool:
        return self.totp_enabled_at is not None

    def __repr__(self) -> str:
        return f"<Editor {self.id} {self.role.value}>"


class RecoveryCode(Base):
    """A one-time code that stands in for the authenticator app; only its hash is kept."""

    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    editor_id: Mapped[int] = mapped_column(ForeignKey("editors.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))  # SHA-256 of a random code: no dictionary to guess from
    used_at: Mapped[datetime | None]


class LoginAttempt(Base):
    """A failed (or successful) sign-in, counted per account and per address across every process."""

    __tablename__ = "login_attempts"
    __table_args__ = (Index("ix_login_attempts_email", "email", "attempted_at"),
                      Index("ix_login_attempts_ip", "ip_address", "attempted_at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254))  # as typed (lower case), whether or not an account has it
    ip_address: Mapped[str] = mapped_column(String(45), default="")
    is_success: Mapped[bool] = mapped_column(default=False)
    attempted_at: Mapped[datetime] = mapped_column(default=clock.now)


class AuditEvent(Base):
    """Who changed what, which object, when and from where. Appended, never updated."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    editor_id: Mapped[int | None] = mapped_column(ForeignKey("editors.id", ondelete="SET NULL"), index=True)
    editor_email: Mapped[str] = mapped_column(String(254), default="")  # kept readable if the account goes
    action: Mapped[str] = mapped_column(String(60))  # e.g. article.update, alert.send, editor.disable
    object_type: Mapped[str] = mapped_column(String(40), default="")
    object_id: Mapped[str] = mapped_column(String(60), default="")
    detail: Mapped[str] = mapped_column(Text, default="")
    ip_address: Mapped[str] = mapped_column(String(45), default="")
    occurred_at: Mapped[datetime] = mapped_column(default=clock.now, index=True)


class Setting(Base):
    """A workspace setting editors change in the browser (the next digest's note, "require two-factor")."""

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(60), primary_key=True)
    value: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[datetime] = mapped_column(default=clock.now, onupdate=clock.now)


class ImportJob(Base):
    """A CSV of subscribers uploaded in the workspace, imported in the background with its progress.

    The file is checked whole first (per-row errors shown, nothing imported); only a clean file runs.
    Its text is kept only until the import ends: it is a list of people's addresses.
    """

    __tablename__ = "import_jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("editors.id", ondelete="SET NULL"))
    filename: Mapped[str] = mapped_column(String(255), default="")
    content: Mapped[str | None] = mapped_column(Text)  # the CSV while it waits or runs; emptied at the end
    topics: Mapped[str] = mapped_column(String(500), default="")  # comma-separated slugs given to every row
    is_confirmed: Mapped[bool] = mapped_column(default=False)
    state: Mapped[str] = mapped_column(String(10), default="queued")  # queued | running | done | failed
    total_rows: Mapped[int] = mapped_column(default=0)
    done_rows: Mapped[int] = mapped_column(default=0)
    created_count: Mapped[int] = mapped_column(default=0)
    skipped_count: Mapped[int] = mapped_column(default=0)
    errors: Mapped[str] = mapped_column(Text, default="")  # one problem per line
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    finished_at: Mapped[datetime | None]
