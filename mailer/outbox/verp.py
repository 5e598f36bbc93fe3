"""VERP (variable envelope return path): a bounce comes back to an address that names its outbox row.

`mail.return_path = "bounces+{token}@example.org"` gives each message the envelope sender
`bounces+<id>-<mac>@example.org`. The MAC stops a forged bounce from suppressing someone else's address.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from mailer.config import Config

PLACEHOLDER = "{token}"
_MAC_CHARS = 10  # 40 bits: enough to make guessing a valid bounce address pointless


def token(outbox_id: int, secret: str) -> str:
    """`<id>-<mac>`: lower case digits and hex only, since relays may fold the case of local parts."""
    return f"{outbox_id}-{_mac(outbox_id, secret)}"


def outbox_id(verp_token: str, secret: str) -> int | None:
    """The outbox row a VERP token names, or None when it was not made with our secret."""
    number, _, mac = verp_token.lower().partition("-")
    # ASCII digits only, and no more than a row id can have: bounce addresses come from the internet,
    # and int() refuses (ValueError) a string of over 4,300 digits.
    if not (number.isascii() and number.isdigit() and len(number) <= 19) or not hmac.compare_digest(mac, _mac(int(number), secret)):
        return None
    return int(number)


def tokens_in(return_path: str, text: str) -> list[str]:
    """The VERP tokens in `text` (a bounce's headers, say) written in the shape `return_path` gives them,
    first seen first, signed or not: `outbox_id` tells ours from a forged one. None when VERP is off."""
    prefix, placeholder, suffix = return_path.partition(PLACEHOLDER)
    if not placeholder:
        return []
    # Local parts are matched without case (relays fold it); the token runs up to the domain.
    pattern = re.compile(re.escape(prefix) + r"([0-9]{1,19}-[0-9a-z]{1,64})" + re.escape(suffix), re.IGNORECASE)
    return list(dict.fromkeys(match.lower() for match in pattern.findall(text)))


def envelope_sender(config: Config, outbox_id: int, secret: str) -> str:
    """The envelope sender (MAIL FROM) for one message: VERP, else return_path, else from_address."""
    return_path = config["mail"]["return_path"]
    if PLACEHOLDER in return_path:
        return return_path.replace(PLACEHOLDER, token(outbox_id, secret))
    return return_path or config["mail"]["from_address"]


def _mac(outbox_id: int, secret: str) -> str:
    digest = hmac.new(secret.encode(), f"verp:{outbox_id}".encode(), hashlib.sha256).hexdigest()
    return digest[:_MAC_CHARS]
