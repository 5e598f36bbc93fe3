"""Admins' room for webhooks: each configured URL with its latest events and the receiver's last answer.

Webhooks are added and removed with `mailer webhooks add/remove` (the signing secret is shown there once).
"""

from __future__ import annotations

from flask import Blueprint, render_template

from mailer import db
from mailer.admin.access import admin_only
from mailer.webhooks import queries

blueprint = Blueprint("webhooks", __name__, url_prefix="/webhooks")
SHOWN = 20


@admin_only
def index():
    """Every webhook, its counts by state, and its latest events with their last response."""
    rows = [(row, queries.recent_deliveries(db.session, row.webhook.id, SHOWN)) for row in queries.listing(db.session)]
    return render_template("admin/webhooks.html", rows=rows, shown=SHOWN)


blueprint.add_url_rule("/", "index", index, methods=["GET"])
