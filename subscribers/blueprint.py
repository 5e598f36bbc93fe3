"""URL rules for the subscriber pages."""

from flask import Blueprint

from subscribers import views

blueprint = Blueprint("subscribers", __name__)

blueprint.add_url_rule("/", "home", views.home, methods=["GET"])
blueprint.add_url_rule("/subscribe", "subscribe", views.subscribe, methods=["GET", "POST"])
blueprint.add_url_rule("/subscribe/thanks", "thanks", views.thanks, methods=["GET"])
blueprint.add_url_rule("/confirm/<token>", "confirm", views.confirm, methods=["GET", "POST"])
blueprint.add_url_rule("/preferences/<token>", "preferences", views.preferences, methods=["GET", "POST"])
blueprint.add_url_rule("/preferences/<token>/data", "export_data", views.export_data, methods=["GET"])
blueprint.add_url_rule("/preferences/<token>/erase", "erase", views.erase, methods=["GET", "POST"])
blueprint.add_url_rule("/unsubscribe/<token>", "unsubscribe", views.unsubscribe, methods=["GET", "POST"])

# RFC 8058: mail providers POST "List-Unsubscribe=One-Click" with no cookie and no form token.
from mailer.app import csrf  # noqa: E402

csrf.exempt(views.unsubscribe)
