"""Errors of the JSON API: every one is `{"error": {"code", "message", "field"}}`, never an HTML page."""

from __future__ import annotations

from flask import jsonify, request
from werkzeug.exceptions import HTTPException

from mailer import db
from mailer.errors import (ArticleError, DigestError, MailerError, NotFound, SubscriberError, TopicError)

PREFIX = "/api/"

# HTTP errors raised by Flask, Werkzeug and Flask-Limiter, by their status.
HTTP_CODES = {
    400: "invalid",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "invalid_json",
    429: "rate_limited",
}

CONSENT_MESSAGE = ("consent: send \"consent\": true, and only when the reader ticked a consent box on your form; "
                   "without their consent nobody is signed up")


class ApiError(MailerError):
    """A request the API refuses: its status, a stable code, a message, and the field at fault."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None, headers=None):
        super().__init__(message)
        self.status_code = status
        self.code = code
        self.field = field
        self.headers = headers or {}


def from_validation(exc) -> ApiError:
    """A pydantic ValidationError as one 400 naming its first field ("actions.0.url")."""
    first = exc.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "body"
    if first["loc"][:1] == ("consent",):
        return ApiError(400, "consent_required", CONSENT_MESSAGE, "consent")
    message = first["msg"].removeprefix("Value error, ")
    return ApiError(400, "invalid", f"{field}: {message}", field)


def from_domain(exc: MailerError) -> ApiError:
    """An operation's refusal as an API error; SubscriberError knows its field, the others name theirs."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, NotFound):
        return ApiError(404, "not_found", str(exc))
    if isinstance(exc, SubscriberError):
        if exc.field is None:  # a state that forbids it (unsubscribed), not a bad value
            return ApiError(409, "conflict", str(exc))
        return ApiError(400, "invalid", str(exc), exc.field)
    if isinstance(exc, DigestError):
        message = str(exc).replace("--cron", "cron").replace("--tz", "timezone")
        return ApiError(400, "invalid", message, "timezone" if message.startswith("timezone") else "cron")
    if isinstance(exc, TopicError):
        return ApiError(400, "invalid", str(exc), "slug")
    if isinstance(exc, ArticleError):
        return ApiError(400, "invalid", str(exc))
    return ApiError(exc.status_code, HTTP_CODES.get(exc.status_code, "invalid"), str(exc))


def response(error: ApiError):
    body = {"error": {"code": error.code, "message": str(error), "field": error.field}}
    answer = jsonify(body)
    answer.status_code = error.status_code
    answer.headers.update(error.headers)
    return answer


def _from_http(exc: HTTPException) -> ApiError:
    status = exc.code or 500
    if status >= 500:
        return ApiError(status, "server_error", "Something went wrong on our side; it has been logged.")
    message = {
        404: "There is nothing at this address: see /api/v1/openapi.json for the routes.",
        405: f"{request.method} is not allowed here.",
        413: "The body is larger than this API accepts.",
        429: f"Too many requests with this token ({exc.description}); wait and try again.",
    }.get(status, exc.description or "Bad request.")
    headers = {}
    if status == 405 and getattr(exc, "valid_methods", None):
        headers["Allow"] = ", ".join(exc.valid_methods)
    if status == 429:
        headers["Retry-After"] = "60"
    return ApiError(status, HTTP_CODES.get(status, "invalid"), message, headers=headers)


def answer_json_under_api(app) -> None:
    """Make the app's error handlers answer JSON for paths under /api/ and keep their pages elsewhere.

    Routing errors (an unknown path, a wrong method) never reach a blueprint's handlers, so this wraps
    the app's own; call it after the site's error pages are registered.
    """
    site = app.error_handler_spec[None][None]
    page_for_mailer_error = site.get(MailerError)
    page_for_http_error = site.get(HTTPException)

    def _mailer_error(exc: MailerError):
        if not request.path.startswith(PREFIX):
            return page_for_mailer_error(exc)
        db.session.rollback()
        return response(from_domain(exc))

    def _http_error(exc: HTTPException):
        if not request.path.startswith(PREFIX):
            return page_for_http_error(exc)
        db.session.rollback()
        return response(_from_http(exc))

    app.register_error_handler(MailerError, _mailer_error)
    app.register_error_handler(HTTPException, _http_error)
