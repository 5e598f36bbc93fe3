"""`mailer doctor`: check an instance as an admin would before its first real send.

Each check talks to the real thing (the relay up to MAIL FROM and RSET, the site's /healthz, the
database, the bounce mailbox's login) and never sends a message. It ends with the DNS records to
publish for the From domain, as text to copy: this machine cannot look them up.
"""

from __future__ import annotations

import base64
import imaplib
import json
import smtplib
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from ipaddress import ip_address
from pathlib import Path

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy.exc import OperationalError

from mailer import db, migrate, startup
from mailer.config import Config
from mailer.errors import ConfigError
from mailer.outbox.verp import PLACEHOLDER

TIMEOUT = 10
# What a VERP return path looks like when the doctor asks the relay about it: no outbox row is named.
SAMPLE_TOKEN = "0-doctor"


@dataclass(frozen=True)
class Finding:
    """One line of the doctor's answer. `status`: ok, warn (works, but not fit for the public), fail, skip."""

    status: str
    check: str
    message: str

    def line(self) -> str:
        return f"{self.status:<5} {self.check:<9} {self.message}"


def examine(config: Config, published_dkim: str = "") -> list[Finding]:
    """Every check, in the order an admin would go: database, relay, DKIM, site, bounces, then the gaps."""
    findings = [check_database(config), check_relay(config)]
    if config["mail"]["backend"] == "smtp" and config["mail.smtp_fallback"]["host"]:
        findings.append(check_relay(config, "mail.smtp_fallback"))
    findings += [check_dkim(config, published_dkim), check_base_url(config), check_bounces(config.get("bounces"))]
    findings += [Finding("warn", "setup", gap) for gap in startup.production_gaps(config)
                 if not gap.startswith("dkim.")]  # the DKIM check says that one itself
    return findings


# ---- database ----------------------------------------------------------------------------------

def check_database(config: Config) -> Finding:
    engine = db.make_engine(config["database"]["url"])
    shown = engine.url.render_as_string(hide_password=True)
    try:
        migrate.require_current(engine)
    except ConfigError as exc:
        return Finding("fail", "database", str(exc))
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc).splitlines()[0]
        return Finding("fail", "database", f"cannot use the database {shown}: {reason}")
    finally:
        engine.dispose()
    return Finding("ok", "database", f"{shown} is at the newest migration")


# ---- the relay ---------------------------------------------------------------------------------

def envelope_sender(config: Config) -> str:
    """The MAIL FROM the worker would use (VERP shown with a sample token)."""
    return_path = config["mail"]["return_path"]
    return return_path.replace(PLACEHOLDER, SAMPLE_TOKEN) or config["mail"]["from_address"]


def check_relay(config: Config, section: str = "mail.smtp") -> Finding:
    """EHLO, STARTTLS and AUTH as configured, then MAIL FROM and RSET: the relay's answer, no message.

    `section` "mail.smtp_fallback" asks the second relay the same, as the check named "fallback"."""
    if config["mail"]["backend"] != "smtp":
        return Finding("warn", "relay", f"mail.backend is {config['mail']['backend']}: mail is written to "
                                        f"{config['mail']['maildir']} and nothing is sent; set "
                                        f"mail.backend = \"smtp\" and [mail.smtp] for real sends")
    check = "fallback" if section == "mail.smtp_fallback" else "relay"
    s = config[section]
    where = f"{s['host']}:{s['port']}"
    sender = envelope_sender(config)
    context = ssl.create_default_context(cafile=s["ca_file"] or None)
    step = "connect"
    try:
        if s["security"] == "tls":
            conn = smtplib.SMTP_SSL(s["host"], s["port"], timeout=s["timeout"], context=context)
        else:
            conn = smtplib.SMTP(s["host"], s["port"], timeout=s["timeout"])
        with conn:
            step = "EHLO"
            code, reply = conn.ehlo()
            if code != 250:
                return Finding("fail", check, f"{where} refused EHLO: {code} {_text(reply)}")
            name = _text(reply).splitlines()[0]
            done = [f"answered EHLO as {name}"]
            if s["security"] == "starttls":
                step = "STARTTLS"
                conn.starttls(context=context)
                done.append("STARTTLS")
            if s["username"]:
                step = f"AUTH as {s['username']}"
                conn.login(s["username"], s["password"])
                done.append(f"AUTH as {s['username']}")
            step = f"MAIL FROM:<{sender}>"
            code, reply = conn.mail(sender)
            if code != 250:
                return Finding("fail", check, f"{where} refused MAIL FROM:<{sender}>: {code} {_text(reply)}")
            conn.rset()
    except smtplib.SMTPNotSupportedError:
        return Finding("fail", check, f"{where} does not offer {step.split()[0]}: set {section}.security to "
                                      f"what the relay offers (\"tls\" on port 465?)")
    except smtplib.SMTPResponseException as exc:
        return Finding("fail", check, f"{where} refused {step}: {exc.smtp_code} {_text(exc.smtp_error)}")
    except (smtplib.SMTPException, OSError) as exc:
        return Finding("fail", check, f"{where}: {step} failed: {getattr(exc, 'strerror', None) or exc}")
    return Finding("ok", check, f"{where} {', '.join(done)} and accepted MAIL FROM:<{sender}> (nothing sent)")


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


