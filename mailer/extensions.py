"""Flask extensions, created unbound here and bound in the app factory, so blueprints can import them
without importing the factory (and the factory can import the blueprints)."""

from __future__ import annotations

from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect

csrf = CSRFProtect()
# Per-IP limits live in process memory: one `mailer serve` process answers the forms.
limiter = Limiter(key_func=get_remote_address, storage_uri="memory://", default_limits=[])
# Editors' sessions in the workspace; the user loader lives with the editors' models.
login_manager = LoginManager()
