"""Tokens in subscriber links, one purpose each, so a link can do only what its place in a mail needs.

- confirm: the double opt-in link (expires after `signup.confirm_days`).
- unsubscribe: List-Unsubscribe and the footer's "Unsubscribe". It unsubscribes and nothing else, and
  keeps working after the subscriber's token_version moves on (RFC 8058: one click from any old mail).
- preferences: "Manage preferences". Topics, pause, unsubscribe, and asking for an inbox link for data
  or erasure; it works while its version is the subscriber's token_version.

Tokens from before per-link purposes ("manage") were in both links of every mail: they now unsubscribe
only. Every function is plain (secret and values in, no app needed when `secret` is given), so a
delivery worker can sign links at send time.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from flask import current_app

from mailer import tokens
from mailer.emails import absolute_url
from mailer.errors import InvalidToken

CONFIRM = "confirm"
PREFERENCES = "preferences"
UNSUBSCRIBE = "unsubscribe"
LEGACY_MANAGE = "manage"  # both links of mails sent before per-link purposes: unsubscribes only now

NOT_VALID = "This link is not valid."
SUPERSEDED = "This link is no longer valid. Please use the link from your most recent email."
UNSUBSCRIBE_ONLY = ("This is an unsubscribe link: it can unsubscribe and do nothing else. To change your "
                    "topics, use the \"Manage preferences\" link in your most recent email.")


def _secret(secret: str | None) -> str:
    return secret or current_app.config["SECRET_KEY"]


def address_digest(email: str, secret: str | None = None) -> str:
    """A keyed digest of the address: binds a confirm link to it without putting it in the URL (a
    signed token is readable by anyone, and URLs end up in proxy logs and browser history)."""
    return hmac.new(_secret(secret).encode(), f"confirm:{email}".encode(), hashlib.sha256).hexdigest()[:16]


def confirm_token(subscriber_id: int, email: str, token_version: int = 1, *, secret: str | None = None) -> str:
    return tokens.make(CONFIRM, {"s": subscriber_id, "a": address_digest(email, secret), "v": token_version},
                       secret=secret)


def preferences_token(subscriber_id: int, token_version: int, *, secret: str | None = None) -> str:
    return tokens.make(PREFERENCES, {"s": subscriber_id, "v": token_version}, secret=secret)


def unsubscribe_token(subscriber_id: int, token_version: int, *, secret: str | None = None) -> str:
    return tokens.make(UNSUBSCRIBE, {"s": subscriber_id, "v": token_version}, secret=secret)


# Ids and versions are 32-bit integers in the database; a larger number is no row, never a query error.
MAX_ID = 2**31 - 1


def _ids(payload: Any, default_version: int | None = None) -> tuple[int, int]:
    try:
        version = payload["v"] if default_version is None else payload.get("v", default_version)
        subscriber_id, version = int(payload["s"]), int(version)
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
        raise InvalidToken(NOT_VALID) from None
    if not (0 < subscriber_id <= MAX_ID and 0 <= version <= MAX_ID):
        raise InvalidToken(NOT_VALID)
    return subscriber_id, version


def read_confirm(token: str, confirm_days: int | None = None, *,
                 secret: str | None = None) -> tuple[int, str, int]:
    """(subscriber id, address digest, token version) of a confirm link; compare the digest with
    address_digest() and the version with the subscriber's. Links mailed before versions read as 1."""
    if confirm_days is None:
        confirm_days = current_app.config["MAILER"]["signup"]["confirm_days"]
    payload = tokens.read(CONFIRM, token, max_age_seconds=confirm_days * 86400, secret=secret)
    subscriber_id, version = _ids(payload, default_version=1)
    digest = payload.get("a")
    if not isinstance(digest, str):
        raise InvalidToken(NOT_VALID)
    return subscriber_id, digest, version


def _is_signed_for(purpose: str, token: str, secret: str | None) -> bool:
    try:
        tokens.read(purpose, token, secret=secret)
    except InvalidToken:
        return False
    return True


def read_preferences(token: str, *, secret: str | None = None) -> tuple[int, int]:
    """(subscriber id, token version) of a "Manage preferences" link.

    An unsubscribe link (new or from an old mail) is refused in words that say what it is for: it is
    the link a forwarded mail or a screenshot hands out most.
    """
    try:
        return _ids(tokens.read(PREFERENCES, token, secret=secret))
    except InvalidToken:
        if any(_is_signed_for(purpose, token, secret) for purpose in (UNSUBSCRIBE, LEGACY_MANAGE)):
            raise InvalidToken(UNSUBSCRIBE_ONLY) from None
        raise


def read_unsubscribe(token: str, *, secret: str | None = None) -> tuple[int, int | None]:
    """(subscriber id, the token_version it needs, or None for any) of a link allowed to unsubscribe.

    An unsubscribe link, new or from an old mail's manage link, works at any version (RFC 8058: one
    click from any old mail). A preferences link may unsubscribe too, while it is current.
    """
    for purpose in (UNSUBSCRIBE, LEGACY_MANAGE, PREFERENCES):
        try:
            payload = tokens.read(purpose, token, secret=secret)
        except InvalidToken as exc:
            error = exc
            continue
        subscriber_id, version = _ids(payload)
        return subscriber_id, version if purpose == PREFERENCES else None
    raise error


def manage_links(config: Mapping, subscriber_id: int, token_version: int, *,
                 secret: str | None = None) -> dict[str, str]:
    """The absolute per-reader links of every mail: "Manage preferences" and "Unsubscribe" (also the
    List-Unsubscribe target). `config` is the loaded Config (for site.base_url)."""
    preferences = preferences_token(subscriber_id, token_version, secret=secret)
    unsubscribe = unsubscribe_token(subscriber_id, token_version, secret=secret)
    return {
        "preferences_url": absolute_url(config, f"/preferences/{preferences}"),
        "unsubscribe_url": absolute_url(config, f"/unsubscribe/{unsubscribe}"),
    }


def links(subscriber) -> dict[str, str]:
    """manage_links() for a subscriber (anything with `id` and `token_version`), inside the app."""
    return manage_links(current_app.config["MAILER"], subscriber.id, subscriber.token_version)