# ---- DKIM --------------------------------------------------------------------------------------

def dkim_public_key(private_pem: bytes) -> bytes:
    """The SubjectPublicKeyInfo (DER) a DKIM record's p= carries, from a PEM RSA private key."""
    key = serialization.load_pem_private_key(private_pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("not an RSA key")
    return key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def dkim_record(private_pem: bytes) -> str:
    """The TXT record's value for the selector: what receivers fetch to check our signatures."""
    return "v=DKIM1; k=rsa; p=" + base64.b64encode(dkim_public_key(private_pem)).decode()


def _p_value(record: str) -> str:
    tags = dict(part.strip().partition("=")[::2] for part in record.replace('"', "").split(";") if "=" in part)
    return "".join(tags.get("p", "").split())


def check_dkim(config: Config, published: str = "") -> Finding:
    """The key reads, is long enough, signs a message that its own record verifies, and (when the
    admin pasted the published record) is the key that record names."""
    settings = config["dkim"]
    if not settings["selector"]:
        return Finding("warn", "dkim", "dkim.selector is empty: mail leaves unsigned (fine only if the relay "
                                       "signs it with the From domain's key)")
    path, selector, domain = settings["private_key_file"], settings["selector"], settings["domain"]
    try:
        private = Path(path).read_bytes()
    except OSError as exc:
        return Finding("fail", "dkim", f"dkim.private_key_file {path} cannot be read: {exc.strerror}")
    try:
        record = dkim_record(private)
        bits = serialization.load_pem_private_key(private, password=None).key_size
    except (ValueError, TypeError):
        return Finding("fail", "dkim", f"dkim.private_key_file {path} is not a PEM RSA private key "
                                       f"(without a passphrase)")
    if bits < 1024:
        return Finding("fail", "dkim", f"the DKIM key in {path} is {bits} bits: receivers ignore keys under "
                                       f"1024 bits; make a 2048-bit one (openssl genrsa 2048)")
    name = f"{selector}._domainkey.{domain}."
    sample = EmailMessage()
    sample["From"], sample["To"], sample["Subject"] = config["mail"]["from_address"], "doctor@example.org", "doctor"
    sample.set_content("A message signed to check the key; it is never sent.\n")
    signed = dkim.sign(sample.as_bytes(), selector.encode(), domain.encode(), private)
    if not dkim.verify(signed + sample.as_bytes(),
                       dnsfunc=lambda qname, timeout=5: record.encode() if qname.decode() == name else None):
        return Finding("fail", "dkim", f"a message signed with {path} does not verify against its own "
                                       f"record for {name}")
    if published and _p_value(published) != _p_value(record):
        return Finding("fail", "dkim", f"the record published for {name} names another key than {path}: "
                                       f"publish the DKIM record printed below")
    aligned = _domain_of(config["mail"]["from_address"])
    if not (aligned == domain or aligned.endswith("." + domain)):
        return Finding("warn", "dkim", f"dkim.domain {domain} is not the From domain {aligned} (or a parent "
                                       f"of it): DMARC will not count the signature")
    compared = "matches the published record" if published else "signs and verifies against the record below"
    return Finding("ok", "dkim", f"{bits}-bit key in {path} {compared} ({name})")


# ---- the site ----------------------------------------------------------------------------------

def check_base_url(config: Config) -> Finding:
    """The address in every link answers /healthz (the instance runs there and reaches its database)."""
    url = config.base_url + "/healthz"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            body = response.read(1000)
    except urllib.error.HTTPError as exc:
        return Finding("fail", "base_url", f"{url} answered {exc.code} {exc.reason}")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return Finding("fail", "base_url", f"{url} did not answer: {getattr(reason, 'strerror', None) or reason}")
    try:
        is_ok = json.loads(body).get("status") == "ok"
    except (ValueError, AttributeError):
        is_ok = False
    if not is_ok:
        return Finding("fail", "base_url", f"{url} answered, but not as this mailer does (another site there?)")
    return Finding("ok", "base_url", f"{url} answered ok")


# ---- bounces -----------------------------------------------------------------------------------

def check_bounces(settings: Mapping | None) -> Finding:
    """The bounce mailbox logs in (IMAP) or exists (Maildir); skipped when none is configured."""
    settings = settings or {}
    if settings.get("imap_host"):
        return _check_imap(settings)
    if settings.get("maildir"):
        folder = Path(settings["maildir"])
        if all((folder / sub).is_dir() for sub in ("cur", "new", "tmp")):
            return Finding("ok", "bounces", f"bounce Maildir {folder} is there")
        return Finding("fail", "bounces", f"bounce Maildir {folder} is not a Maildir (no cur/, new/, tmp/)")
    return Finding("skip", "bounces", "no bounce mailbox is configured: bounces and complaints are read only "
                                      "when `mailer bounces process` is given one")


def _check_imap(settings: Mapping) -> Finding:
    host, port = settings["imap_host"], settings.get("imap_port", 993)
    where = f"{host}:{port}"
    security = settings.get("imap_security", "tls")
    try:
        if security == "tls":
            conn = imaplib.IMAP4_SSL(host, port, timeout=TIMEOUT)
        else:
            conn = imaplib.IMAP4(host, port, timeout=TIMEOUT)
            if security == "starttls":
                conn.starttls()
        try:
            conn.login(settings.get("imap_username", ""), settings.get("imap_password", ""))
            folder = settings.get("imap_folder", "INBOX")
            status, _ = conn.select(folder, readonly=True)
            if status != "OK":
                return Finding("fail", "bounces", f"bounce mailbox {where} has no folder {folder}")
        finally:
            try:
                conn.logout()
            except (imaplib.IMAP4.error, OSError):
                pass
    except imaplib.IMAP4.error as exc:
        return Finding("fail", "bounces", f"bounce mailbox {where} refused the login: {exc}")
    except (OSError, ssl.SSLError) as exc:
        return Finding("fail", "bounces", f"bounce mailbox {where} did not answer: {getattr(exc, 'strerror', None) or exc}")
    return Finding("ok", "bounces", f"bounce mailbox {where} logged in as {settings.get('imap_username', '')}")


# ---- DNS ---------------------------------------------------------------------------------------

def _domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower()


def _txt(name: str, value: str) -> str:
    """A zone-file TXT line; a value over 255 characters is split into quoted strings, as DNS requires."""
    chunks = [value[i:i + 255] for i in range(0, len(value), 255)]
    return f"{name:<32} IN TXT " + " ".join(f'"{chunk}"' for chunk in chunks)


def dns_records(config: Config) -> list[str]:
    """The SPF, DKIM and DMARC records to publish, as zone-file lines (with a comment where a value is
    this machine's guess)."""
    from_domain = _domain_of(config["mail"]["from_address"])
    envelope_domain = _domain_of(envelope_sender(config))
    lines = []
    relay = config["mail.smtp"]["host"] if config["mail"]["backend"] == "smtp" else ""
    if relay and relay not in startup.LOCAL_HOSTS:
        try:
            address = ip_address(relay)
            sender = f"ip{address.version}:{relay}"
        except ValueError:
            sender = f"a:{relay}"
        lines.append(_txt(f"{envelope_domain}.", f"v=spf1 mx {sender} ~all"))
        lines.append(f"; SPF: if {relay} is your provider's relay, use the include: it documents instead of a:/ip:")
    else:
        lines.append(_txt(f"{envelope_domain}.", "v=spf1 mx a ~all"))
        lines.append(f"; SPF: mail leaves from this server: add ip4:<its public address> if {envelope_domain}'s "
                     f"A and MX records do not point at it")
    if envelope_domain != from_domain:
        lines.append(f"; (SPF goes on {envelope_domain}, the envelope sender's domain; DMARC aligns it with {from_domain})")
    settings = config["dkim"]
    if settings["selector"]:
        try:
            record = dkim_record(Path(settings["private_key_file"]).read_bytes())
            lines.append(_txt(f"{settings['selector']}._domainkey.{settings['domain']}.", record))
        except (OSError, ValueError, TypeError):
            lines.append("; DKIM: no record: the key file cannot be read as a PEM RSA key (see above)")
    else:
        lines.append("; DKIM: no key configured. Make one (openssl genrsa -out var/dkim.key 2048), set [dkim] "
                     "selector, domain and private_key_file, and run `mailer doctor` again for its record")
    lines.append(_txt(f"_dmarc.{from_domain}.", f"v=DMARC1; p=none; rua=mailto:postmaster@{from_domain}; "
                                                f"adkim=r; aspf=r"))
    lines.append("; DMARC: start at p=none, read the reports, then move to p=quarantine")
    return lines
