"""Relays' bounce webhooks: Amazon SES through SNS and Postmark, behind a shared secret, answering JSON."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path

import pytest
from sqlalchemy import select

from mailer import db
from mailer.bounces.models import BounceEvent
from mailer.outbox import verp
from subscribers import operations
from subscribers.models import ConsentAction, ConsentEvent, Subscriber, SubscriberState, Suppression
from tests import factories
from tests.conftest import make_config

FIXTURES = Path(__file__).parent / "fixtures" / "bounces"
RETURN_PATH = "bounces+{token}@news.example.org"
WEBHOOK_SECRET = "relay-shared-secret"
READER = "reader@example.com"
SUBSCRIBE_URL = ("https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=arn:aws:sns:eu-west-1:"
                 "123456789012:ses-news-bounces&Token=2336412f37fb687f5d51e6e241d09c80")


@pytest.fixture
def config(database_url, tmp_path):
    return make_config(database_url, tmp_path, mail={"return_path": RETURN_PATH},
                       bounces={"webhook_secret": WEBHOOK_SECRET, "sns_confirm": False})


def auth(secret: str = WEBHOOK_SECRET) -> dict:
    """HTTP Basic auth, as SNS and Postmark send it from credentials in the endpoint's URL."""
    return {"Authorization": "Basic " + base64.b64encode(f"relay:{secret}".encode()).decode()}


def mailed(session, address: str = READER):
    subscriber = factories.subscriber(session, address)
    row = operations.queue_mail(session, subscriber, "welcome", "welcome", topics=[])
    session.commit()
    return subscriber, row


def filled(name: str, **values) -> str:
    text = (FIXTURES / name).read_text()
    for marker, value in values.items():
        text = text.replace(f"%{marker}%", str(value))
    return text


def sns(notification_fixture: str, **values) -> str:
    """An SNS Notification as it arrives: the SES notification is a JSON string in `Message`."""
    envelope = json.loads(filled("sns-envelope.json"))
    envelope["Message"] = json.dumps(json.loads(filled(notification_fixture, **values)))
    return json.dumps(envelope)


def post(client, path: str, body: str, headers: dict | None = None, message_type: str = "Notification"):
    db.session.remove()
    response = client.post(path, data=body, headers={**auth(), "x-amz-sns-message-type": message_type,
                                                      "Content-Type": "text/plain; charset=UTF-8",
                                                      **(headers or {})})
    db.session.remove()
    return response


def suppression(session, address: str = READER):
    return session.scalar(select(Suppression).where(Suppression.email == address))


# ---- Amazon SES through SNS --------------------------------------------------------------------

def test_ses_permanent_bounce_for_our_token_suppresses(session, client):
    subscriber, row = mailed(session)
    body = sns("ses-bounce.json", TOKEN=verp.token(row.id, "test-secret"), RECIPIENT=READER,
               MESSAGE_ID=row.message_id, BOUNCE_TYPE="Permanent")
    response = post(client, "/bounces/ses", body)
    assert (response.status_code, response.json) == (200, {"outcome": "suppressed"})
    assert suppression(session).reason == "bounced"
    [event] = session.scalars(select(BounceEvent)).all()
    assert (event.kind, event.source, event.subscriber_id) == ("hard", "ses", subscriber.id)
    # SNS delivers at least once: the same notification again is recorded once.
    assert post(client, "/bounces/ses", body).json == {"outcome": "duplicate"}
    assert len(session.scalars(select(BounceEvent)).all()) == 1


def test_ses_transient_bounce_is_counted_not_suppressed(session, client):
    subscriber, row = mailed(session)
    body = sns("ses-bounce.json", TOKEN=verp.token(row.id, "test-secret"), RECIPIENT=READER,
               MESSAGE_ID=row.message_id, BOUNCE_TYPE="Transient")
    assert post(client, "/bounces/ses", body).json == {"outcome": "counted"}
    assert suppression(session) is None


def test_ses_bounce_with_a_forged_token_is_ignored(session, client, caplog):
    subscriber, row = mailed(session)
    body = sns("ses-bounce.json", TOKEN=f"{row.id}-ffffffffff", RECIPIENT=READER,
               MESSAGE_ID=row.message_id, BOUNCE_TYPE="Permanent")
    with caplog.at_level(logging.WARNING):
        assert post(client, "/bounces/ses", body).json == {"outcome": "ignored"}
    assert suppression(session) is None and "forged" in caplog.text and READER not in caplog.text


def test_ses_complaint_suppresses_and_unsubscribes(session, client):
    subscriber, row = mailed(session)
    body = sns("ses-complaint.json", TOKEN=verp.token(row.id, "test-secret"), RECIPIENT=READER,
               MESSAGE_ID=row.message_id)
    assert post(client, "/bounces/ses", body).json == {"outcome": "suppressed"}
    subscriber = session.get(Subscriber, subscriber.id)
    assert subscriber.state == SubscriberState.unsubscribed
    assert suppression(session).reason == "complained"
    [withdrawn] = session.scalars(select(ConsentEvent).where(ConsentEvent.action == ConsentAction.withdrawn)).all()
    assert withdrawn.source == "complaint"


def test_ses_subscription_confirmation_is_logged_for_an_admin_when_not_confirmed_here(client, caplog):
    body = filled("sns-subscription-confirmation.json", SUBSCRIBE_URL=SUBSCRIBE_URL)
    with caplog.at_level(logging.WARNING):
        response = post(client, "/bounces/ses", body, message_type="SubscriptionConfirmation")
    assert response.status_code == 200 and response.json["subscribe_url"] == SUBSCRIBE_URL
    assert SUBSCRIBE_URL in caplog.text


