"""Verbs of editor accounts: create, change role, disable, set a password, sign in (throttled), two-factor
with recovery codes, and the audit log. Operations add rows to the caller's session; the caller commits."""

from __future__ import annotations

import functools
import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from mailer import clock
from mailer.editors.models import AuditEvent, Editor, EditorRole, LoginAttempt, RecoveryCode, Setting
from mailer.errors import EditorError, LoginRefused

MIN_PASSWORD = 12
MAX_PASSWORD = 1024  # argon2 hashes anything; a megabyte "password" is a way to burn CPU
# Failed sign-ins counted over this window: per account, and per address (one address trying many accounts).
THROTTLE_WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_ACCOUNT = 5
MAX_FAILURES_PER_ADDRESS = 20
RECOVERY_CODES = 10
ISSUER = "mailer"
# Settings keys.
REQUIRE_TOTP = "require_totp"

# The same words for a wrong address, a wrong password, a disabled account and a wrong code: a guesser
# learns nothing about which accounts exist.
GENERIC_REFUSAL = "That email address and password do not match an account."
THROTTLED = "Too many failed sign-ins. Please wait 15 minutes and try again."

_hasher = PasswordHasher()
# Verified when the address has no account, so both answers take as long (no timing oracle).
@functools.lru_cache(maxsize=1)
def _dummy_hash() -> str:
    """Made on the first sign-in, not at import: argon2 costs 64 MB and most of a second, which every
    `mailer` command (a worker, the scheduler) would otherwise pay at start-up."""
    return _hasher.hash("not a password of anyone's")


@dataclass(frozen=True)
class Actor:
    """Who is acting and from where, for the audit log: an editor in the browser, or `cli` in a shell."""

    editor: Editor | None
    ip_address: str = ""

    @property
    def label(self) -> str:
        return self.editor.email if self.editor else "cli"


