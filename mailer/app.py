"""The application factory: short ordered steps."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from flask import Flask
from limits.errors import ConfigurationError as LimitsConfigurationError
from werkzeug.middleware.proxy_fix import ProxyFix

from mailer import config as config_module
from mailer import db, ratelimits
from mailer.config import Config
from mailer.errors import ConfigError
from mailer.emails import TEMPLATES
from mailer.extensions import csrf, limiter, login_manager

ROOT = Path(__file__).resolve().parent.parent

# Far above any real form; a 1 MB POST gets a 413 before anyone parses it.
MAX_FORM_BYTES = 64 * 1024


def create_app(config: Config | None = None) -> Flask:
    """Build the web app for `config` (loaded from MAILER_CONFIG / ./config.toml when not given)."""
    config = config or config_module.load()
    app = Flask("mailer", template_folder=str(TEMPLATES), static_folder=str(ROOT / "static"))
    _configure(app, config)
    _check_delivery(config)
    _connect_database(app, config)
    _register_extensions(app)
    _register_blueprints(app)
    return app


def _configure(app: Flask, config: Config) -> None:
    app.config["MAILER"] = config
    app.config["SECRET_KEY"] = config_module.secret_key(config, Path("var"))
    app.config["MAX_CONTENT_LENGTH"] = MAX_FORM_BYTES
    app.config["MAX_FORM_MEMORY_SIZE"] = MAX_FORM_BYTES
    app.config["WTF_CSRF_TIME_LIMIT"] = None  # a reader may leave the form open for hours
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.config["SESSION_COOKIE_SECURE"] = config.base_url.startswith("https://")
    app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(hours=config["admin"]["session_idle_hours"])
    app.jinja_env.globals["site_name"] = config.site_name
    app.jinja_env.globals["privacy_policy_url"] = config["site"]["privacy_policy_url"]
    # Moving windows: a burst at a window's edge cannot pass twice the limit.
    app.config["RATELIMIT_STORAGE_URI"] = config["site"]["rate_limit_storage"] or f"{ratelimits.SCHEME}://"
    app.config["RATELIMIT_STRATEGY"] = "moving-window"
    proxies = config["site"]["trusted_proxies"]
    if proxies:
        # The client address (consent records, the signup rate limit) comes from the proxy's header,
        # trusted only as many hops deep as the admin says: anyone can send the header.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies)


def _check_delivery(config: Config) -> None:
    from mailer.outbox import signing

    signing.from_config(config)  # a missing or broken DKIM key stops start-up, not a send


def _connect_database(app: Flask, config: Config) -> None:
    # Every model, so foreign keys between nouns resolve (outbox.send_id -> sends) in a process
    # that has not imported them all itself, such as `mailer serve`.
    import mailer.models  # noqa: F401

    engine = db.make_engine(config["database"]["url"])
    db.bind(engine)
    app.extensions["engine"] = engine

    @app.teardown_request
    @app.teardown_appcontext
    def _remove_session(_exc):
        db.session.remove()


def _register_extensions(app: Flask) -> None:
    csrf.init_app(app)
    try:
        limiter.init_app(app)
    except LimitsConfigurationError as exc:  # e.g. a redis:// storage without the redis package
        raise ConfigError(f"site.rate_limit_storage: {str(exc).split('. ')[0]}") from None
    login_manager.init_app(app)
    login_manager.login_view = "admin.auth.login"
    login_manager.session_protection = "strong"  # a session cookie carried to another browser is dropped


def _register_blueprints(app: Flask) -> None:
    from mailer import web
    from mailer.admin.blueprint import blueprint as admin_blueprint
    from mailer.api import blueprint as api
    from mailer.bounces.blueprint import blueprint as bounces_blueprint
    from mailer.sends.blueprint import blueprint as archive_blueprint
    from mailer.links.blueprint import blueprint as links_blueprint
    from subscribers.blueprint import blueprint as subscribers_blueprint

    app.register_blueprint(web.blueprint)
    app.register_blueprint(subscribers_blueprint)
    app.register_blueprint(archive_blueprint)
    app.register_blueprint(links_blueprint)
    app.register_blueprint(admin_blueprint)
    app.register_blueprint(bounces_blueprint)
    web.register_error_pages(app)
    api.register(app)  # after the error pages: under /api/ they answer JSON instead
    web.register_security_headers(app)
