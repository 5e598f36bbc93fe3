"""Delivery backends: a small protocol with Maildir, SMTP and in-memory implementations.

The worker knows nothing else about where mail goes; config picks the backend.
"""

from __future__ import annotations

import logging
import mailbox
import re
import smtplib
import ssl
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable, Protocol, Sequence

from mailer import clock
from mailer.config import Config

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Envelope:
    """What a backend needs: who it is from (the envelope sender), to whom, and the bytes."""

    outbox_id: int
    mail_from: str
    rcpt_to: str
    content: bytes


@dataclass(frozen=True)
class Result:
    """What became of one envelope."""

    outbox_id: int
    is_sent: bool
    is_permanent: bool = False  # a 5xx: do not retry
    error: str = ""
    # The relay refused the recipient for good (5xx at RCPT): the address is dead, suppress it.
    is_bounce: bool = False
    # Not offered to the relay at all (the reader unsubscribed or was erased since it was queued).
    is_withdrawn: bool = False
    # The relay could not be reached (or refused our login): the next messages would fare the same.
    is_connection_error: bool = False
    # The relay turned the whole session away (421, service not available) rather than this message.
    is_session_refused: bool = False


class Backend(Protocol):
    def send(self, batch: Sequence[Envelope]) -> list[Result]:
        """Hand each envelope over; one Result per envelope. A message's fate is a Result, not an exception."""

    def close(self) -> None:
        """Let go of connections; the backend may be used again afterwards."""


class MaildirBackend:
    """Writes each message as a file in a Maildir (new/) that any mail client can open."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._box = mailbox.Maildir(str(self.path), create=True)

    def send(self, batch: Sequence[Envelope]) -> list[Result]:
        results = []
        for env in batch:
            try:
                # The envelope as headers a client can read, as a local delivery agent writes them.
                # The bytes go in as they are (LF line ends, the on-disk convention): parsing and
                # re-serialising would cost more than the write and could refold DKIM-signed headers.
                prefix = f"Return-Path: <{env.mail_from}>\nDelivered-To: {env.rcpt_to}\n".encode()
                self._box.add(prefix + env.content.replace(b"\r\n", b"\n"))
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


class Pacer:
    """Spaces messages at least 1/`rate_per_second` seconds apart (0 = unlimited).

    `delay` is a pure function of the times given, so it is tested without sleeping. After an idle spell
    the next message goes at once, but a burst never runs faster than the rate.
    """

    def __init__(self, rate_per_second: int):
        self.interval = 1.0 / rate_per_second if rate_per_second > 0 else 0.0
        self.next_at: float | None = None
        self._lock = threading.Lock()

    def delay(self, now: float) -> float:
        """Seconds to wait at monotonic time `now` before the next message may go."""
        if self.next_at is None:
            return 0.0
        return max(0.0, self.next_at - now)

    def note_sent(self, now: float) -> None:
        """A message went at `now`: the next may go one interval later."""
        self.next_at = max(self.next_at or now, now) + self.interval

    def reserve(self, now: float) -> float:
        """Take the next slot for a message about to go at `now`; return how long to wait for it.

        Safe across the connections of one worker sharing this pacer: together they keep the rate.
        """
        if not self.interval:
            return 0.0
        with self._lock:
            slot = max(self.next_at or now, now)
            self.next_at = slot + self.interval
        return slot - now


# A connection idle this long is checked with a NOOP before the next message: relays hang up on idle ones.
IDLE_CHECK_SECONDS = 5


class SMTPBackend:
    """Real SMTP: one connection reused across batches, STARTTLS or implicit TLS, optional AUTH.

    `section` is the config table of the relay: `mail.smtp`, or `mail.smtp_fallback` for the second one.
    """

    def __init__(self, config: Config, pacer: Pacer | None = None, section: str = "mail.smtp"):
        self.settings = config[section]
        # One pacer for every connection of a worker: the rate limit is the relay's, not a connection's.
        self.pacer = pacer or Pacer(self.settings["rate_per_second"])
        self._conn: smtplib.SMTP | None = None
        self._last_used = 0.0

    def _tls_context(self) -> ssl.SSLContext:
        # ca_file: trust a relay whose certificate a private CA (or the relay itself) signed.
        return ssl.create_default_context(cafile=self.settings["ca_file"] or None)

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        if s["security"] == "tls":
            conn: smtplib.SMTP = smtplib.SMTP_SSL(s["host"], s["port"], timeout=s["timeout"],
                                                  context=self._tls_context())
        else:
            conn = smtplib.SMTP(s["host"], s["port"], timeout=s["timeout"])
        try:
            if s["security"] == "starttls":
                conn.starttls(context=self._tls_context())
            if s["username"]:
                conn.login(s["username"], s["password"])
        except BaseException:
            conn.close()
            raise
        return conn

    def send(self, batch: Sequence[Envelope]) -> list[Result]:
        self._drop_if_stale()
        return _send_each(batch, self._deliver)

    def _deliver(self, env: Envelope) -> Result:
        """One message; a connection kept from before that dies under it is replaced once."""
        kept = self._conn is not None
        if not kept:
            failed = self._open()
            if failed:
                return replace(failed, outbox_id=env.outbox_id)
        wait = self.pacer.reserve(time.monotonic())
        if wait:
            time.sleep(wait)
        result, broken = self._send_one(env)
        if broken and kept:  # the connection we kept died under it: once more on a new one
            failed = self._open()
            result = replace(failed, outbox_id=env.outbox_id) if failed else self._send_one(env)[0]
        self._last_used = time.monotonic()
        return result

    def _open(self) -> Result | None:
        """Connect; a Result saying why not when the relay cannot be reached or refuses us."""
        try:
            self._conn = self._connect()
        except (smtplib.SMTPException, OSError) as exc:
            return Result(0, False, False, _describe(exc), is_connection_error=True)
        return None

    def _drop_if_stale(self) -> None:
        # Relays hang up on a connection left idle between passes; a NOOP after an idle spell finds
        # out, so the next message is not deferred for a retry because of it.
        if self._conn is None or time.monotonic() - self._last_used < IDLE_CHECK_SECONDS:
            return
        try:
            code, _ = self._conn.noop()
        except (smtplib.SMTPException, OSError):
            code = 0
        if code != 250:
            self.close()

    def _send_one(self, env: Envelope) -> tuple[Result, bool]:
        """The message's result, and whether the connection broke under it (closed then)."""
        assert self._conn is not None
        try:
            refused = self._conn.sendmail(env.mail_from, [env.rcpt_to], env.content)
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = exc.recipients.get(env.rcpt_to, (0, b""))
            return _refusal(env, code, text), False
        except smtplib.SMTPResponseException as exc:
            self._reset_after_error()
            return Result(env.outbox_id, False, 500 <= exc.smtp_code < 600, _reply(exc.smtp_code, exc.smtp_error),
                          is_session_refused=exc.smtp_code == SERVICE_NOT_AVAILABLE), False
        except (smtplib.SMTPException, OSError) as exc:  # the connection broke (mid-DATA, say)
            self.close()
            return Result(env.outbox_id, False, False, _describe(exc)), True
        if refused:
            return _refusal(env, *refused[env.rcpt_to]), False
        return Result(env.outbox_id, True), False

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
                self._conn.close()
            self._conn = None


