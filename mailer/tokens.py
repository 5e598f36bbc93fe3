"""Signed tokens for links in mail. Signed with the site secret, salted per purpose, dated by our clock."""

from __future__ import annotations

from typing import Any

from flask import current_app
from itsdangerous import BadData, SignatureExpired, URLSafeTimedSerializer
from itsdangerous.timed import TimestampSigner

from mailer import clock
from mailer.errors import InvalidToken


class _ClockSigner(TimestampSigner):
    def get_timestamp(self) -> int:
        return int(clock.now().timestamp())


def serializer(purpose: str, secret: str | None = None) -> URLSafeTimedSerializer:
    secret = secret or current_app.config["SECRET_KEY"]
    return URLSafeTimedSerializer(secret, salt=f"mailer.{purpose}", signer=_ClockSigner)


def make(purpose: str, payload: Any, secret: str | None = None) -> str:
    """A URL-safe signed token carrying `payload` for one purpose (confirm, manage, link...)."""
    return serializer(purpose, secret).dumps(payload)


def read(purpose: str, token: str, max_age_seconds: int | None = None, secret: str | None = None) -> Any:
    """The payload of a token, or InvalidToken with a message a reader understands."""
    if len(token) > 2000:
        raise InvalidToken("This link is not valid. Please use the link from your most recent email.")
    try:
        payload, signed_at = serializer(purpose, secret).loads(token, max_age=None, return_timestamp=True)
    except SignatureExpired:
        raise InvalidToken("This link has expired.") from None
    except BadData:
        raise InvalidToken("This link is not valid. It may have been copied incompletely; "
                           "please use the link from your most recent email.") from None
    if max_age_seconds is not None and (clock.now() - signed_at).total_seconds() > max_age_seconds:
        raise InvalidToken("This link has expired.")
    return payload
