"""Configuration: one schema with defaults, loaded once, validated, immutable.

Sources, later wins: built-in defaults, the TOML file named by MAILER_CONFIG (or config.toml in the
instance folder), then environment variables MAILER_<SECTION>_<KEY> (MAILER_MAIL_SMTP_HOST for
[mail.smtp] host). The instance folder is MAILER_HOME (or `mailer --home`), else the current folder;
relative paths in the config (the SQLite file, the Maildir, the DKIM key, var/) are read from it.
"""

from __future__ import annotations

import email.utils
import os
import re
import secrets
import tomllib
import zoneinfo
from datetime import timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

import limits
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from mailer.errors import ConfigError

# section -> key -> default. The type of the default is the type of the key.
# Every key is documented in config.example.toml; a test keeps the two in step.
SCHEMA: dict[str, dict[str, Any]] = {
    "site": {
        "name": "Accidentally Alex",
        "base_url": "http://127.0.0.1:5000",
        "privacy_policy_url": "/privacy",
        "privacy_policy_version": "2026-11-01",
        "postal_address": "",
        "secret_key": "",
        "trusted_proxies": 0,
        "rate_limit_storage": "",
    },
    "database": {
        "url": "sqlite:///var/mailer.db",
    },
    "mail": {
        "backend": "maildir",
        "maildir": "var/mail",
        "from_address": "updates@localhost",
        "reply_to": "",
        "return_path": "",
    },
    "mail.smtp": {
        "host": "127.0.0.1",
        "port": 25,
        "security": "none",
        "username": "",
        "password": "",
        "connections": 4,
        "rate_per_second": 0,
        "timeout": 30,
        "ca_file": "",  # a PEM bundle to trust instead of the system's, for a relay with a private CA
    },
    # A second relay, used while the first cannot be reached or refuses the session; empty host = none.
    "mail.smtp_fallback": {
        "host": "",
        "port": 25,
        "security": "none",
        "username": "",
        "password": "",
        "rate_per_second": 0,
        "timeout": 30,
        "ca_file": "",
        "retry_primary_seconds": 300,
    },
    "dkim": {
        "selector": "",
        "domain": "",
        "private_key_file": "",
    },
    "scheduler": {
        "enabled": True,
        "timezone": "UTC",
        "lease_seconds": 60,
    },
    "delivery": {
        "batch_size": 100,
        "give_up_after": "3d",
        "keep_days": 90,
        "lease_seconds": 300,
        "poll_seconds": 2,
    },
    "feeds": {
        "block_private_addresses": False,
    },
    "tracking": {
        "per_recipient": True,
        "opens": False,
        "keep_days": 90,
    },
    "privacy": {
        "keep_ip_days": 30,
        "controller": "",
        "contact": "",
    },
    "admin": {
        "session_idle_hours": 12,
    },
    "bounces": {
        "maildir": "",
        "imap_host": "",
        "imap_port": 993,
        "imap_security": "tls",
        "imap_username": "",
        "imap_password": "",
        "imap_folder": "INBOX",
        "is_scheduled": False,
        "interval_minutes": 5,
        "soft_limit": 5,
        "soft_days": 14,
        "webhook_secret": "",
        "sns_confirm": True,
    },
    "signup": {
        "confirmations_per_day": 3,
        "confirm_days": 7,
        "rate_limit": "20 per hour",
        "pending_per_domain_per_hour": 100,
        "blocked_domains": "",
        "min_seconds": 2,
        "embed_origins": "",
        "proof_of_work": False,
        "proof_of_work_max_number": 50000,
    },
    "api": {
        "rate_limit": "300 per minute",
    },
    "webhooks": {
        "timeout_seconds": 10,
        "max_attempts": 8,
        "lease_seconds": 120,
        "include_email": False,
    },
}

# One bare address: mail.from_address takes its display name from site.name.
ADDRESS = re.compile(r"[^@\s<>,\"]+@[^@\s<>,\"]+")

# Where Flask-Limiter may keep its counts besides the database (""): one process's memory, or Redis.
RATE_STORAGES = ("memory://", "redis://", "rediss://", "redis+unix://")
# An origin as a browser sends it: scheme, host, optional port, nothing after.
ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?")

