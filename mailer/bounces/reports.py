"""Reading a bounce or complaint message: what kind it is, and what names the message it is about.

Pure: bytes in, a `Report` out, no database. DSNs (RFC 3464) and the bounce formats of older MTAs are
read with flufl.bounce (GNU Mailman's detectors); ARF complaints (RFC 5965) are a multipart/report of
report-type feedback-report. What names our message: the VERP token (the address the report came
back to, or the Return-Path of the original quoted in it), the original's Message-ID, and the
unsubscribe token in its List-Unsubscribe.
"""

from __future__ import annotations

import email
import email.policy
import enum
import hashlib
import logging
import re
from dataclasses import dataclass, field
from email.message import Message

from flufl.bounce import all_failures

from mailer.outbox import verp

# flufl.bounce announces every detector it runs at INFO: noise in a bounce run's log.
logging.getLogger("flufl.bounce").setLevel(logging.WARNING)


class BounceKind(str, enum.Enum):
    hard = "hard"            # the address does not exist (5.x.x): suppressed at once
    soft = "soft"            # mailbox full, try later (4.x.x): suppressed after soft_limit in soft_days
    complaint = "complaint"  # the reader marked our mail as spam: suppressed and unsubscribed


# ARF feedback types that are a reader's complaint (RFC 5965 §7.3); "not-spam" and "auth-failure" are not.
COMPLAINT_TYPES = {"abuse", "fraud", "virus", "other"}
# An address in free text (a diagnostic, say): what `detail` and the logs must never carry.
_ADDRESS = re.compile(r"<?[^\s<>()\[\];:,\"']+@[^\s<>()\[\];:,\"']+>?")
_UNSUBSCRIBE = re.compile(r"/unsubscribe/([A-Za-z0-9_.-]+)")
_MAX_DETAIL = 300


@dataclass
class Report:
    """One bounce or complaint, as read from its message or a relay's notification."""

    kind: BounceKind | None          # None: not a bounce we act on (an auto-reply, a not-spam report...)
    reference: str                   # stable for the same report read twice: a hash, never an address
    detail: str = ""                 # status and diagnostic, addresses blanked
    tokens: list[str] = field(default_factory=list)           # VERP tokens found, ours or forged
    message_ids: list[str] = field(default_factory=list)      # of the original message
    unsubscribe_tokens: list[str] = field(default_factory=list)  # from the original's List-Unsubscribe
    addresses: list[str] = field(default_factory=list)        # recipients a relay names (webhooks only)


def reference(*parts: str) -> str:
    """A short hash naming a report (from its Message-ID, or token and time), safe to store and log."""
    return hashlib.sha256("\x00".join(parts).encode("utf-8", "replace")).hexdigest()[:16]


def blank_addresses(text: str) -> str:
    """`text` on one line with every address in it replaced by "<address>", cut to fit `detail`."""
    return " ".join(_ADDRESS.sub("<address>", text).split())[:_MAX_DETAIL]


def parse(raw: bytes) -> Message:
    """The message as flufl.bounce expects it (the compat32 API of email.message.Message)."""
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def read(raw: bytes, return_path: str) -> Report:
    """Read one message from the bounce mailbox. `return_path` is `mail.return_path` (VERP's shape)."""
    msg = parse(raw)
    report_id = str(msg.get("Message-ID", "")).strip()
    originals = _original_headers(msg)
    found = Report(
        kind=None,
        reference=reference("message", report_id) if report_id else reference("raw", raw.decode("latin-1")),
        tokens=verp.tokens_in(return_path, _searchable_text(msg)),
        message_ids=[mid for h in originals if (mid := str(h.get("Message-ID", "")).strip())],
        unsubscribe_tokens=[t for h in originals for t in _UNSUBSCRIBE.findall(str(h.get("List-Unsubscribe", "")))],
    )
    feedback = _feedback_report(msg)
    if feedback is not None:
        feedback_type = str(feedback.get("Feedback-Type", "")).strip().lower()
        found.detail = blank_addresses(f"feedback-type {feedback_type or 'missing'}; "
                                       f"user-agent {feedback.get('User-Agent', '')}".strip())
        if feedback_type in COMPLAINT_TYPES:
            found.kind = BounceKind.complaint
        return found
    try:
        temporary, permanent = all_failures(msg)
    except Exception:  # a detector tripping over a malformed message: not a bounce we can read
        temporary, permanent = frozenset(), frozenset()
    if permanent:
        found.kind = BounceKind.hard
    elif temporary:
        found.kind = BounceKind.soft
    found.detail = _status_detail(msg) or ("" if found.kind is None else f"{found.kind.value} bounce")
    return found


def _feedback_report(msg: Message) -> Message | None:
    """The message/feedback-report part's fields (a header block) when `msg` is an ARF report."""
    if msg.get_content_type() != "multipart/report":
        return None
    if str(msg.get_param("report-type", "")).lower() != "feedback-report":
        return None
    for part in msg.walk():
        if part.get_content_type() == "message/feedback-report":
            payload = part.get_payload()
            if isinstance(payload, list) and payload:  # compat32 parses it as a message
                return payload[0]
            return email.message_from_string(str(payload), policy=email.policy.compat32)
    return Message()  # report-type says feedback-report, the part is missing: still a complaint's shape


def _original_headers(msg: Message) -> list[Message]:
    """The header blocks of the original message quoted in a report (message/rfc822, text/rfc822-headers)."""
    blocks = []
    for part in msg.walk():
        content_type = part.get_content_type()
        if part is msg:
            continue
        if content_type == "message/rfc822":
            payload = part.get_payload()
            if isinstance(payload, list) and payload:
                blocks.append(payload[0])
        elif content_type == "text/rfc822-headers":
            text = part.get_payload(decode=True) or b""
            blocks.append(email.message_from_bytes(text, policy=email.policy.compat32))
    return blocks


def _searchable_text(msg: Message) -> str:
    """Every header of every part and every text part decoded: where a VERP address can appear."""
    chunks = []
    for part in msg.walk():
        chunks += [f"{name}: {value}" for name, value in part.items()]
        if part.get_content_maintype() == "text":
            chunks.append((part.get_payload(decode=True) or b"").decode("latin-1"))
    return "\n".join(chunks)


def _status_detail(msg: Message) -> str:
    """'5.1.1 smtp; 550 5.1.1 <address>: Recipient address rejected' from the first failed recipient."""
    for part in msg.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        blocks = part.get_payload()
        if not isinstance(blocks, list):
            continue
        for block in blocks[1:] or blocks:  # the first block is per-message, the rest per recipient
            status = str(block.get("Status", "")).strip()
            if status:
                diagnostic = " ".join(str(block.get("Diagnostic-Code", "")).split())
                return blank_addresses(f"{status} {diagnostic}")
    return ""
