"""A relay for fault drills: aiosmtpd on 127.0.0.1 whose behaviour a test switches while real
`mailer worker` processes talk to it, and which keeps every message it accepted (RCPT and
Message-ID) so duplicates can be counted.

Faults, each switched on from the test's thread:
- `defer_mail(n)`: the next n transactions get `421` at MAIL FROM (the relay is closing the
  connection: smtplib hangs up on a 421);
- `defer_rcpt(n)`: the next n recipients get `451` (try later);
- `refuse(address)`: that recipient gets `550` every time;
- `slow(seconds)`: each message waits that long after its final dot before the relay accepts it
  (several connections wait side by side, as a real relay's do);
- `drop_data(n)`: the next n messages are cut off after their final dot, without a reply (the
  relay hung up mid-DATA, and did not keep the message);
- `down()` / `up()`: the port closed, then listening again on the same port.
"""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass

from aiosmtpd.controller import Controller

DEFER_MAIL = "421 4.3.2 System not accepting network messages, try later"
DEFER_RCPT = "451 4.3.0 Try again later"
REFUSE = "550 5.1.1 No such user here"


@dataclass(frozen=True)
class Delivery:
    """One message the relay accepted: to whom, its Message-ID and envelope sender."""

    rcpt_to: str
    message_id: str
    mail_from: str


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Handler:
    """aiosmtpd's hooks, reading the relay's switches under its lock."""

    def __init__(self, relay: "Relay"):
        self.relay = relay

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.relay._take("mail"):
            return DEFER_MAIL
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with self.relay._lock:
            refused = self.relay._refused.get(address)
        if refused:
            return refused
        if self.relay._take("rcpt"):
            return DEFER_RCPT
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.relay._take("data"):
            # Gone before the reply: the sender cannot know whether the message arrived (here it did not).
            server.transport.abort()
            return "421 4.4.2 Connection dropped"
        delay = self.relay._delay
        if delay:
            await asyncio.sleep(delay)
        headers = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(envelope.original_content)
        message_id = str(headers.get("Message-ID", "")).strip()
        with self.relay._lock:
            for rcpt in envelope.rcpt_tos:
                self.relay._delivered.append(Delivery(rcpt, message_id, envelope.mail_from))
            self.relay._arrived.notify_all()
        return "250 2.0.0 Ok: queued"


class Relay:
    """The drill relay. `host`/`port` stay the same across `down()` and `up()`."""

    def __init__(self):
        self.host = "127.0.0.1"
        self.port = _free_port()
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._delivered: list[Delivery] = []
        self._refused: dict[str, str] = {}
        self._pending = {"mail": 0, "rcpt": 0, "data": 0}
        self.faults_answered = Counter()  # how many times each fault fired
        self._delay = 0.0
        self._controller: Controller | None = None

    # ---- switches -----------------------------------------------------------------------------

    def up(self) -> None:
        """Listen (again) on the relay's port."""
        if self._controller is not None:
            return
        deadline = time.monotonic() + 10
        while True:
            controller = Controller(_Handler(self), hostname=self.host, port=self.port, ready_timeout=30)
            try:
                controller.start()
            except OSError:  # the port still held by the last listener's closing socket
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
                continue
            self._controller = controller
            return

    def down(self) -> None:
        """Close the port: connections are refused until `up()`."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def defer_mail(self, count: int) -> None:
        self._add("mail", count)

    def defer_rcpt(self, count: int) -> None:
        self._add("rcpt", count)

    def drop_data(self, count: int) -> None:
        self._add("data", count)

    def refuse(self, address: str, reply: str = REFUSE) -> None:
        with self._lock:
            self._refused[address] = reply

    def slow(self, seconds: float) -> None:
        self._delay = seconds

    def _add(self, fault: str, count: int) -> None:
        with self._lock:
            self._pending[fault] += count

    def _take(self, fault: str) -> bool:
        with self._lock:
            if self._pending[fault] <= 0:
                return False
            self._pending[fault] -= 1
            self.faults_answered[fault] += 1
            return True

    # ---- what arrived -------------------------------------------------------------------------

    @property
    def delivered(self) -> list[Delivery]:
        with self._lock:
            return list(self._delivered)

    def copies(self) -> Counter:
        """Recipient -> how many messages the relay accepted for them."""
        return Counter(d.rcpt_to for d in self.delivered)

    def duplicates(self) -> int:
        """Messages accepted more than once (same recipient, same Message-ID), counting the extra copies."""
        delivered = self.delivered
        return len(delivered) - len({(d.rcpt_to, d.message_id) for d in delivered})

    def wait_for(self, count: int, timeout: float) -> bool:
        """Wait until at least `count` messages have arrived; False if `timeout` seconds pass first."""
        with self._arrived:
            return self._arrived.wait_for(lambda: len(self._delivered) >= count, timeout)
