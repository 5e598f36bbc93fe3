"""Delivery backends: a small protocol with Maildir, SMTP and in-memory implementations.

The worker knows nothing else about where mail goes; config picks the backend.
"""

from __future__ import annotations

import mailbox
import smtplib
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, Sequence

from mailer.config import Config


@dataclass(frozen=True)
class Envelope:
    """What a backend needs: who it is from (the envelope sender), to whom, and the bytes."""

    outbox_id: int
    mail_from: str
    rcpt_to: str
    content: bytes


@dataclass(frozen=True)
class Result:
    outbox_id: int
    is_sent: bool
    is_permanent: bool = False  # a 5xx: do not retry; a bounce
    error: str = ""


class Backend(Protocol):
    def send(self, batch: Sequence[Envelope]) -> list[Result]: ...

    def close(self) -> None: ...


class MaildirBackend:
    """Writes each message as a file in a Maildir (new/) that any mail client can open."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._box = mailbox.Maildir(str(self.path), create=True)

    def send(self, batch: Sequence[Envelope]) -> list[Result]:
        results = []
        for env in batch:
            try:
                # Maildir wants the envelope recipient and return path as headers a client can read.
                prefix = f"Return-Path: <{env.mail_from}>\r\nDelivered-To: {env.rcpt_to}\r\n".encode()
                self._box.add(mailbox.MaildirMessage(prefix + env.content))
            except OSError as exc:
                results.append(Result(env.outbox_id, False, False, f"maildir: {exc}"))
            else:
                results.append(Result(env.outbox_id, True))
        return results

    def close(self) -> None:
        pass


@dataclass
class MemoryBackend:
    """Keeps messages in a list; for unit tests of composition and the worker's bookkeeping."""

    sent: list[Envelope] = field(default_factory=list)

    def send(self, batch: Sequence[Envelope]) -> list[Result]:
        self.sent.extend(batch)
        return [Result(env.outbox_id, True) for env in batch]

    def close(self) -> None:
        pass


class SMTPBackend:
    """Real SMTP: one connection reused across a batch, STARTTLS or implicit TLS, optional AUTH."""

    def __init__(self, config: Config):
        self.settings = config["mail.smtp"]
        self._conn: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        context = ssl.create_default_context()
        if s["security"] == "tls":
            conn: smtplib.SMTP = smtplib.SMTP_SSL(s["host"], s["port"], timeout=s["timeout"], context=context)
        else:
            conn = smtplib.SMTP(s["host"], s["port"], timeout=s["timeout"])
            if s["security"] == "starttls":
                conn.starttls(context=context)
        if s["username"]:
            conn.login(s["username"], s["password"])
        return conn

    def send(self, batch: Sequence[Envelope]) -> list[Result]:
        results = []
        for env in batch:
            try:
                if self._conn is None:
                    self._conn = self._connect()
                refused = self._conn.sendmail(env.mail_from, [env.rcpt_to], env.content)
            except smtplib.SMTPRecipientsRefused as exc:
                code, text = exc.recipients.get(env.rcpt_to, (0, b""))
                results.append(Result(env.outbox_id, False, 500 <= code < 600, _reply(code, text)))
            except smtplib.SMTPResponseException as exc:
                results.append(Result(env.outbox_id, False, 500 <= exc.smtp_code < 600,
                                      _reply(exc.smtp_code, exc.smtp_error)))
                self._reset_after_error()
            except (smtplib.SMTPException, OSError, socket.timeout) as exc:
                results.append(Result(env.outbox_id, False, False, f"smtp: {exc.__class__.__name__}: {exc}"))
                self.close()
            else:
                if refused:
                    code, text = refused[env.rcpt_to]
                    results.append(Result(env.outbox_id, False, 500 <= code < 600, _reply(code, text)))
                else:
                    results.append(Result(env.outbox_id, True))
        return results

    def _reset_after_error(self) -> None:
        try:
            if self._conn is not None:
                self._conn.rset()
        except (smtplib.SMTPException, OSError):
            self.close()

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.quit()
            except (smtplib.SMTPException, OSError):
                pass
            self._conn = None


def _reply(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {text}".strip()


def from_config(config: Config) -> Backend:
    """The backend `mail.backend` names."""
    if config["mail"]["backend"] == "smtp":
        return SMTPBackend(config)
    return MaildirBackend(config["mail"]["maildir"])