CHOICES = {
    ("mail", "backend"): {"maildir", "smtp"},
    ("mail.smtp", "security"): {"none", "starttls", "tls"},
    ("mail.smtp_fallback", "security"): {"none", "starttls", "tls"},
    ("bounces", "imap_security"): {"none", "starttls", "tls"},
}


class Config(Mapping[str, Mapping[str, Any]]):
    """Read-only sections: `config["mail.smtp"]["host"]`, or `config.section("mail.smtp").host`."""

    def __init__(self, values: dict[str, dict[str, Any]], source: str, home: Path | None = None):
        self._values = MappingProxyType({k: MappingProxyType(dict(v)) for k, v in values.items()})
        self.source = source
        self.home = home or Path.cwd()  # the instance folder: relative paths were resolved against it

    def __getitem__(self, key: str) -> Mapping[str, Any]:
        return self._values[key]

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def get_value(self, section: str, key: str) -> Any:
        return self._values[section][key]

    @property
    def site_name(self) -> str:
        return self._values["site"]["name"]

    @property
    def base_url(self) -> str:
        return self._values["site"]["base_url"].rstrip("/")


# Settings whose values an error message must never show (errors end up in terminals and logs).
SECRETS = {("mail.smtp", "password"), ("mail.smtp_fallback", "password"), ("site", "secret_key"),
           ("site", "rate_limit_storage"), ("bounces", "imap_password"), ("bounces", "webhook_secret")}


def _coerce(section: str, key: str, value: Any, default: Any, origin: str) -> Any:
    name = f"{section}.{key}"
    if (section, key) in SECRETS and not isinstance(value, str):
        raise ConfigError(f"{origin}: {name} must be a string (put it in quotes)")
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
            return value.lower() in {"1", "true", "yes", "on"}
        raise ConfigError(f"{origin}: {name} must be true or false, not {value!r}")
    if isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"{origin}: {name} must be a whole number, not {value!r}")
    if not isinstance(value, str):
        raise ConfigError(f"{origin}: {name} must be a string, not {value!r}")
    return value


def _flatten(data: dict[str, Any], origin: str) -> dict[str, dict[str, Any]]:
    """Turn the TOML tree into {"mail.smtp": {...}}, naming any unknown key."""
    out: dict[str, dict[str, Any]] = {}

    def walk(prefix: str, table: dict[str, Any]) -> None:
        for key, value in table.items():
            dotted = f"{prefix}.{key}" if prefix else key
            if isinstance(value, dict):
                if dotted not in SCHEMA:
                    raise ConfigError(f"{origin}: unknown section [{dotted}]")
                walk(dotted, value)
            elif prefix in SCHEMA and key in SCHEMA[prefix]:
                out.setdefault(prefix, {})[key] = value
            else:
                raise ConfigError(f"{origin}: unknown key {dotted!r}")

    walk("", data)
    return out


# Variables of the command line, not settings: which config file, which instance folder, which log format.
NOT_SETTINGS = {"MAILER_CONFIG", "MAILER_HOME", "MAILER_LOG_FORMAT"}


