"""Relays' bounce webhooks: thin handlers that check the shared secret, read the JSON and record it.

Answers are JSON, errors included: 401 without the secret, 404 while bounces.webhook_secret is empty,
400 for a payload we cannot read, 200 once recorded (also when it is ignored, so the relay does not
send it again).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import urllib.request

from flask import current_app, request
from werkzeug.exceptions import HTTPException

from mailer import db
from mailer.bounces import operations, relays
from mailer.bounces.operations import BounceSettings
from mailer.errors import BounceError

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Bounce-Secret"
SNS_CONFIRM_TIMEOUT = 10  # seconds


def _error(status: int, message: str, **headers):
    return {"error": message}, status, headers


def _presented_secret() -> str:
    """The secret from HTTP Basic auth (its password; SNS and Postmark put it in the URL) or our header."""
    header = request.headers.get("Authorization", "")
    if header[:6].lower() == "basic ":
        try:
            return base64.b64decode(header[6:].strip(), validate=True).decode("utf-8").partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            return ""
    return request.headers.get(SECRET_HEADER, "")


def _refusal():
    """None when the request may go on, else the JSON answer that stops it."""
    secret = current_app.config["MAILER"]["bounces"]["webhook_secret"]
    if not secret:
        return _error(404, "bounce webhooks are off: set bounces.webhook_secret to turn them on")
    if not hmac.compare_digest(_presented_secret().encode(), secret.encode()):
        return _error(401, "the shared secret is missing or wrong", **{"WWW-Authenticate": 'Basic realm="bounces"'})
    return None


def _payload() -> dict:
    try:
        payload = json.loads(request.get_data(cache=False) or b"")
    except HTTPException:
        raise
    except ValueError:
        raise BounceError("the body is not JSON") from None
    if not isinstance(payload, dict):
        raise BounceError("the body must be a JSON object")
    return payload


def _record(report, source: str):
    config = current_app.config["MAILER"]
    outcome = operations.record(db.session, report, source=source, secret=current_app.config["SECRET_KEY"],
                                settings=BounceSettings.from_config(config))
    db.session.commit()
    return {"outcome": outcome.value}


def ses():
    """Amazon SES bounce and complaint notifications through an SNS HTTPS subscription."""
    refused = _refusal()
    if refused:
        return refused
    envelope = _payload()
    message_type = request.headers.get("x-amz-sns-message-type") or envelope.get("Type")
    if message_type == "SubscriptionConfirmation":
        return _confirm_subscription(relays.subscribe_url(envelope))
    if message_type == "UnsubscribeConfirmation":
        log.warning("SNS says this endpoint was unsubscribed from topic %s", envelope.get("TopicArn"))
        return {"outcome": "ignored"}
    if message_type != "Notification":
        raise BounceError("not an SNS message: Type must be Notification or SubscriptionConfirmation")
    notification = relays.sns_notification(envelope)
    return _record(relays.ses_report(notification, current_app.config["MAILER"]["mail"]["return_path"]), "ses")


def _confirm_subscription(url: str):
    """Open SNS's SubscribeURL (when bounces.sns_confirm), else log it for an admin to open."""
    if not current_app.config["MAILER"]["bounces"]["sns_confirm"]:
        log.warning("SNS asks to confirm the bounce subscription: open %s", url)
        return {"outcome": "confirm", "subscribe_url": url}
    try:
        with urllib.request.urlopen(url, timeout=SNS_CONFIRM_TIMEOUT) as answer:
            answer.read(65536)
    except OSError as exc:
        log.warning("SNS subscription not confirmed (%s): open %s", exc, url)
        return _error(502, "could not confirm the SNS subscription; its SubscribeURL is in the log")
    log.info("SNS bounce subscription confirmed")
    return {"outcome": "subscribed"}


def postmark():
    """Postmark bounce and spam-complaint webhooks."""
    refused = _refusal()
    if refused:
        return refused
    report = relays.postmark_report(_payload(), current_app.config["MAILER"]["mail"]["return_path"])
    return _record(report, "postmark")


def method_not_allowed():
    return _error(405, "POST a relay's JSON notification here")


def bounce_error(exc: BounceError):
    db.session.rollback()
    return _error(400, str(exc))


def http_error(exc: HTTPException):
    return _error(exc.code or 400, exc.description or exc.name)