def normalise_email(address: str) -> str:
    try:
        return validate_email(address.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise EditorError(f"{address!r} is not an email address: {exc}") from None


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise EditorError(f"the password must have at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise EditorError(f"the password must have at most {MAX_PASSWORD} characters")
    return password


def parse_role(role: str) -> EditorRole:
    try:
        return EditorRole(role)
    except ValueError:
        raise EditorError(f"role must be admin or editor, not {role!r}") from None


def by_email(session: Session, address: str) -> Editor | None:
    return session.scalar(select(Editor).where(Editor.email == address.strip().lower()))


def get(session: Session, address: str) -> Editor:
    editor = by_email(session, address)
    if editor is None:
        raise EditorError(f"no editor account {address.strip().lower()!r} (`mailer users list` shows them)")
    return editor


def create(session: Session, address: str, password: str, role: str, actor: Actor) -> Editor:
    email = normalise_email(address)
    editor_role = parse_role(role)
    if by_email(session, email) is not None:
        raise EditorError(f"an account for {email} already exists")
    editor = Editor(email=email, password_hash=_hasher.hash(check_password(password)), role=editor_role)
    session.add(editor)
    session.flush()
    record(session, actor, "editor.create", editor, f"role {editor_role.value}")
    return editor


def set_role(session: Session, editor: Editor, role: str, actor: Actor) -> None:
    new_role = parse_role(role)
    if editor.role == EditorRole.admin and new_role != EditorRole.admin:
        _keep_an_admin(session, editor)
    editor.role = new_role
    record(session, actor, "editor.set_role", editor, f"role {new_role.value}")


def disable(session: Session, editor: Editor, actor: Actor) -> None:
    """Disable the account and end its sessions at once (their session version no longer matches)."""
    if editor.role == EditorRole.admin and not editor.is_disabled:
        _keep_an_admin(session, editor)
    editor.is_disabled = True
    editor.session_version += 1
    record(session, actor, "editor.disable", editor)


def enable(session: Session, editor: Editor, actor: Actor) -> None:
    editor.is_disabled = False
    record(session, actor, "editor.enable", editor)


def _keep_an_admin(session: Session, leaving: Editor) -> None:
    others = session.scalar(select(func.count()).select_from(Editor).where(
        Editor.role == EditorRole.admin, Editor.is_disabled.is_(False), Editor.id != leaving.id))
    if not others:
        raise EditorError(f"{leaving.email} is the last active admin: make another admin first")


def set_password(session: Session, editor: Editor, password: str, actor: Actor) -> None:
    """A new password; every session of the account ends (whoever knew the old one is signed out)."""
    editor.password_hash = _hasher.hash(check_password(password))
    editor.session_version += 1
    record(session, actor, "editor.set_password", editor)


def sign_out_everywhere(session: Session, editor: Editor, actor: Actor) -> None:
    editor.session_version += 1
    record(session, actor, "editor.sign_out_everywhere", editor)


# ---- signing in ----------------------------------------------------------------------------------

def _failures_since(session: Session, column, value: str) -> int:
    since = clock.now() - THROTTLE_WINDOW
    return session.scalar(select(func.count()).select_from(LoginAttempt).where(
        column == value, LoginAttempt.is_success.is_(False), LoginAttempt.attempted_at >= since)) or 0


def is_throttled(session: Session, email: str, ip_address: str) -> bool:
    return (_failures_since(session, LoginAttempt.email, email) >= MAX_FAILURES_PER_ACCOUNT
            or (ip_address and _failures_since(session, LoginAttempt.ip_address, ip_address)
                >= MAX_FAILURES_PER_ADDRESS))


def _note_attempt(session: Session, email: str, ip_address: str, *, success: bool) -> None:
    session.add(LoginAttempt(email=email[:254], ip_address=ip_address[:45], is_success=success))


def check_credentials(session: Session, address: str, password: str, ip_address: str) -> Editor:
    """The editor whose password this is, or LoginRefused with the generic message.

    Failures are rows, so the throttle holds across processes; the caller commits even on refusal.
    """
    email = address.strip().lower()[:254]
    if is_throttled(session, email, ip_address):
        raise LoginRefused(THROTTLED, throttled=True)
    editor = by_email(session, email)
    try:
        _hasher.verify(editor.password_hash if editor else _dummy_hash(), password[:MAX_PASSWORD])
        valid = editor is not None and not editor.is_disabled
    except (VerificationError, InvalidHashError):
        valid = False
    if not valid:
        _note_attempt(session, email, ip_address, success=False)
        raise LoginRefused(GENERIC_REFUSAL)
    if _hasher.check_needs_rehash(editor.password_hash):
        editor.password_hash = _hasher.hash(password)
    return editor


def check_second_factor(session: Session, editor: Editor, code: str, ip_address: str) -> None:
    """Accept a current TOTP code (once) or an unused recovery code; LoginRefused otherwise."""
    if is_throttled(session, editor.email, ip_address):
        raise LoginRefused(THROTTLED, throttled=True)
    code = "".join(code.split())
    if _accept_totp(editor, code) or _use_recovery_code(session, editor, code):
        return
    _note_attempt(session, editor.email, ip_address, success=False)
    raise LoginRefused("That code is not right. Enter the 6 digits your authenticator app shows now, "
                       "or one of your recovery codes.")


def signed_in(session: Session, editor: Editor, ip_address: str) -> None:
    """Record a complete sign-in (password and, if enrolled, the second factor)."""
    _note_attempt(session, editor.email, ip_address, success=True)
    editor.last_login_at = clock.now()
    record(session, Actor(editor, ip_address), "editor.sign_in", editor)


def forget_old_attempts(session: Session) -> int:
    """Sign-in attempts older than a day say nothing the throttle needs; delete them (they hold addresses)."""
    return session.execute(delete(LoginAttempt).where(
        LoginAttempt.attempted_at < clock.now() - timedelta(days=1))).rowcount


# ---- two-factor ----------------------------------------------------------------------------------

def _accept_totp(editor: Editor, code: str) -> bool:
    if not editor.has_totp or not (code.isdigit() and len(code) == 6):
        return False
    totp = pyotp.TOTP(editor.totp_secret)
    now = clock.now()
    for drift in (0, -1, 1):  # one step either side: phones' clocks drift
        counter = totp.timecode(now) + drift
        if counter > editor.totp_last_counter and secrets.compare_digest(totp.generate_otp(counter), code):
            editor.totp_last_counter = counter
            return True
    return False


def _hash_code(code: str) -> str:
    return hashlib.sha256(code.lower().encode()).hexdigest()


def _use_recovery_code(session: Session, editor: Editor, code: str) -> bool:
    row = session.scalar(select(RecoveryCode).where(
        RecoveryCode.editor_id == editor.id, RecoveryCode.code_hash == _hash_code(code.replace("-", "")),
        RecoveryCode.used_at.is_(None)))
    if row is None:
        return False
    row.used_at = clock.now()
    return True


def start_totp(editor: Editor) -> str:
    """A new secret to enrol (not in use until `confirm_totp` sees a code from it)."""
    editor.totp_secret = pyotp.random_base32()
    return editor.totp_secret


def provisioning_uri(editor: Editor, issuer: str = ISSUER) -> str:
    return pyotp.TOTP(editor.totp_secret).provisioning_uri(name=editor.email, issuer_name=issuer)


def confirm_totp(session: Session, editor: Editor, code: str, actor: Actor) -> list[str]:
    """Turn two-factor on once the app shows a right code; return new recovery codes (shown once)."""
    if not editor.totp_secret:
        raise EditorError("start setting up two-factor first")
    code = "".join(code.split())
    totp = pyotp.TOTP(editor.totp_secret)
    if not (code.isdigit() and len(code) == 6 and totp.verify(code, for_time=clock.now(), valid_window=1)):
        raise EditorError("That code is not right: enter the 6 digits the app shows for this account now.")
    editor.totp_enabled_at = clock.now()
    editor.totp_last_counter = totp.timecode(clock.now())
    record(session, actor, "editor.totp_enable", editor)
    return new_recovery_codes(session, editor)


def new_recovery_codes(session: Session, editor: Editor) -> list[str]:
    session.execute(delete(RecoveryCode).where(RecoveryCode.editor_id == editor.id))
    codes = [secrets.token_hex(5) for _ in range(RECOVERY_CODES)]
    for code in codes:
        session.add(RecoveryCode(editor_id=editor.id, code_hash=_hash_code(code)))
    return [f"{code[:5]}-{code[5:]}" for code in codes]


def remove_totp(session: Session, editor: Editor, actor: Actor) -> None:
    editor.totp_secret = None
    editor.totp_enabled_at = None
    session.execute(delete(RecoveryCode).where(RecoveryCode.editor_id == editor.id))
    record(session, actor, "editor.totp_remove", editor)


def unused_recovery_codes(session: Session, editor: Editor) -> int:
    return session.scalar(select(func.count()).select_from(RecoveryCode).where(
        RecoveryCode.editor_id == editor.id, RecoveryCode.used_at.is_(None))) or 0


# ---- settings and the audit log --------------------------------------------------------------------

def setting(session: Session, key: str, default: str = "") -> str:
    row = session.get(Setting, key)
    return row.value if row else default


def set_setting(session: Session, key: str, value: str) -> None:
    row = session.get(Setting, key)
    if row is None:
        session.add(Setting(key=key, value=value))
    else:
        row.value = value


def totp_required(session: Session) -> bool:
    return setting(session, REQUIRE_TOTP) == "1"


def require_totp(session: Session, required: bool, actor: Actor) -> None:
    set_setting(session, REQUIRE_TOTP, "1" if required else "0")
    record(session, actor, "settings.require_totp", None, "on" if required else "off")


def record(session: Session, actor: Actor, action: str, obj=None, detail: str = "") -> AuditEvent:
    """Append an audit row: `obj` is a model instance (its table and id are kept), or None."""
    event = AuditEvent(
        editor_id=actor.editor.id if actor.editor else None,
        editor_email=actor.label,
        action=action,
        object_type=obj.__tablename__ if obj is not None else "",
        object_id=str(getattr(obj, "id", getattr(obj, "key", ""))) if obj is not None else "",
        detail=detail[:2000],
        ip_address=actor.ip_address[:45],
    )
    session.add(event)
    return event