def _env_overrides(environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    names = {
        "MAILER_" + f"{section}_{key}".replace(".", "_").upper(): (section, key)
        for section, keys in SCHEMA.items()
        for key in keys
    }
    out: dict[str, dict[str, Any]] = {}
    for var, value in environ.items():
        if not var.startswith("MAILER_") or var in NOT_SETTINGS:
            continue
        if var not in names:
            raise ConfigError(f"environment: unknown setting {var}")
        section, key = names[var]
        out.setdefault(section, {})[key] = value
    return out


def home_folder(environ: Mapping[str, str] | None = None, home: str | os.PathLike | None = None) -> Path:
    """The instance folder: `home` if given, else MAILER_HOME, else the folder of the file MAILER_CONFIG
    names (its var/ is beside it), else the current folder; absolute."""
    environ = os.environ if environ is None else environ
    if not home and not environ.get("MAILER_HOME") and environ.get("MAILER_CONFIG"):
        home = Path(environ["MAILER_CONFIG"]).expanduser().absolute().parent
    return Path(home or environ.get("MAILER_HOME") or os.getcwd()).expanduser().absolute()


def load(path: str | os.PathLike | None = None, environ: Mapping[str, str] | None = None,
         overrides: dict[str, dict[str, Any]] | None = None, home: str | os.PathLike | None = None) -> Config:
    """Load and validate the configuration; raise ConfigError naming the first bad key."""
    environ = os.environ if environ is None else environ
    home = home_folder(environ, home)
    if path is None:
        in_home = home / "config.toml"
        path = environ.get("MAILER_CONFIG") or (in_home if in_home.exists() else None)
    values = {section: dict(keys) for section, keys in SCHEMA.items()}
    layers: list[tuple[str, dict[str, dict[str, Any]]]] = []
    source = "built-in defaults"
    if path is not None:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from None
        layers.append((str(path), _flatten(data, str(path))))
        source = str(path)
    layers.append(("environment", _env_overrides(environ)))
    if overrides:
        layers.append(("overrides", _flatten(_unflatten(overrides), "overrides")))
    for origin, layer in layers:
        for section, keys in layer.items():
            for key, value in keys.items():
                values[section][key] = _coerce(section, key, value, SCHEMA[section][key], origin)
    _validate(values)
    _resolve_paths(values, home)
    return Config(values, source, home)


def _resolve_paths(values: dict[str, dict[str, Any]], home: Path) -> None:
    """Relative paths in the config name files in the instance folder, wherever the command runs."""
    values["database"]["url"] = _sqlite_in(home, values["database"]["url"])
    for section, key in (("mail", "maildir"), ("dkim", "private_key_file")):
        if values[section][key]:
            values[section][key] = str(home / values[section][key])


def _sqlite_in(home: Path, url_text: str) -> str:
    """A SQLite URL with a relative file made absolute in `home`; any other URL as it was."""
    try:
        url = make_url(url_text)
    except ArgumentError:
        return url_text  # the engine names a URL it cannot read, without echoing it
    database = url.database or ""
    if (url.get_backend_name() != "sqlite" or not database or database == ":memory:"
            or database.startswith("file:") or Path(database).is_absolute()):
        return url_text
    return url.set(database=str(home / database)).render_as_string(hide_password=False)


def _unflatten(sections: dict[str, dict[str, Any]]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for section, keys in sections.items():
        node = tree
        for part in section.split("."):
            node = node.setdefault(part, {})
        node.update(keys)
    return tree


_DURATION = re.compile(r"\s*(\d{1,6})\s*([smhd])\s*")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(text: str) -> timedelta | None:
    """'3d', '36h', '90m' or '45s' as a timedelta; None when it is not one of those (or is zero)."""
    match = _DURATION.fullmatch(text)
    if match is None or int(match.group(1)) == 0:
        return None
    return timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def _validate(values: dict[str, dict[str, Any]]) -> None:
    for (section, key), allowed in CHOICES.items():
        if values[section][key] not in allowed:
            raise ConfigError(f"{section}.{key} must be one of {', '.join(sorted(allowed))}, "
                              f"not {values[section][key]!r}")
    base_url = values["site"]["base_url"]
    if not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"site.base_url must start with https:// (or http:// for local use), not {base_url!r}")
    if values["scheduler"]["lease_seconds"] < 3:
        raise ConfigError("scheduler.lease_seconds must be 3 or more")
    if values["admin"]["session_idle_hours"] < 1:
        raise ConfigError("admin.session_idle_hours must be 1 or more")
    for section, key in (("privacy", "keep_ip_days"), ("tracking", "keep_days")):
        if values[section][key] < 1:
            raise ConfigError(f"{section}.{key} must be 1 or more (days)")
    if values["site"]["trusted_proxies"] < 0:
        raise ConfigError("site.trusted_proxies must be 0 or more")
    give_up = values["delivery"]["give_up_after"]
    if duration(give_up) is None:
        raise ConfigError(f"delivery.give_up_after must be a time like '3d', '36h' or '90m', not {give_up!r}")
    rate_limit = values["signup"]["rate_limit"]
    if rate_limit:
        try:
            limits.parse_many(rate_limit)
        except ValueError:
            raise ConfigError(f"signup.rate_limit must be a rate like '20 per hour', not {rate_limit!r}") from None
    api_rate_limit = values["api"]["rate_limit"]
    try:
        limits.parse_many(api_rate_limit)
    except ValueError:
        raise ConfigError(f"api.rate_limit must be a rate like '300 per minute', not {api_rate_limit!r}") from None
    for key in ("timeout_seconds", "max_attempts", "lease_seconds"):
        if values["webhooks"][key] < 1:
            raise ConfigError(f"webhooks.{key} must be 1 or more")
    storage = values["site"]["rate_limit_storage"]
    if storage and not storage.startswith(RATE_STORAGES):
        raise ConfigError(f"site.rate_limit_storage must be empty (the database), memory:// or a redis:// URL, "
                          f"not {storage.split('://')[0]!r}")  # only the scheme: the URL may hold a password
    for origin in values["signup"]["embed_origins"].split():
        if not ORIGIN.fullmatch(origin):
            raise ConfigError(f"signup.embed_origins must list origins like https://blog.example.org "
                              f"(no path, no trailing slash), not {origin!r}")
    for key in ("pending_per_domain_per_hour", "min_seconds", "proof_of_work_max_number"):
        if values["signup"][key] < 0:
            raise ConfigError(f"signup.{key} must be 0 or more")
    for section in ("mail.smtp", "mail.smtp_fallback"):
        for key in ("username", "password"):
            if not values[section][key].isascii():
                # smtplib sends AUTH in ASCII only; the value itself is never shown (it may be the password).
                raise ConfigError(f"{section}.{key} must be ASCII: Python's smtplib cannot send other characters")
    if values["mail.smtp_fallback"]["retry_primary_seconds"] < 1:
        raise ConfigError("mail.smtp_fallback.retry_primary_seconds must be 1 or more")
    bounces = values["bounces"]
    for key in ("interval_minutes", "soft_limit", "soft_days"):
        if bounces[key] < 1:
            raise ConfigError(f"bounces.{key} must be 1 or more")
    if bounces["is_scheduled"] and not (bounces["imap_host"] or bounces["maildir"]):
        raise ConfigError("bounces.is_scheduled is true: set bounces.imap_host or bounces.maildir to read")
    if bounces["imap_host"] and not bounces["imap_username"]:
        raise ConfigError("bounces.imap_host is set: bounces.imap_username is needed too")
    timezone = values["scheduler"]["timezone"]
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"scheduler.timezone must be a time zone like 'Europe/London' or 'UTC', "
                          f"not {timezone!r}") from None
    # Only the shape: a From without an @ would be refused by every relay, one message at a time.
    from_address = values["mail"]["from_address"]
    if not ADDRESS.fullmatch(from_address):
        raise ConfigError(f"mail.from_address must be an email address like updates@example.org "
                          f"(site.name is its display name), not {from_address!r}")
    reply_to = values["mail"]["reply_to"]
    if reply_to and not ADDRESS.fullmatch(email.utils.parseaddr(reply_to)[1]):
        raise ConfigError(f"mail.reply_to must be an email address like editors@example.org, not {reply_to!r}")
    if values["dkim"]["selector"] and not (values["dkim"]["domain"] and values["dkim"]["private_key_file"]):
        raise ConfigError("dkim.selector is set: dkim.domain and dkim.private_key_file are needed too")


def secret_key(config: Config, var_dir: Path) -> str:
    """The configured secret, or one generated once into var/secret_key (mode 0600) and reused.

    The file appears under its name only once the key is written in full, so a process starting at
    the same moment never reads half a key; an empty file is an error, never an empty key (anyone
    could sign links with it).
    """
    configured = config["site"]["secret_key"]
    if configured:
        return configured
    var_dir = config.home / var_dir  # a relative var/ is the instance folder's
    path = var_dir / "secret_key"
    if not path.exists():
        var_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        draft = var_dir / f".secret_key.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48) + "\n")
        try:
            os.link(draft, path)  # atomic, and fails when another process got there first: we use its key
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)  # whoever can read the key can sign links to anyone's preferences
    key = path.read_text().strip()
    if not key:
        raise ConfigError(f"{path} is empty: delete it to have a new key generated (links in mail "
                          f"already sent stop working), or set site.secret_key")
    return key
