"""Rendering mail from `.txt` + `.html` template pairs and building RFC 5322 messages with the list headers.

Rendering is pure: templates, context and site settings in; subject, text and inlined HTML out.
"""

from __future__ import annotations

import binascii
import email.policy
import email.utils
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from email.header import Header
from email.headerregistry import Address, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from functools import lru_cache
from pathlib import Path

import css_inline
from email_validator import validate_email
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from mailer import clock
from mailer.config import Config

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"



class WireHeader(UnstructuredHeader):
    """A header whose value we write in its wire form (List-Id, List-Unsubscribe): ASCII, any encoded
    words already in place. Folded at spaces only.

    The stdlib treats these as text: it RFC 2047-encodes a List-Unsubscribe line longer than 78
    characters (`=?utf-8?q?=3Chttps...`), which no mail provider decodes in a URL header, so one-click
    unsubscribe would be lost; and it encodes a non-ASCII List-Id name from inside its quotes.
    """

    @classmethod
    def parse(cls, value, kwds):
        super().parse(value, kwds)
        kwds["decoded"] = value  # as given: decoding the encoded words would only have them encoded again

    def fold(self, *, policy) -> str:
        return _fold_at_spaces(self.name, str(self), policy)


class SubjectHeader(UnstructuredHeader):
    """Subject, folded at the spaces between words when it is plain ASCII.

    The stdlib breaks a subject of 70 to 77 characters straight after "Subject:", and its own parser
    (like some mail clients) then reads a leading space into the subject. Non-ASCII text, and text
    that looks like an encoded word, is left to the stdlib, which encodes it.
    """

    def fold(self, *, policy) -> str:
        value = str(self)
        if not value.isascii() or "=?" in value:
            return super().fold(policy=policy)
        return _fold_at_spaces(self.name, value, policy)


def _fold_at_spaces(name: str, value: str, policy) -> str:
    """`Name: value` folded before a word that would pass the line length, never right after the colon."""
    lines = [f"{name}:"]
    for word in value.split(" "):
        if len(lines[-1]) + 1 + len(word) > policy.max_line_length and lines[-1] != f"{name}:":
            lines.append("")
        lines[-1] += f" {word}"
    return policy.linesep.join(lines) + policy.linesep


def _header_registry() -> HeaderRegistry:
    registry = HeaderRegistry()
    registry.map_to_type("list-id", WireHeader)
    registry.map_to_type("list-unsubscribe", WireHeader)
    registry.map_to_type("subject", SubjectHeader)
    return registry


# SMTP policy: CRLF line ends, and header folding that never lets a value break a header line.
POLICY = email.policy.SMTP.clone(max_line_length=78, header_factory=_header_registry())
# C0 and C1 control characters, CR and LF included.
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


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
    text_template = env.get_template(f"{template}.txt")
    text = text_template.render(**context)
    html = inline_css(env.get_template(f"{template}.html").render(**context))
    # The subject block rendered on its own: cutting the text at its first line break would let a line
    # break inside a value (an article title) end the subject and spill the rest into the body.
    subject_context = text_template.new_context(context)
    subject = "".join(subject_context.blocks["subject"][0](subject_context))
    if not text.startswith(f"Subject: {subject}"):
        raise ValueError(f"templates/emails/{template}.txt must start with a 'Subject: ' line")
    body = text[len(f"Subject: {subject}"):]
    return Rendered(subject=_single_line(subject), text=body.lstrip("\n"), html=html)


def sender_domain(config: Config) -> str:
    return config["mail"]["from_address"].rpartition("@")[2] or "localhost"


def list_id(config: Config) -> str:
    """List-Id (RFC 2919) in its wire form: the site name as a phrase, and a stable identifier under
    the sender's domain. A non-ASCII name becomes encoded words, which may not sit inside quotes."""
    name = _single_line(config.site_name.replace('"', "").replace("\\", ""))
    identifier = f"<updates.{sender_domain(config)}>"
    if name.isascii():
        return f'"{name}" {identifier}'
    return " ".join(Header(name, "utf-8", header_name="List-Id").encode().split()) + f" {identifier}"


def make_message_id(config: Config) -> str:
    return email.utils.make_msgid(domain=sender_domain(config))


# The headers that differ per recipient; BulkMessage fills these in and builds every other one once.
PERSONAL_HEADERS = ("To", "Message-ID", "List-Unsubscribe")


# Feedback-ID's sender field: the same on all our mail, so a mailbox provider's feedback loop groups it.
FEEDBACK_SENDER = "mailer"


def feedback_id(kind: str, send_id: int) -> str:
    """Feedback-ID of a send's mail, e.g. `alert-12:mailer`: Gmail's Postmaster Tools report complaint
    rates per value, so a digest or alert that draws complaints shows up by itself."""
    return f"{kind}-{send_id}:{FEEDBACK_SENDER}"