def test_ses_subscription_confirmation_to_a_host_that_is_not_sns_is_refused(client):
    # Never opened: the endpoint would otherwise fetch any URL a poster names.
    body = filled("sns-subscription-confirmation.json", SUBSCRIBE_URL="http://127.0.0.1:1/?Action=ConfirmSubscription")
    response = post(client, "/bounces/ses", body, message_type="SubscriptionConfirmation")
    assert response.status_code == 400 and "sns.<region>.amazonaws.com" in response.json["error"]


# ---- Postmark ----------------------------------------------------------------------------------

def test_postmark_hard_bounce_suppresses_the_address(session, client):
    subscriber, _row = mailed(session)
    body = filled("postmark-bounce.json", ID=4323372036, TYPE="HardBounce", TYPE_CODE=1, RECIPIENT=READER)
    response = post(client, "/bounces/postmark", body, {"Content-Type": "application/json"})
    assert (response.status_code, response.json) == (200, {"outcome": "suppressed"})
    assert suppression(session).reason == "bounced"
    assert session.scalar(select(BounceEvent.subscriber_id)) == subscriber.id


def test_postmark_spam_complaint_unsubscribes(session, client):
    subscriber, _row = mailed(session)
    body = filled("postmark-spam-complaint.json", RECIPIENT=READER)
    assert post(client, "/bounces/postmark", body).json == {"outcome": "suppressed"}
    assert session.get(Subscriber, subscriber.id).state == SubscriberState.unsubscribed
    assert suppression(session).reason == "complained"


def test_postmark_soft_bounce_is_counted(session, client):
    mailed(session)
    body = filled("postmark-bounce.json", ID=77, TYPE="SoftBounce", TYPE_CODE=4096, RECIPIENT=READER)
    assert post(client, "/bounces/postmark", body).json == {"outcome": "counted"}
    assert suppression(session) is None


def test_postmark_delivery_webhook_is_ignored(session, client):
    body = json.dumps({"RecordType": "Delivery", "MessageID": "x", "Recipient": READER})
    assert post(client, "/bounces/postmark", body).json == {"outcome": "ignored"}


# ---- the secret and bad input ------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/bounces/ses", "/bounces/postmark"])
@pytest.mark.parametrize("headers", [{"Authorization": ""}, auth("wrong"), {"Authorization": "Basic %%%"}])
def test_without_the_secret_nothing_is_recorded(session, client, path, headers):
    mailed(session)
    body = filled("postmark-bounce.json", ID=1, TYPE="HardBounce", TYPE_CODE=1, RECIPIENT=READER)
    response = post(client, path, body, headers)
    assert response.status_code == 401 and response.json == {"error": "the shared secret is missing or wrong"}
    assert suppression(session) is None


def test_the_secret_header_works_too(session, client):
    mailed(session)
    body = filled("postmark-bounce.json", ID=2, TYPE="HardBounce", TYPE_CODE=1, RECIPIENT=READER)
    response = post(client, "/bounces/postmark", body, {"Authorization": "", "X-Bounce-Secret": WEBHOOK_SECRET})
    assert response.json == {"outcome": "suppressed"}


def test_endpoints_are_off_without_a_configured_secret(database_url, tmp_path):
    from mailer.app import create_app

    app = create_app(make_config(database_url, tmp_path))
    response = app.test_client().post("/bounces/postmark", data="{}", headers=auth(""))
    assert response.status_code == 404 and "bounces.webhook_secret" in response.json["error"]
    app.extensions["engine"].dispose()


@pytest.mark.parametrize("path, body, message_type, error", [
    ("/bounces/postmark", "not json", "", "the body is not JSON"),
    ("/bounces/postmark", "[1, 2]", "", "the body must be a JSON object"),
    ("/bounces/postmark", '{"RecordType": "Bounce", "ID": 1, "Type": "HardBounce"}', "", "has no Email"),
    ("/bounces/postmark", '{"RecordType": "Bounce", "Email": "a@example.com"}', "", "has no ID"),
    ("/bounces/ses", '{"Type": "Notification"}', "Notification", "has no Message"),
    ("/bounces/ses", '{"Type": "Notification", "Message": "{"}', "Notification", "is not JSON"),
    ("/bounces/ses", '{"Type": "Notification", "Message": "{\\"notificationType\\": \\"Bounce\\"}"}',
     "Notification", "bounce must be a JSON object"),
    ("/bounces/ses", '{"Type": "Notification", "Message": "{\\"notificationType\\": \\"Bounce\\", \\"bounce\\": {}}"}',
     "Notification", "names no recipients"),
    ("/bounces/ses", '{"Type": "Hello"}', "", "Type must be Notification or SubscriptionConfirmation"),
])
def test_bad_payloads_get_a_json_400(client, path, body, message_type, error):
    response = post(client, path, body, message_type=message_type)
    assert response.status_code == 400 and error in response.json["error"]


def test_a_get_and_an_oversized_post_get_json_errors(client):
    assert client.get("/bounces/ses").status_code == 405
    assert "POST" in client.get("/bounces/postmark").json["error"]
    response = post(client, "/bounces/postmark", "{" + " " * 200_000 + "}")
    assert response.status_code == 413 and "error" in response.json
