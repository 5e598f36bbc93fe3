"""Signed tokens for links in mail. Signed with the site secret, salted per purpose, dated by our clock."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from flask import current_app
from itsdangerous import BadData, Serializer, SignatureExpired, URLSafeTimedSerializer
from itsdangerous.encoding import base64_encode
from itsdangerous.signer import Signer
from itsdangerous.timed import TimestampSigner

from mailer import clock
from mailer.errors import InvalidToken


class _ClockSigner(TimestampSigner):
    def get_timestamp(self) -> int:
        return int(clock.now().timestamp())

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        # itsdangerous derives the key (an HMAC) at every signature; a digest signs several tokens per
        # reader, and _Serializer keeps its signers, so each secret's key is derived once.
        derived = self.__dict__.setdefault("_derived", {})
        if secret_key not in derived:
            derived[secret_key] = super().derive_key(secret_key)
        return derived[secret_key]


# Payloads up to this many bytes of JSON are not offered to zlib (see _Serializer).
SHORT_PAYLOAD = 32


class _Serializer(URLSafeTimedSerializer):
    """itsdangerous's URL-safe timed serializer, minus its zlib attempt on short payloads.

    Our payloads are a few ids, which zlib seldom shortens (and then by a few bytes), while trying
    costs more than the signature itself; a digest signs several per recipient. Tokens read the same
    either way (a compressed payload is marked by a leading "."), so links already in mailboxes
    keep working.
    """

    def make_signer(self, salt: str | bytes | None = None) -> Signer:
        # Kept, not made anew for every token: a signer holds only the keys and the salt.
        signers = self.__dict__.setdefault("_signers", {})
        if salt not in signers:
            signers[salt] = super().make_signer(salt)
        return signers[salt]

    def dump_payload(self, obj: Any) -> bytes:
        json = Serializer.dump_payload(self, obj)
        if len(json) > SHORT_PAYLOAD:
            return super().dump_payload(obj)
        return base64_encode(json)


def serializer(purpose: str, secret: str | None = None) -> URLSafeTimedSerializer:
    return _serializer(purpose, secret or current_app.config["SECRET_KEY"])


# Building a serializer costs more than signing with it (it test-dumps JSON), and a digest signs
# several tokens per recipient. It holds no time: _ClockSigner asks the clock at each signature.
@lru_cache(maxsize=32)
def _serializer(purpose: str, secret: str) -> URLSafeTimedSerializer:
    return _Serializer(secret, salt=f"mailer.{purpose}", signer=_ClockSigner)


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
