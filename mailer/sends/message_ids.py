"""The Message-ID of a reader's copy of a send: opaque to readers, the same on every attempt, and
readable back by us, so a bounce or complaint that quotes nothing but the Message-ID (a relay that
rewrote the return path, a redacted ARF report) still names its send and reader.

The local part is the send and subscriber ids sealed with AES-SIV (RFC 5297, from `cryptography`):
deterministic, so a retry repeats the Message-ID without storing it, and authenticated, so a forged
or altered one reads back as nothing. The key is derived from the site secret.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESSIV

_IDS = struct.Struct(">QQ")  # send id, subscriber id
# 16 bytes of ids sealed: a 16-byte synthetic IV, then 16 bytes of ciphertext, in lower-case hex.
_SEALED = re.compile(r"[0-9a-f]{64}")


@functools.lru_cache(maxsize=4)
def _cipher(secret: str) -> AESSIV:
    key = hmac.new(secret.encode(), b"message-id", hashlib.sha512).digest()  # 512 bits: AES-256-SIV
    return AESSIV(key)


def local_part(secret: str, send_id: int, subscriber_id: int) -> str:
    """The Message-ID's local part for this reader's copy of this send."""
    return _cipher(secret).encrypt(_IDS.pack(send_id, subscriber_id), None).hex()


def read(message_id: str, secret: str) -> tuple[int, int] | None:
    """(send id, subscriber id) a Message-ID made by `local_part` names; None for any other Message-ID,
    a forged one included (and an older bulk Message-ID, a bare hash, which names nothing readable)."""
    if not is_sealed(message_id):
        return None
    try:
        return _IDS.unpack(_cipher(secret).decrypt(bytes.fromhex(_local(message_id)), None))
    except InvalidTag:
        return None


def is_sealed(message_id: str) -> bool:
    """Whether a Message-ID has the shape of ours (it may still be forged: `read` tells)."""
    return _SEALED.fullmatch(_local(message_id)) is not None


def _local(message_id: str) -> str:
    return message_id.strip().strip("<>").rpartition("@")[0].lower()
