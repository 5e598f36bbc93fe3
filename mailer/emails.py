"""Rendering mail from `.txt` + `.html` template pairs and building RFC 5322 messages with the list headers.

Rendering is pure: templates, context and site settings in; subject, text and inlined HTML out.
"""

from __future__ import annotations

import email.policy
import email.utils
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from functools import lru_cache
from pathlib import Path

import css_inline
from email_validator import validate_email
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from mailer import clock
from mailer.config import Config

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"

# Headers whose value is a URL list a mail client parses as it stands (RFC 2369, RFC 8058).
VERBATIM_HEADERS = frozenset({"list-unsubscribe", "list-unsubscribe-post", "list-archive", "list-help"})
MAX_HEADER_LINE = 998  # RFC 5322 2.1.1


class MailPolicy(email.policy.EmailPolicy):
    """SMTP policy: CRLF line ends, header folding that never lets a value break a header line, and
    URL headers written as they are.

    Python folds a value with no space in it that is longer than a line by turning it into RFC 2047
    encoded words (`=?utf-8?q?=3Chttps...?=`): no mail client reads that as a List-Unsubscribe URL, so
    Gmail and Yahoo would see no one-click unsubscribe at all. RFC 5322 allows 998 characters a line.
    """

    def _fold(self, name, value, refold_binary=False):
        text = str(value)
        line = f"{name}: {text}"
        if (name.lower() in VERBATIM_HEADERS and text.isascii() and "\r" not in text and "\n" not in text
                and len(line) <= MAX_HEADER_LINE):
            return line + self.linesep
        return super()._fold(name, value, refold_binary)


POLICY = MailPolicy(linesep="\r\n", max_line_length=78)


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


@lru_cache(maxsize=1)
def environment() -> Environment:
    """The Jinja environment for mail (separate from Flask's so composition needs no app)."""
    return Environment(
        loader=FileSystemLoader(str(TEMPLATES / "emails")),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


@lru_cache(maxsize=1)
def _inliner() -> css_inline.CSSInliner:
    return css_inline.CSSInliner(keep_style_tags=True, load_remote_stylesheets=False)


def inline_css(html: str) -> str:
    """Move <style> rules onto the elements, as mail clients need (Gmail drops most <style>)."""
    return _inliner().inline(html)


def site_context(config: Config) -> dict:
    site = config["site"]
    return {
        "site_name": site["name"],
        "base_url": config.base_url,
        "postal_address": site["postal_address"],
        "privacy_url": absolute_url(config, site["privacy_policy_url"]),
    }


def absolute_url(config: Config, path_or_url: str) -> str:
    if path_or_url.startswith(("http://", "https://")):
        return path_or_url
    return config.base_url + "/" + path_or_url.lstrip("/")


def render(template: str, config: Config, **context) -> Rendered:
    """Render templates/emails/<name>.txt and .html; the subject is the txt's first `Subject:` line."""
    env = environment()
    context = {**site_context(config), **context}
    text = env.get_template(f"{template}.txt").render(**context)
    html = inline_css(env.get_template(f"{template}.html").render(**context))
    subject, _, body = text.partition("\n")
    if not subject.startswith("Subject: "):
        raise ValueError(f"templates/emails/{template}.txt must start with a 'Subject: ' line")
    return Rendered(subject=" ".join(subject.removeprefix("Subject: ").split()), text=body.lstrip("\n"), html=html)


def sender_domain(config: Config) -> str:
    return config["mail"]["from_address"].rpartition("@")[2] or "localhost"


def list_id(config: Config) -> str:
    """List-Id (RFC 2919): the site name and a stable identifier under the sender's domain."""
    name = " ".join(config.site_name.replace('"', "").split())
    return f'"{name}" <updates.{sender_domain(config)}>'


def make_message_id(config: Config) -> str:
    return email.utils.make_msgid(domain=sender_domain(config))


def build(config: Config, *, to: str, to_name: str = "", rendered: Rendered, unsubscribe_url: str,
          message_id: str | None = None, is_bulk: bool = True) -> EmailMessage:
    """A multipart/alternative message carrying every header the contract asks of list mail."""
    msg = EmailMessage(policy=POLICY)
    mail = config["mail"]
    msg["From"] = Address(display_name=config.site_name, addr_spec=mail["from_address"])
    msg["To"] = Address(display_name=_single_line(to_name), addr_spec=_ascii_address(to))
    msg["Date"] = email.utils.format_datetime(clock.now())
    msg["Message-ID"] = message_id or make_message_id(config)
    msg["Subject"] = _single_line(rendered.subject)
    if mail["reply_to"]:
        msg["Reply-To"] = mail["reply_to"]
    msg["List-Id"] = list_id(config)
    msg["List-Unsubscribe"] = f"<{unsubscribe_url}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    if is_bulk:
        msg["Precedence"] = "bulk"
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(rendered.text, cte="quoted-printable")
    msg.add_alternative(rendered.html, subtype="html", cte="quoted-printable")
    return msg


def _ascii_address(address: str) -> str:
    """The address with an IDN domain in its xn-- form: headers and SMTP envelopes must stay ASCII."""
    if address.isascii():
        return address
    return validate_email(address, check_deliverability=False).ascii_email or address


def _single_line(value: str) -> str:
    """Header values never carry CR or LF: that is how header injection works."""
    return " ".join(value.replace("\r", " ").replace("\n", " ").split())
