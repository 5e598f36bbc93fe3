"""Tokens of tracked links: signed, carrying the send, the recipient (or none) and the link."""

from __future__ import annotations

from dataclasses import dataclass

from mailer import tokens
from mailer.errors import InvalidToken

PURPOSE = "link"


@dataclass(frozen=True)
class LinkToken:
    send_id: int
    link_id: int
    subscriber_id: int | None  # None: anonymous (archive pages, or per-recipient tracking off)


def make(send_id: int, link_id: int, subscriber_id: int | None, secret: str | None = None) -> str:
    """A signed token for /l/<token>; the URL itself stays in the Link row, never in the token."""
    return tokens.make(PURPOSE, [send_id, subscriber_id, link_id], secret)


def read(token: str) -> LinkToken:
    """The ids sealed in a token, or InvalidToken when it was tampered with."""
    payload = tokens.read(PURPOSE, token)
    try:
        send_id, subscriber_id, link_id = payload
        return LinkToken(int(send_id), int(link_id), None if subscriber_id is None else int(subscriber_id))
    except (TypeError, ValueError):
        raise InvalidToken("This link is not valid.") from None