def _headers(config: Config, *, to: str, to_name: str, subject: str, unsubscribe_url: str,
             message_id: str, is_bulk: bool, feedback: str = "") -> list[tuple[str, object]]:
    """Every header of list mail, in order: one list, so `build` and `BulkMessage` cannot drift apart."""
    mail = config["mail"]
    headers = [
        ("From", Address(display_name=_single_line(config.site_name), addr_spec=mail["from_address"])),
        ("To", Address(display_name=_single_line(to_name), addr_spec=_ascii_address(to))),
        ("Date", email.utils.format_datetime(clock.now())),
        ("Message-ID", message_id),
        ("Subject", _single_line(subject)),
    ]
    if mail["reply_to"]:
        headers.append(("Reply-To", mail["reply_to"]))
    headers += [
        ("List-Id", list_id(config)),
        ("List-Unsubscribe", f"<{unsubscribe_url}>"),
        ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
    ]
    if feedback:
        headers.append(("Feedback-ID", _single_line(feedback)))
    if is_bulk:
        headers.append(("Precedence", "bulk"))
    headers.append(("Auto-Submitted", "auto-generated"))
    return headers


def build(config: Config, *, to: str, to_name: str = "", rendered: Rendered, unsubscribe_url: str,
          message_id: str | None = None, is_bulk: bool = True, feedback: str = "") -> EmailMessage:
    """A multipart/alternative message carrying every header the contract asks of list mail; `feedback`
    is its Feedback-ID (`feedback_id(kind, send_id)` for a send's mail)."""
    msg = EmailMessage(policy=POLICY)
    for name, value in _headers(config, to=to, to_name=to_name, subject=rendered.subject,
                                unsubscribe_url=unsubscribe_url, message_id=message_id or make_message_id(config),
                                is_bulk=is_bulk, feedback=feedback):
        msg[name] = value
    msg.set_content(rendered.text, cte="quoted-printable")
    msg.add_alternative(rendered.html, subtype="html", cte="quoted-printable")
    return msg


@dataclass(frozen=True)
class PreparedMessage:
    """A message as the outbox stores it: the bytes, and the fields its row keeps beside them."""

    recipient: str
    message_id: str
    subject: str
    content: bytes


def prepared(msg: EmailMessage) -> PreparedMessage:
    """A built EmailMessage serialised for the outbox."""
    return PreparedMessage(recipient=msg["To"].addresses[0].addr_spec, message_id=str(msg["Message-ID"]),
                           subject=str(msg["Subject"]), content=msg.as_bytes())


