"""Webhook signatures: HMAC-SHA256 over "timestamp.body", sent as `X-Mailer-Signature: t=<unix>,v1=<hex>`.

The timestamp is inside what is signed, so a receiver that refuses old timestamps cannot be fed a
recorded request again later.
"""

from __future__ import annotations

import hashlib
import hmac

HEADER = "X-Mailer-Signature"


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The signature header's value for `body` sent at `timestamp` (Unix seconds)."""
    digest = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode("ascii") + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: str, body: bytes, header: str, now: int, tolerance: int = 300) -> bool:
    """True when `header` signs `body` with `secret` and its timestamp is within `tolerance` seconds of `now`."""
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, body, timestamp), f"t={timestamp},v1={parts.get('v1', '')}")
