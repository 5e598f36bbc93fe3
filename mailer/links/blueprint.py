"""URL rules for tracked links and the open pixel."""

from flask import Blueprint

from mailer.links import views

blueprint = Blueprint("links", __name__)

blueprint.add_url_rule("/l/<token>", "follow", views.follow, methods=["GET"])
blueprint.add_url_rule("/o/<token>", "opened", views.opened, methods=["GET"])
