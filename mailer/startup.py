"""What a long-running process says when it starts: one block naming the instance, database, mail
route, base URL, scheduler and workers, then a warning for each gap between this setup and one fit
to mail the public (the same gaps `mailer doctor` lists)."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import click
from sqlalchemy.engine import make_url

from mailer.config import Config

log = logging.getLogger("mailer.startup")

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}


def mail_route(config: Config) -> str:
    """Where mail goes, in one line: the Maildir folder, or the relay with its security and login."""
    mail = config["mail"]
    if mail["backend"] == "maildir":
        return f"maildir {mail['maildir']} (files only: nothing leaves this machine)"
    route = f"smtp relay {_relay(config['mail.smtp'])}"
    fallback = config["mail.smtp_fallback"]
    if fallback["host"]:
        route += f", falling back to {_relay(fallback)}"
    return route


def _relay(smtp: dict) -> str:
    login = f", as {smtp['username']}" if smtp["username"] else ""
    return f"{smtp['host']}:{smtp['port']} ({smtp['security']}{login})"


def production_gaps(config: Config) -> list[str]:
    """One sentence per setting that is fine on a laptop and wrong for mailing the public."""
    gaps = []
    site = config["site"]
    if not site["postal_address"].strip():
        gaps.append("site.postal_address is empty: every mail goes out without the postal address "
                    "CAN-SPAM asks for, and /privacy names no one to contact")
    if config.base_url.startswith("http://"):
        gaps.append(f"site.base_url is {config.base_url}: links in mail (List-Unsubscribe included) "
                    f"must be the https address readers reach")
    if not config["dkim"]["selector"]:
        gaps.append("dkim.selector is empty: mail leaves unsigned (fine only if the relay signs it with "
                    "the From domain's key)")
    domain = config["mail"]["from_address"].rpartition("@")[2].lower()
    if domain == "localhost" or domain.endswith(".localhost") or "." not in domain:
        gaps.append(f"mail.from_address {config['mail']['from_address']} is not at a real domain: "
                    f"receivers refuse or junk it; use a domain whose SPF and DKIM you control")
    return gaps


def listening_gap(config: Config, host: str, port: int) -> str | None:
    """A base URL on this machine that is not where this process listens: every link in mail would
    point at the other port (the "5000 is taken, use --port 5001" trap)."""
    base = urlsplit(config.base_url)
    base_port = base.port or (443 if base.scheme == "https" else 80)
    if base.hostname in LOCAL_HOSTS and base_port != port:
        return (f"site.base_url {config.base_url} is not where this process listens "
                f"(http://{host}:{port}): links in mail will point there; set MAILER_SITE_BASE_URL="
                f"http://{host}:{port} in every terminal that sends")
    return None


def block(config: Config, command: str, rows: list[tuple[str, str]], warnings: list[str],
          log_format: str = "text") -> None:
    """Print the start-up block (text), or log it as one record plus one warning each (json)."""
    fields = [("instance", f"{config.home} (config: {config.source})"),
              ("database", _database(config)),
              ("mail", f"{mail_route(config)}; from {config['mail']['from_address']}"),
              ("base URL", config.base_url),
              *rows]
    if log_format == "json":
        log.info("mailer %s started", command,
                 extra={name.replace(" ", "_").lower(): value for name, value in fields})
        for warning in warnings:
            log.warning("%s", warning, extra={"gap": True})
        return
    lines = [f"mailer {command}: {config.site_name}"]
    lines += [f"  {name:<10} {value}" for name, value in fields]
    lines += [f"warning: {warning}" for warning in warnings]
    click.echo("\n".join(lines))


def _database(config: Config) -> str:
    # Only ever called once the engine was made, so the URL parses.
    return make_url(config["database"]["url"]).render_as_string(hide_password=True)