# What BulkMessage writes in To by itself: a dot-atom address, and a name of atoms (written as it
# is), of other printable ASCII (quoted) or of anything else (one encoded word). Anything else,
# and any line longer than 78, goes through the stdlib, as `build` writes it.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9'_-]+(?: [A-Za-z0-9'_-]+)*")
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9_%+-]+(?:\.[A-Za-z0-9_%+-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_MAX_LINE = 78
# Where `set_content` breaks a body into lines: what bytes.splitlines splits at (not str's \v, \f, \x85...).
_LINE_END = re.compile(r"\r\n|\r|\n")


# For a message to one person (a confirmation): nothing to fill in, and the stdlib's build costs
# four times as long (most of a signup's time went there).
NO_SLOTS = re.compile(r"(?!)")


class BulkMessage:
    """One list message for many recipients: built once as bytes, filled in per recipient.

    The stdlib takes milliseconds to build and serialise a message, nearly all of it in header
    parsing and folding. Here every header that is the same for all (From, Date, Subject, List-Id,
    the MIME skeleton...) is folded once; per recipient only To, Message-ID and List-Unsubscribe are
    written. The bodies carry slots (`slot` matches one, its group 1 names the value): lines without
    one are quoted-printable encoded once, lines with one are filled in and encoded per recipient.
    That is exact because quoted-printable encodes each line on its own (soft breaks never cross a
    line end), and a value is filled in before encoding, so a soft break can never split it.
    The result parses into the message `build` makes from the same inputs (the tests prove it);
    Date is the time this was made.
    """

    def __init__(self, config: Config, *, subject: str, text: str, html: str, slot: re.Pattern = NO_SLOTS,
                 is_bulk: bool = True, feedback: str = ""):
        self.config = config
        self.subject = _single_line(subject)
        self._slot = slot
        # Quoted-printable never writes "=_" ("=" is always followed by hex digits or a line end), so
        # a boundary starting with it cannot occur in either body.
        boundary = f"=_{secrets.token_hex(16)}"
        # The headers in `build`'s order: folded bytes, with the name of a personal header where it
        # goes (the values given here for those are never written).
        self._headers: list[bytes | str] = []
        for name, value in _headers(config, to="reader@example.org", to_name="", subject=self.subject,
                                    unsubscribe_url="", message_id="", is_bulk=is_bulk, feedback=feedback):
            if name in PERSONAL_HEADERS:
                self._headers.append(name)
            elif self._headers and isinstance(self._headers[-1], bytes):
                self._headers[-1] += _fold(name, value)
            else:
                self._headers.append(_fold(name, value))
        part = "Content-Type: text/{}; charset=\"utf-8\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        # The body: encoded bytes, with the lines still to fill in (str) where they go.
        self._body: list[bytes | str] = [
            _fold("MIME-Version", "1.0") + _fold("Content-Type", f'multipart/alternative; boundary="{boundary}"')
            + f"\r\n--{boundary}\r\n".encode() + part.format("plain").encode()]
        self._add_body(text)
        self._body.append(f"\r\n--{boundary}\r\n".encode() + part.format("html").encode())
        self._add_body(html)
        self._body.append(f"\r\n--{boundary}--\r\n".encode())

    def _add_body(self, body: str) -> None:
        """Split `body` into runs of lines with and without slots; encode the runs without one now."""
        lines = _LINE_END.split(body)
        if len(lines) > 1 and not lines[-1]:  # a final line end ends the last line, it starts none
            lines.pop()
        runs: list[tuple[bool, list[str]]] = []
        for line in lines:
            has_slot = self._slot.search(line) is not None
            if runs and runs[-1][0] == has_slot:
                runs[-1][1].append(line)
            else:
                runs.append((has_slot, [line]))
        for has_slot, run in runs:
            block = "\r\n".join(run) + "\r\n"
            self._body.append(block if has_slot else _quoted_printable(block))

    def personal(self, *, to: str, to_name: str = "", unsubscribe_url: str, values: Callable[[str], str],
                 message_id: str | None = None) -> PreparedMessage:
        """The message for one recipient; `values(name)` fills each slot in the bodies."""
        address = _ascii_address(to)
        message_id = message_id or make_message_id(self.config)
        personal = {
            "To": _to_header(address, _single_line(to_name)),
            "Message-ID": _short_header("Message-ID", message_id),
            "List-Unsubscribe": _list_unsubscribe(unsubscribe_url),
        }

        def fill(match: re.Match) -> str:
            return values(match.group(1))

        content = b"".join([personal[h] if isinstance(h, str) else h for h in self._headers]
                           + [_quoted_printable(self._slot.sub(fill, b)) if isinstance(b, str) else b
                              for b in self._body])
        return PreparedMessage(recipient=address, message_id=message_id, subject=self.subject, content=content)


def _fold(name: str, value: object) -> bytes:
    """One header as the stdlib writes it under POLICY (encoded words, folding), in bytes."""
    return POLICY.header_factory(name, value).fold(policy=POLICY).encode("ascii")


def _short_header(name: str, value: str) -> bytes:
    line = f"{name}: {value}\r\n"
    if len(line) - 2 <= _MAX_LINE and value.isascii():
        return line.encode("ascii")
    return _fold(name, value)


def _list_unsubscribe(url: str) -> bytes:
    """What WireHeader writes, without the stdlib's header parsing (per recipient, that is the cost)."""
    if url.isascii():
        return f"List-Unsubscribe: <{url}>\r\n".encode("ascii")
    return _fold("List-Unsubscribe", f"<{url}>")


def _to_header(address: str, name: str) -> bytes:
    """To, written directly when that is simple (an atom name, a quoted name, one encoded word for a
    non-ASCII name, a dot-atom address, one short line); anything else the stdlib folds."""
    if _PLAIN_ADDRESS.fullmatch(address):
        if not name:
            line = f"To: {address}\r\n"
        elif _PLAIN_NAME.fullmatch(name):
            line = f"To: {name} <{address}>\r\n"
        elif "=?" in name:  # the stdlib's parser decodes encoded words even inside quotes
            line = ""
        elif name.isascii() and name.isprintable():
            quoted = name.replace("\\", "\\\\").replace('"', '\\"')
            line = f'To: "{quoted}" <{address}>\r\n'
        else:
            line = f"To: =?utf-8?b?{binascii.b2a_base64(name.encode(), newline=False).decode()}?= <{address}>\r\n"
        if line and len(line) - 2 <= _MAX_LINE:
            return line.encode("ascii")
    return _fold("To", Address(display_name=name, addr_spec=address))


def _quoted_printable(lines: str) -> bytes:
    """Whole lines, each ending in CRLF, encoded as `set_content(cte="quoted-printable")` does (UTF-8).

    binascii (C) keeps the CRLF line ends and encodes anything else that could pass for one.
    """
    return binascii.b2a_qp(lines.encode("utf-8"), istext=True)


def _ascii_address(address: str) -> str:
    """The address with an IDN domain in its xn-- form: headers and SMTP envelopes must stay ASCII."""
    if address.isascii():
        return address
    local, _, domain = address.rpartition("@")
    if local.isascii():
        return f"{local}@{_ascii_domain(domain)}"
    return validate_email(address, check_deliverability=False).ascii_email or address


@lru_cache(maxsize=4096)
def _ascii_domain(domain: str) -> str:
    """A domain's xn-- form; remembered, as a list's readers share a few domains and IDNA is slow."""
    return validate_email(f"postmaster@{domain}", check_deliverability=False).ascii_domain


def _single_line(value: str) -> str:
    """Header values never carry CR or LF (that is how header injection works), nor any other control
    character: NUL breaks SMTP, ESC reaches terminals that show mail."""
    return " ".join(_CONTROL_CHARACTERS.sub(" ", value).split())
