"""Configuration: one schema with defaults, loaded once, validated, immutable.

Sources, later wins: built-in defaults, the TOML file named by MAILER_CONFIG (or ./config.toml),
then environment variables MAILER_<SECTION>_<KEY> (MAILER_MAIL_SMTP_HOST for [mail.smtp] host).
"""

from __future__ import annotations

import email.utils
import os
import re
import secrets
import tomllib
import zoneinfo
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

import limits

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
    "dkim": {
        "selector": "",
        "domain": "",
        "private_key_file": "",
    },
    "scheduler": {
        "enabled": True,
        "timezone": "UTC",
    },
    "delivery": {
        "batch_size": 100,
        "max_attempts": 8,
        "lease_seconds": 300,
        "poll_seconds": 2,
    },
    "feeds": {
        "block_private_addresses": False,
    },
    "tracking": {
        "per_recipient": True,
        "opens": False,
    },
    "admin": {
        "session_idle_hours": 12,
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
}


class Config(Mapping[str, Mapping[str, Any]]):
    """Read-only sections: `config["mail.smtp"]["host"]`, or `config.section("mail.smtp").host`."""

    def __init__(self, values: dict[str, dict[str, Any]], source: str):
        self._values = MappingProxyType({k: MappingProxyType(dict(v)) for k, v in values.items()})
        self.source = source

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
SECRETS = {("mail.smtp", "password"), ("site", "secret_key"), ("site", "rate_limit_storage")}


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


def _env_overrides(environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    names = {
        "MAILER_" + f"{section}_{key}".replace(".", "_").upper(): (section, key)
        for section, keys in SCHEMA.items()
        for key in keys
    }
    out: dict[str, dict[str, Any]] = {}
    for var, value in environ.items():
        if not var.startswith("MAILER_") or var == "MAILER_CONFIG":
            continue
        if var not in names:
            raise ConfigError(f"environment: unknown setting {var}")
        section, key = names[var]
        out.setdefault(section, {})[key] = value
    return out


def load(path: str | os.PathLike | None = None, environ: Mapping[str, str] | None = None,
         overrides: dict[str, dict[str, Any]] | None = None) -> Config:
    """Load and validate the configuration; raise ConfigError naming the first bad key."""
    environ = os.environ if environ is None else environ
    if path is None:
        path = environ.get("MAILER_CONFIG") or ("config.toml" if Path("config.toml").exists() else None)
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
    return Config(values, source)


def _unflatten(sections: dict[str, dict[str, Any]]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for section, keys in sections.items():
        node = tree
        for part in section.split("."):
            node = node.setdefault(part, {})
        node.update(keys)
    return tree


def _validate(values: dict[str, dict[str, Any]]) -> None:
    for (section, key), allowed in CHOICES.items():
        if values[section][key] not in allowed:
            raise ConfigError(f"{section}.{key} must be one of {', '.join(sorted(allowed))}, "
                              f"not {values[section][key]!r}")
    base_url = values["site"]["base_url"]
    if not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"site.base_url must start with https:// (or http:// for local use), not {base_url!r}")
    if values["admin"]["session_idle_hours"] < 1:
        raise ConfigError("admin.session_idle_hours must be 1 or more")
    if values["site"]["trusted_proxies"] < 0:
        raise ConfigError("site.trusted_proxies must be 0 or more")
    rate_limit = values["signup"]["rate_limit"]
    if rate_limit:
        try:
            limits.parse_many(rate_limit)
        except ValueError:
            raise ConfigError(f"signup.rate_limit must be a rate like '20 per hour', not {rate_limit!r}") from None
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
    for key in ("username", "password"):
        if not values["mail.smtp"][key].isascii():
            # smtplib sends AUTH in ASCII only; the value itself is never shown (it may be the password).
            raise ConfigError(f"mail.smtp.{key} must be ASCII: Python's smtplib cannot send other characters")
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
