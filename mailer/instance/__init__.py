"""The instance folder: the one place that holds an installation's config.toml and var/ (database,
Maildir, secret key).

Commands look for it in MAILER_HOME (or `mailer --home DIR`), else the current folder, and refuse to
start where they find neither a config nor a database, instead of quietly making a new, empty
instance there. `mailer init` is how an instance is made on purpose.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from mailer import config as config_module
from mailer import db, migrate
from mailer.config import Config
from mailer.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config.example.toml"
DEFAULT_DATABASE = "var/mailer.db"
HEADER = "# Made by `mailer init`. Uncomment a setting to change it; the rest keep their built-in defaults.\n#\n"


def is_found(config: Config, environ: Mapping[str, str]) -> bool:
    """True when this folder is an instance: a config was read, the environment names the database,
    or the default database file is there."""
    if config.source != "built-in defaults" or environ.get("MAILER_DATABASE_URL"):
        return True
    return (config.home / DEFAULT_DATABASE).exists()


def require(config: Config, environ: Mapping[str, str] | None = None) -> None:
    """Raise a ConfigError naming the folder when it is not an instance (and create nothing)."""
    environ = os.environ if environ is None else environ
    if is_found(config, environ):
        return
    raise ConfigError(f"{config.home} is not a mailer instance (no config.toml, no {DEFAULT_DATABASE}): "
                      f"run this from the instance folder, or point MAILER_HOME or `mailer --home DIR` at it; "
                      f"`mailer init` makes a new one here")


def commented_example(text: str) -> str:
    """config.example.toml with every setting commented out: the file documents each key, and the
    built-in defaults apply until the admin uncomments one (so a default improved later is not pinned)."""
    return HEADER + re.sub(r"(?m)^(\w+\s*=)", r"# \1", text)


def create(home: Path, environ: Mapping[str, str] | None = None) -> list[str]:
    """Make `home` an instance, or finish one: write config.toml from the example (unless there is a
    config already), generate the secret key, and bring the database to the newest migration.
    Never overwrites. Returns one line per thing done, for the person who asked."""
    environ = os.environ if environ is None else environ
    done: list[str] = []
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the instance folder {home}: {exc.strerror or exc}") from None
    config_file = home / "config.toml"
    if environ.get("MAILER_CONFIG"):
        done.append(f"config: {environ['MAILER_CONFIG']} (from MAILER_CONFIG)")
    elif config_file.exists():
        done.append(f"config: {config_file} (kept as it was)")
    else:
        try:
            config_file.write_text(commented_example(EXAMPLE.read_text()))
        except OSError as exc:
            raise ConfigError(f"cannot write {config_file}: {exc.strerror or exc}") from None
        done.append(f"config: {config_file} (every setting at its default, commented out: edit it)")
    config = config_module.load(environ=environ, home=home)
    if config["site"]["secret_key"]:
        done.append("secret key: site.secret_key in the config")
    else:
        config_module.secret_key(config, Path("var"))
        done.append(f"secret key: {home / 'var' / 'secret_key'}")
    engine = db.make_engine(config["database"]["url"])
    try:
        migrate.upgrade(engine)
    finally:
        engine.dispose()
    done.append(f"database: {engine.url.render_as_string(hide_password=True)} (at the newest migration)")
    return done
