"""Site-wide pages (privacy notice, health) and the error pages every blueprint shares."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, render_template
from flask_wtf.csrf import CSRFError
from sqlalchemy import text
from werkzeug.exceptions import HTTPException

from mailer import db
from mailer.errors import MailerError
from mailer.privacy import queries as privacy_queries

blueprint = Blueprint("site", __name__)

# Our pages have no scripts and load only our own stylesheet: anything else a page tries (an injected
# <script>, a form posting elsewhere, a frame around it for clickjacking) is refused by the browser.
PAGE_POLICY = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
               "frame-ancestors 'none'; base-uri 'none'")


@blueprint.get("/privacy")
@blueprint.get("/privacy/<version>")
def privacy(version: str | None = None):
    """The notice published last (or `version`); the config's page while no notice of that version exists."""
    site = current_app.config["MAILER"]["site"]
    if version is None:
        notice = privacy_queries.current(db.session)
    else:
        notice = privacy_queries.by_version(db.session, version)
        if notice is None and version != site["privacy_policy_version"]:
            abort(404)
    facts = _privacy_facts(current_app.config["MAILER"])
    if notice is not None:
        return render_template("privacy.html", version=notice.version, notice=notice, **facts)
    return render_template("privacy.html", version=site["privacy_policy_version"], **facts)


def _privacy_facts(config) -> dict:
    """What every version of the notice states from config, whatever its text: who is responsible,
    how to reach them, and how long details are kept."""
    privacy = config["privacy"]
    return {"postal_address": config["site"]["postal_address"],
            "controller": privacy["controller"] or config.site_name, "contact": privacy["contact"],
            "keep_ip_days": privacy["keep_ip_days"], "keep_click_days": config["tracking"]["keep_days"],
            "per_recipient_clicks": config["tracking"]["per_recipient"]}


@blueprint.get("/healthz")
def healthz():
    try:
        db.reading()  # answers while a writer holds SQLite's write lock, and holds up none
        db.session.execute(text("SELECT 1"))
    except Exception as exc:  # the one place a database error is the answer, not a bug
        return {"status": "error", "database": exc.__class__.__name__}, 503
    return {"status": "ok"}


def error_page(status: int, title: str, message: str):
    return render_template("error.html", title=title, message=message), status


def register_security_headers(app) -> None:
    """Headers every response carries; a view that needs its own CSP (the web version of a mail) sets it."""

    @app.after_request
    def _security_headers(response):
        response.headers.setdefault("Content-Security-Policy", PAGE_POLICY)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        if "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]:
            response.headers.setdefault("X-Frame-Options", "DENY")  # frame-ancestors, for older browsers
        # Tokens live in our paths: never send them to another site. Not no-referrer, because over
        # https Flask-WTF refuses a form POST that comes without a same-origin Referer.
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response


def register_error_pages(app) -> None:
    @app.errorhandler(MailerError)
    def _mailer_error(exc: MailerError):
        db.session.rollback()
        return error_page(exc.status_code, "Something is not right", str(exc))

    @app.errorhandler(CSRFError)
    def _csrf(exc: CSRFError):
        return error_page(400, "Please try again",
                          "The form had expired or was sent from another page. "
                          "Please reload the page and send it again.")

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        messages = {
            404: ("Page not found", "There is nothing at this address."),
            405: ("Not allowed", "This page cannot be used that way."),
            413: ("Too much data", "What you sent is far larger than this form accepts."),
            429: ("Slow down", "Too many requests from your address. Please wait a minute and try again."),
        }
        title, message = messages.get(exc.code or 400, ("Bad request", exc.description or ""))
        return error_page(exc.code or 400, title, message)
