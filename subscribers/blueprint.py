"""URL rules for the subscriber pages."""

from flask import Blueprint

from subscribers import views

blueprint = Blueprint("subscribers", __name__)


@blueprint.after_request
def _never_cache(response):
    # Confirm, preferences, unsubscribe and data pages are keyed by a token in their address and show
    # a person's address and data: no shared or disk cache may keep them.
    response.headers["Cache-Control"] = "no-store"
    return response


blueprint.add_url_rule("/", "home", views.home, methods=["GET"])
blueprint.add_url_rule("/subscribe", "subscribe", views.subscribe, methods=["GET", "POST"])
blueprint.add_url_rule("/subscribe/thanks", "thanks", views.thanks, methods=["GET"])
blueprint.add_url_rule("/confirm/<token>", "confirm", views.confirm, methods=["GET", "POST"])
blueprint.add_url_rule("/preferences/<token>", "preferences", views.preferences, methods=["GET", "POST"])
blueprint.add_url_rule("/preferences/<token>/data", "export_data", views.export_data, methods=["GET", "POST"])
blueprint.add_url_rule("/preferences/<token>/erase", "erase", views.erase, methods=["GET", "POST"])
blueprint.add_url_rule("/inbox/<nonce>", "inbox_proof", views.inbox_proof, methods=["GET", "POST"])
blueprint.add_url_rule("/unsubscribe/<token>", "unsubscribe", views.unsubscribe, methods=["GET", "POST"])

# RFC 8058: mail providers POST "List-Unsubscribe=One-Click" with no cookie and no form token.
from mailer.extensions import csrf  # noqa: E402

csrf.exempt(views.unsubscribe)
# The signup form carries its own signed, time-stamped token (subscribers.form_tokens): the blog posts it.
csrf.exempt(views.subscribe)
