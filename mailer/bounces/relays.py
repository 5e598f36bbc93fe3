"""Bounces and complaints posted by relays as JSON: Amazon SES (through SNS) and Postmark.

Pure: a decoded JSON payload in, a `Report` out (or BounceError naming what is wrong with it).
"""

from __future__ import annotations

import json
import re
from typing import Any

from mailer.bounces.reports import BounceKind, Report, blank_addresses, reference
from mailer.errors import BounceError
from mailer.outbox import verp

# SES bounce types (https://docs.aws.amazon.com/ses/latest/dg/notification-contents.html).
SES_BOUNCE_KINDS = {"permanent": BounceKind.hard, "transient": BounceKind.soft, "undetermined": BounceKind.soft}
# Postmark bounce types (https://postmarkapp.com/developer/api/bounce-api#bounce-types); others (an
# auto-responder, a blocked send, an unsubscribe through Postmark's own link) are not about the address.
POSTMARK_KINDS = {
    "HardBounce": BounceKind.hard,
    "BadEmailAddress": BounceKind.hard,
    "SoftBounce": BounceKind.soft,
    "Transient": BounceKind.soft,
    "DnsError": BounceKind.soft,
    "SpamComplaint": BounceKind.complaint,
}
# SNS's own hosts: a SubscribeURL anywhere else is not Amazon's and is never opened.
SNS_SUBSCRIBE_URL = re.compile(r"https://sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/\?[^\s#]*")


def _object(value: Any, what: str) -> dict:
    if not isinstance(value, dict):
        raise BounceError(f"{what} must be a JSON object")
    return value


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def ses_report(notification: dict, return_path: str) -> Report:
    """A Report from an SES notification (the JSON inside an SNS message's `Message`)."""
    notification = _object(notification, "the SES notification")
    kind_name = _text(notification.get("notificationType") or notification.get("eventType"))
    mail = notification.get("mail") if isinstance(notification.get("mail"), dict) else {}
    headers = mail.get("headers") if isinstance(mail.get("headers"), list) else []
    common = mail.get("commonHeaders") if isinstance(mail.get("commonHeaders"), dict) else {}
    message_ids = [_text(h.get("value")) for h in headers
                   if isinstance(h, dict) and _text(h.get("name")).lower() == "message-id"]
    if not message_ids and _text(common.get("messageId")):
        message_ids = [_text(common.get("messageId"))]
    found = Report(kind=None, reference="", tokens=verp.tokens_in(return_path, _text(mail.get("source"))),
                   message_ids=[mid.strip() for mid in message_ids if mid.strip()])
    if kind_name == "Bounce":
        bounce = _object(notification.get("bounce"), "bounce")
        bounce_type = _text(bounce.get("bounceType"))
        found.kind = SES_BOUNCE_KINDS.get(bounce_type.lower())
        recipients = bounce.get("bouncedRecipients")
        event_id = _text(bounce.get("feedbackId"))
        first = recipients[0] if isinstance(recipients, list) and recipients and isinstance(recipients[0], dict) else {}
        found.detail = blank_addresses(f"{_text(first.get('status'))} {bounce_type}/{_text(bounce.get('bounceSubType'))} "
                                       f"{_text(first.get('diagnosticCode'))}".strip())
    elif kind_name == "Complaint":
        complaint = _object(notification.get("complaint"), "complaint")
        feedback_type = _text(complaint.get("complaintFeedbackType")) or "unspecified"
        found.kind = None if feedback_type == "not-spam" else BounceKind.complaint
        recipients = complaint.get("complainedRecipients")
        event_id = _text(complaint.get("feedbackId"))
        found.detail = blank_addresses(f"feedback-type {feedback_type}")
    else:  # Delivery, Send, Open...: nothing to suppress
        return found
    if not isinstance(recipients, list) or not recipients:
        raise BounceError(f"the SES {kind_name.lower()} names no recipients")
    found.addresses = [_text(r.get("emailAddress")) for r in recipients
                       if isinstance(r, dict) and "@" in _text(r.get("emailAddress"))]
    if not (event_id or _text(mail.get("messageId"))):
        raise BounceError(f"the SES {kind_name.lower()} has no feedbackId")
    found.reference = reference("ses", event_id or _text(mail.get("messageId")), kind_name)
    return found


def sns_notification(envelope: dict) -> dict:
    """The SES notification inside an SNS `Notification` (its `Message` is JSON as a string)."""
    message = envelope.get("Message")
    if not isinstance(message, str):
        raise BounceError("the SNS notification has no Message")
    try:
        return _object(json.loads(message), "the SNS Message")
    except ValueError:
        raise BounceError("the SNS Message is not JSON") from None


def subscribe_url(envelope: dict) -> str:
    """The URL that confirms an SNS subscription; BounceError when it is not one of SNS's own."""
    url = _text(envelope.get("SubscribeURL"))
    if not SNS_SUBSCRIBE_URL.fullmatch(url):
        raise BounceError("the SubscribeURL is not an https address of sns.<region>.amazonaws.com")
    return url


def postmark_report(payload: dict, return_path: str) -> Report:
    """A Report from a Postmark bounce or spam-complaint webhook."""
    payload = _object(payload, "the Postmark webhook")
    record_type = _text(payload.get("RecordType"))
    found = Report(kind=None, reference="")
    if record_type not in ("Bounce", "SpamComplaint"):
        return found  # a delivery, open or click webhook pointed here: nothing to suppress
    address = _text(payload.get("Email"))
    if "@" not in address:
        raise BounceError("the Postmark webhook has no Email")
    if not isinstance(payload.get("ID"), (int, str)) or payload.get("ID") == "":
        raise BounceError("the Postmark webhook has no ID")
    bounce_type = _text(payload.get("Type")) or record_type
    found.kind = POSTMARK_KINDS.get(bounce_type)
    found.addresses = [address]
    found.tokens = verp.tokens_in(return_path, _text(payload.get("Content")))
    found.reference = reference("postmark", str(payload.get("ID", "")), _text(payload.get("MessageID")), bounce_type)
    found.detail = blank_addresses(f"{bounce_type}: {_text(payload.get('Description'))} {_text(payload.get('Details'))}")
    return found
