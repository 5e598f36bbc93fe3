"""The signup form's token: signed and time-stamped (itsdangerous), bound to no cookie.

The signup form is the one form another site may post to (the box on the blog), so it cannot carry
Flask-WTF's token, which is bound to a session cookie that a cross-site POST does not bring. Instead
the token says, under the site's secret, when and for what it was issued:

- `page`: put in every form we serve (/subscribe, /subscribe?embed=1). Sent back faster than
  `signup.min_seconds` it is a bot's; older than PAGE_DAYS, the form is shown again.
- `embed`: printed once by `mailer signup embed` into the blog's HTML. It cannot time a reader (the
  page is the blog's), so it only proves the form came from us; it is refused after EMBED_DAYS or
  when the secret changes, and a refused reader gets our own form, filled in, to send again.

The token is our WTForms CSRF implementation, so the field is still `csrf_token`.
"""

from __future__ import annotations

from datetime import timedelta

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer
from wtforms.csrf.core import CSRF
from wtforms.validators import ValidationError

from mailer import clock

SALT = "signup-form"
PAGE = "page"
EMBED = "embed"
PAGE_DAYS = 7  # a reader may leave the form open in a tab for days
EMBED_DAYS = 400  # run `mailer signup embed` again within the year; the README says so
EXPIRED = "The form had expired. Please check it and send it again."
TOO_FAST = "Please check the form and send it again."


class ClockSigner(TimestampSigner):
    """Time stamps from mailer.clock, so tests move time instead of waiting for it."""

    def get_timestamp(self) -> int:
        return int(clock.now().timestamp())


def _serializer(secret: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt=SALT, signer=ClockSigner)


def issue(secret: str, kind: str = PAGE) -> str:
    """A new token of `kind` (PAGE or EMBED), stamped now."""
    return _serializer(secret).dumps(kind)


class Refused(ValueError):
    """The token is not ours (`forged`), or is ours but cannot be taken now (a message for the reader)."""

    def __init__(self, message: str, *, forged: bool):
        super().__init__(message)
        self.forged = forged


def check(secret: str, token: str, *, min_seconds: int) -> str:
    """The token's kind, or Refused."""
    serializer = _serializer(secret)
    try:
        kind, issued_at = serializer.loads(token or "", max_age=EMBED_DAYS * 86400, return_timestamp=True)
    except SignatureExpired:
        raise Refused(EXPIRED, forged=False) from None
    except BadSignature:
        raise Refused("not a form token of ours", forged=True) from None
    age = clock.now() - issued_at
    if kind == PAGE:
        if age > timedelta(days=PAGE_DAYS):
            raise Refused(EXPIRED, forged=False)
        if age < timedelta(seconds=min_seconds):
            raise Refused(TOO_FAST, forged=False)
    elif kind != EMBED:
        raise Refused("not a form token of ours", forged=True)
    return kind


class SignedFormToken(CSRF):
    """WTForms CSRF over `issue`/`check`: a fresh PAGE token on every render, checked on submit."""

    def setup_form(self, form):
        self.secret = current_app.config["SECRET_KEY"]
        self.min_seconds = current_app.config["MAILER"]["signup"]["min_seconds"]
        return super().setup_form(form)

    def generate_csrf_token(self, csrf_token_field) -> str:
        return issue(self.secret, PAGE)

    def validate_csrf_token(self, form, field) -> None:
        try:
            form.token_kind = check(self.secret, field.data, min_seconds=self.min_seconds)
        except Refused as exc:
            form.token_refusal = exc
            raise ValidationError(str(exc)) from None
