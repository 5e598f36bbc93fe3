"""URL rules of the JSON API (/api/v1/), its bearer-token gate and per-token rate limit, and how the app
takes it in: `register(app)`."""

from __future__ import annotations

from flask import Blueprint, current_app, g, jsonify, request
from flask_limiter.util import get_remote_address

from mailer import db
from mailer.api import errors, operations, views
from mailer.api.spec import spec
from mailer.extensions import csrf, limiter

blueprint = Blueprint("api", __name__, url_prefix="/api/v1")

READ_METHODS = {"GET", "HEAD", "OPTIONS"}
FORM_TYPES = {"application/x-www-form-urlencoded", "multipart/form-data"}
# A blog post with its HTML is far larger than any form; the site's 64 KB cap stays for the forms.
MAX_BODY_BYTES = 1024 * 1024

_rules = [
    ("/subscribers", views.create_subscriber, ["POST"]),
    ("/subscribers/<int:subscriber_id>", views.get_subscriber, ["GET"]),
    ("/subscribers/<int:subscriber_id>", views.update_subscriber, ["PATCH"]),
    ("/subscribers/<int:subscriber_id>/unsubscribe", views.unsubscribe_subscriber, ["POST"]),
    ("/topics", views.list_topics, ["GET"]),
    ("/topics", views.create_topic, ["POST"]),
    ("/articles", views.push_article, ["POST"]),
    ("/articles/<int:article_id>", views.get_article, ["GET"]),
    ("/articles/<int:article_id>", views.update_article, ["PUT"]),
    ("/sends", views.list_sends, ["GET"]),
    ("/sends/<int:send_id>", views.send_figures, ["GET"]),
    ("/schedules", views.list_schedules, ["GET"]),
    ("/schedules", views.create_schedule, ["POST"]),
    ("/schedules/<int:schedule_id>", views.remove_schedule, ["DELETE"]),
]
for _rule, _view, _methods in _rules:
    blueprint.add_url_rule(_rule, _view.__name__, _view, methods=_methods)


@blueprint.get("/openapi.json")
def openapi():
    """The OpenAPI 3.1 document, generated from the views above; public, like any API's reference."""
    return jsonify(spec.spec)


def _bearer_secret() -> str:
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    return secret.strip() if scheme.lower() == "bearer" else ""


ENVIRON_KEY = "mailer.api_token"


def _token():
    """The live token of this request, or None; looked up once per request (kept in the WSGI environ, which,
    unlike `g`, is never shared with another request)."""
    if ENVIRON_KEY not in request.environ:
        request.environ[ENVIRON_KEY] = operations.authenticate(db.session, _bearer_secret())
    return request.environ[ENVIRON_KEY]


def _rate_key() -> str:
    """Per token, so one busy client cannot starve another; requests without a token count per address.

    From the secret's hash, not a database lookup: the key is asked for before the request is let in,
    and a lookup would cost a query on every request, refused ones included.
    """
    secret = _bearer_secret()
    if secret.startswith(operations.SECRET_PREFIX) and len(secret) <= 200 and secret.isascii():
        return f"api-token:{operations.hash_secret(secret)[:32]}"
    return f"api-anonymous:{get_remote_address()}"


def _rate_limit() -> str:
    return current_app.config["MAILER"]["api"]["rate_limit"]


limiter.limit(_rate_limit, key_func=_rate_key)(blueprint)


@blueprint.before_request
def _gate():
    """401 without a live token, 403 for a read token on a write route, and a JSON body or nothing."""
    request.max_content_length = MAX_BODY_BYTES
    if request.endpoint == "api.openapi":
        return
    token = _token()
    if token is None:
        reason = "a bearer token is missing" if not _bearer_secret() else "this token is unknown or revoked"
        raise errors.ApiError(401, "unauthorized", f"Unauthorized: {reason}. Send `Authorization: Bearer <token>` "
                                                   f"with a token from `mailer tokens create`.",
                              headers={"WWW-Authenticate": 'Bearer realm="api"'})
    if request.method not in READ_METHODS and token.scope != "write":
        raise errors.ApiError(403, "forbidden", "Forbidden: this token may only read; this route needs a write token.")
    g.api_token = token
    if operations.mark_used(token):
        db.session.commit()
    if request.method not in READ_METHODS and request.get_data(cache=True):
        if request.mimetype in FORM_TYPES or not isinstance(request.get_json(silent=True), dict):
            raise errors.ApiError(400, "invalid_json", "body: send a JSON object with Content-Type: application/json",
                                  "body")


def register(app) -> None:
    """Take the API into `app`: its routes, the OpenAPI document, no CSRF (bearer tokens, no cookies), and
    JSON errors under /api/. Call it after the site's error pages are registered."""
    app.register_blueprint(blueprint)
    csrf.exempt(blueprint)
    errors.answer_json_under_api(app)
