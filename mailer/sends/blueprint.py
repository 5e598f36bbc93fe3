"""URL rules for the public archive of sent digests and alerts."""

from flask import Blueprint

from mailer.sends import views

blueprint = Blueprint("archive", __name__)

blueprint.add_url_rule("/archive/", "index", views.index, methods=["GET"])
blueprint.add_url_rule("/archive/<slug>", "show", views.show, methods=["GET"])
blueprint.add_url_rule("/archive/<slug>/<int:variant_id>", "show_variant", views.show_variant, methods=["GET"])
blueprint.add_url_rule("/archive.atom", "atom", views.atom, methods=["GET"])
