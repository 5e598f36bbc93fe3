"""URL rules for relays' bounce webhooks. Relays post without a session or form token: CSRF-exempt."""

from flask import Blueprint
from werkzeug.exceptions import HTTPException

from mailer.bounces import views
from mailer.errors import BounceError
from mailer.extensions import csrf

blueprint = Blueprint("bounces", __name__, url_prefix="/bounces")

blueprint.add_url_rule("/ses", "ses", views.ses, methods=["POST"])
blueprint.add_url_rule("/postmark", "postmark", views.postmark, methods=["POST"])
# A GET (someone trying the URL in a browser) gets JSON too, not the site's HTML error page.
blueprint.add_url_rule("/ses", "ses_get", views.method_not_allowed, methods=["GET"])
blueprint.add_url_rule("/postmark", "postmark_get", views.method_not_allowed, methods=["GET"])
blueprint.register_error_handler(BounceError, views.bounce_error)
blueprint.register_error_handler(HTTPException, views.http_error)

csrf.exempt(blueprint)
