"""The workspace's parent blueprint: /admin/, the sign-in gate every room sits behind, and the menu."""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, current_app, redirect, request, session, url_for
from flask_login import current_user, logout_user

from mailer import clock, db
from mailer.admin import (accounts, alerts, articles, auth, dashboard, digest, feeds, privacy, sends, signup_box, topics,
                          webhooks)
from mailer.admin import subscribers as subscriber_room
from mailer.editors import operations as editor_operations

blueprint = Blueprint("admin", __name__, url_prefix="/admin")

# Endpoints a visitor without a session may reach.
OPEN_ENDPOINTS = {"admin.auth.login", "admin.auth.second_factor", "admin.auth.signed_out", "admin.index"}
# Endpoints a signed-in editor may reach before enrolling in two-factor when an admin requires it.
ENROLMENT_ENDPOINTS = {"admin.auth.two_factor", "admin.auth.sign_out", "admin.auth.signed_out"}

# The menu: (endpoint, label, admin only). A room shows once its blueprint is registered.
MENU = [
    ("admin.dashboard.index", "Dashboard", False),
    ("admin.digest.index", "Next digest", False),
    ("admin.alerts.new", "Urgent alert", False),
    ("admin.sends.index", "Sends", False),
    ("admin.articles.index", "Articles", False),
    ("admin.feeds.index", "Feeds", False),
    ("admin.topics.index", "Topics", False),
    ("admin.subscribers.index", "Subscribers", False),
    ("admin.signup_box.index", "Signup box", False),
    ("admin.privacy.index", "Privacy notice", True),
    ("admin.accounts.index", "Accounts", True),
    ("admin.accounts.audit", "Audit log", True),
    ("admin.webhooks.index", "Webhooks", True),
]


def _idle_limit() -> timedelta:
    return timedelta(hours=current_app.config["MAILER"]["admin"]["session_idle_hours"])


@blueprint.before_request
def _gate():
    """Sign-in, idle expiry and required two-factor, for every room under /admin/."""
    is_open = request.endpoint in OPEN_ENDPOINTS
    if current_user.is_authenticated:
        now = int(clock.now().timestamp())
        if now - session.get("seen_at", 0) > _idle_limit().total_seconds():
            logout_user()
            session.clear()
            if not is_open:
                return redirect(url_for("admin.auth.login", expired=1, next=request.full_path.rstrip("?")))
        else:
            session["seen_at"] = now
    if is_open:
        return None
    if not current_user.is_authenticated:
        return redirect(url_for("admin.auth.login", next=request.full_path.rstrip("?")))
    if (request.endpoint not in ENROLMENT_ENDPOINTS and not current_user.has_totp
            and editor_operations.totp_required(db.session)):
        return redirect(url_for("admin.auth.two_factor", required=1))
    return None


@blueprint.after_request
def _never_cache(response):
    # Workspace pages show subscribers' addresses and drafts: no shared or disk cache may keep them.
    response.headers["Cache-Control"] = "no-store"
    return response


@blueprint.get("/")
def index():
    """The dashboard for an editor; the sign-in form for anyone else (the contract's /admin/)."""
    if not current_user.is_authenticated:
        return auth.login()
    first = next((endpoint for endpoint, _, admin in MENU
                  if endpoint in current_app.view_functions and (current_user.is_admin or not admin)), None)
    return redirect(url_for(first or "admin.auth.account"))


@blueprint.app_context_processor
def _menu():
    if not request.blueprint or not request.blueprint.startswith("admin"):
        return {}
    show_admin = current_user.is_authenticated and current_user.is_admin
    return {"admin_menu": [(endpoint, label) for endpoint, label, admin in MENU
                           if endpoint in current_app.view_functions and (show_admin or not admin)]}



# Each room is a blueprint of its own, nested here once (a blueprint registers its children per app).
for _room in (auth, dashboard, digest, alerts, sends, articles, feeds, topics, subscriber_room, signup_box, privacy,
              accounts, webhooks):
    blueprint.register_blueprint(_room.blueprint)
