"""DKIM signing at delivery (dkimpy), so every message leaves with a signature over its list headers.

The key is read and parsed once, when the app or a backend is built: a missing or broken key is a
ConfigError at startup, never a traceback in the middle of a send.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import dkim
import dkim.crypto

from mailer.config import Config
from mailer.errors import ConfigError
from mailer.outbox.backends import Backend, Envelope, Result

# The headers a receiver and a list-unsubscribe check rely on; signing them stops anyone altering them.
# Content-Type and MIME-Version too: without them a relay could re-label the body. A header named here
# that the message lacks is signed as absent, so adding it later breaks the signature.
SIGNED_HEADERS = (b"From", b"To", b"Subject", b"Date", b"Message-ID", b"List-Id", b"List-Unsubscribe",
                  b"List-Unsubscribe-Post", b"Feedback-ID", b"MIME-Version", b"Content-Type")
# Each is one a message has once at most, and each is named once more than it occurs (over-signed,
# RFC 6376 §8.15): a second From, Subject, List-Unsubscribe or Content-Type added in transit, which a
# mail client might show instead of ours, breaks the signature.
OVERSIGNED_HEADERS = SIGNED_HEADERS


@dataclass(frozen=True)
class Signer:
    """A DKIM key for one selector and domain."""

    selector: str
    domain: str
    private_key: bytes

    def sign(self, content: bytes) -> bytes:
        """The message with a DKIM-Signature header in front."""
        signature = dkim.sign(content, self.selector.encode(), self.domain.encode(), self.private_key,
                              include_headers=list(SIGNED_HEADERS + OVERSIGNED_HEADERS))
        return signature + content


def from_config(config: Config) -> Signer | None:
    """The configured signer, None when `dkim.selector` is empty; ConfigError when the key is unusable."""
    settings = config["dkim"]
    if not settings["selector"]:
        return None
    path = settings["private_key_file"]
    try:
        with open(path, "rb") as fh:
            key = fh.read()
    except OSError as exc:
        raise ConfigError(f"dkim.private_key_file {path!r} cannot be read: {exc.strerror}") from None
    try:
        dkim.crypto.parse_pem_private_key(key)
    except (dkim.crypto.UnparsableKeyError, ValueError):  # ValueError: base64 that is not
        raise ConfigError(f"dkim.private_key_file {path!r} is not a PEM RSA private key") from None
    return Signer(settings["selector"], settings["domain"], key)


class SigningBackend:
    """Signs each message, then hands it to the backend that delivers it."""

    def __init__(self, backend: Backend, signer: Signer):
        self.backend, self.signer = backend, signer

    def send(self, batch: Sequence[Envelope]) -> list[Result]:
        """Sign every envelope's message, then send the batch through the wrapped backend.

        A message dkimpy cannot sign (a malformed header, say) fails on its own instead of stopping the batch.
        """
        signed, unsignable = [], []
        for env in batch:
            try:
                signed.append(replace(env, content=self.signer.sign(env.content)))
            except (dkim.DKIMException, IndexError) as exc:  # IndexError: dkimpy on some malformed headers
                unsignable.append(Result(env.outbox_id, False, True, f"dkim: cannot sign: {exc}"))
        return unsignable + self.backend.send(signed)

    def close(self) -> None:
        """Close the wrapped backend."""
        self.backend.close()
