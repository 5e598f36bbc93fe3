"""Flask extensions, created unbound here and bound in the app factory, so blueprints can import them
without importing the factory (and the factory can import the blueprints)."""

from __future__ import annotations

from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect

csrf = CSRFProtect()
# Per-IP limits (the address ProxyFix found behind `site.trusted_proxies`). Where counts live is set
# by the factory from `site.rate_limit_storage`: the database by default, shared by every process.
limiter = Limiter(key_func=get_remote_address, default_limits=[])
# Editors' sessions in the workspace; the user loader lives with the editors' models.
login_manager = LoginManager()