# The reply a relay gives when it closes the session (RFC 5321 4.2.3): about the relay, never the recipient.
SERVICE_NOT_AVAILABLE = 421


def _send_each(batch: Sequence[Envelope], deliver: Callable[[Envelope], Result]) -> list[Result]:
    """Each envelope through `deliver`, until a connection error: the relay is down, distrusted or
    refuses our login. Nothing is wrong with the messages then, so the rest of the batch gets the same
    result and waits for a retry while someone fixes it."""
    results: list[Result] = []
    for index, env in enumerate(batch):
        result = deliver(env)
        results.append(result)
        if result.is_connection_error:
            results.extend(replace(result, outbox_id=e.outbox_id) for e in batch[index + 1:])
            break
    return results


def _refusal(env: Envelope, code: int, text: bytes | str) -> Result:
    permanent = 500 <= code < 600
    return Result(env.outbox_id, False, permanent, _reply(code, text), is_bounce=permanent,
                  is_session_refused=code == SERVICE_NOT_AVAILABLE)


def _reply(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {text}".strip()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        return "smtp: " + _reply(exc.smtp_code, exc.smtp_error)
    return f"smtp: {exc.__class__.__name__}: {exc}"


# An address in a relay's reply (a 421 at RCPT may quote the recipient): the log never carries one.
_ADDRESS = re.compile(r"<?[^\s<>@]+@[^\s<>]+>?")


class RelaySwitch:
    """Which relay a worker's connections hand mail to: the primary, or the fallback while the primary
    refuses us. One per worker, shared by its connections, so the switch is logged once, not once per
    message or connection, and one connection at a time tries the primary again."""

    def __init__(self, primary: str, fallback: str, retry_primary: timedelta):
        self.primary, self.fallback, self.retry_primary = primary, fallback, retry_primary
        self._lock = threading.Lock()
        self._primary_down_until: datetime | None = None  # None: the primary is in use
        self.refusal = ""  # why the primary last refused us

    @classmethod
    def from_config(cls, config: Config) -> "RelaySwitch":
        primary, fallback = config["mail.smtp"], config["mail.smtp_fallback"]
        return cls(f"{primary['host']}:{primary['port']}", f"{fallback['host']}:{fallback['port']}",
                   timedelta(seconds=fallback["retry_primary_seconds"]))

    def use_primary(self) -> bool:
        """Whether the next message goes to the primary. Once the wait is over, the caller that asks
        first tries the primary; the others keep to the fallback until it has answered."""
        with self._lock:
            if self._primary_down_until is None:
                return True
            now = clock.now()
            if now < self._primary_down_until:
                return False
            self._primary_down_until = now + self.retry_primary
            return True

    def primary_refused(self, reason: str) -> None:
        with self._lock:
            was_in_use = self._primary_down_until is None
            self._primary_down_until = clock.now() + self.retry_primary
            self.refusal = reason
        if was_in_use:
            log.warning("relay %s refused us (%s): sending through the fallback relay %s, trying %s again "
                        "every %d s", self.primary, _ADDRESS.sub("<address>", reason), self.fallback, self.primary,
                        self.retry_primary.total_seconds())

    def primary_answered(self) -> None:
        with self._lock:
            was_down = self._primary_down_until is not None
            self._primary_down_until = None
        if was_down:
            log.info("relay %s answers again: sending through it, no longer through %s",
                        self.primary, self.fallback)


def is_relay_refusal(result: Result) -> bool:
    """The relay, not the message or its recipient, is why it was not sent: another relay may take it."""
    return result.is_connection_error or result.is_session_refused


class FailoverBackend:
    """One connection's worth of sending to the primary relay, handing a message to the fallback relay
    when the primary cannot be reached, fails TLS, refuses our login or closes the session (421).

    A recipient the primary refuses (550 no such user, 452 mailbox full) is the recipient's fate, not
    the relay's: that result stands and the fallback never sees the message.
    """

    def __init__(self, primary: SMTPBackend, fallback: SMTPBackend, switch: RelaySwitch):
        self.primary, self.fallback, self.switch = primary, fallback, switch

    def send(self, batch: Sequence[Envelope]) -> list[Result]:
        return _send_each(batch, self._deliver)  # a connection error here: both relays refused us

    def _deliver(self, env: Envelope) -> Result:
        primary_error = ""
        if self.switch.use_primary():
            [result] = self.primary.send([env])
            if not is_relay_refusal(result):
                self.switch.primary_answered()
                self.fallback.close()  # back on the primary: no idle connection kept to the fallback
                return result
            self.primary.close()
            self.switch.primary_refused(result.error)
            primary_error = result.error
        [result] = self.fallback.send([env])
        # Both refused (the primary now, or a moment ago for another connection): the primary's reason
        # first, so the worker's log counts it as the relay's error, and every row says the same.
        primary_error = primary_error or self.switch.refusal
        if is_relay_refusal(result) and primary_error:
            result = replace(result, error=f"{primary_error}; fallback relay: {result.error}")
        return result

    def close(self) -> None:
        self.primary.close()
        self.fallback.close()


def _smtp_pool(config: Config, connections: int) -> list[Backend]:
    """`connections` SMTP backends sharing one rate limit per relay (and, with a fallback relay, one switch)."""
    pacer = Pacer(config["mail.smtp"]["rate_per_second"])
    primaries = [SMTPBackend(config, pacer) for _ in range(max(1, connections))]
    fallback = config["mail.smtp_fallback"]
    if not fallback["host"]:
        return list(primaries)
    fallback_pacer = Pacer(fallback["rate_per_second"])
    switch = RelaySwitch.from_config(config)
    return [FailoverBackend(primary, SMTPBackend(config, fallback_pacer, "mail.smtp_fallback"), switch)
            for primary in primaries]


def from_config(config: Config) -> Backend:
    """The backend `mail.backend` names, signing with DKIM when `[dkim]` is set."""
    from mailer.outbox import signing

    backend: Backend = _smtp_pool(config, 1)[0] if config["mail"]["backend"] == "smtp" else \
        MaildirBackend(config["mail"]["maildir"])
    signer = signing.from_config(config)
    return signing.SigningBackend(backend, signer) if signer else backend


def pool_from_config(config: Config) -> list[Backend]:
    """One backend per connection a worker sends over at once: `mail.smtp.connections` for SMTP,
    sharing one rate limit (each able to fall back to `[mail.smtp_fallback]` when that is set); one for
    Maildir (a local disk gains nothing from more)."""
    from mailer.outbox import signing

    if config["mail"]["backend"] == "smtp":
        pool: list[Backend] = _smtp_pool(config, config["mail.smtp"]["connections"])
    else:
        pool = [MaildirBackend(config["mail"]["maildir"])]
    signer = signing.from_config(config)
    return [signing.SigningBackend(backend, signer) for backend in pool] if signer else pool

