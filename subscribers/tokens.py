"""Tokens in subscriber links: confirm (expires), and manage (preferences and one-click unsubscribe)."""

from __future__ import annotations

import hashlib
import hmac

from flask import current_app

from mailer import tokens
from mailer.emails import absolute_url
from mailer.errors import InvalidToken

CONFIRM = "confirm"
MANAGE = "manage"


def address_digest(email: str) -> str:
    """A keyed digest of the address: binds a confirm link to it without putting it in the URL (a
    signed token is readable by anyone, and URLs end up in proxy logs and browser history)."""
    secret = current_app.config["SECRET_KEY"].encode()
    return hmac.new(secret, f"confirm:{email}".encode(), hashlib.sha256).hexdigest()[:16]


def confirm_token(subscriber_id: int, email: str) -> str:
    return tokens.make(CONFIRM, {"s": subscriber_id, "a": address_digest(email)})


def manage_token(subscriber_id: int, token_version: int) -> str:
    return tokens.make(MANAGE, {"s": subscriber_id, "v": token_version})


def read_confirm(token: str) -> tuple[int, str]:
    """(subscriber id, address digest) of a confirm link; compare the digest with address_digest()."""
    days = current_app.config["MAILER"]["signup"]["confirm_days"]
    payload = tokens.read(CONFIRM, token, max_age_seconds=days * 86400)
    try:
        return int(payload["s"]), str(payload["a"])
    except (KeyError, TypeError, ValueError):
        raise InvalidToken("This link is not valid.") from None


def read_manage(token: str) -> tuple[int, int]:
    payload = tokens.read(MANAGE, token)
    try:
        return int(payload["s"]), int(payload["v"])
    except (KeyError, TypeError, ValueError):
        raise InvalidToken("This link is not valid.") from None


def links(subscriber) -> dict[str, str]:
    """The absolute manage links that go into every mail to this subscriber."""
    config = current_app.config["MAILER"]
    token = manage_token(subscriber.id, subscriber.token_version)
    return {
        "preferences_url": absolute_url(config, f"/preferences/{token}"),
        "unsubscribe_url": absolute_url(config, f"/unsubscribe/{token}"),
    }
