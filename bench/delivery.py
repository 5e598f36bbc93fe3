"""Delivery benchmark (not a test): how fast the worker drains the outbox, beside plain smtplib.

Starts Postfix's smtp-sink on loopback, queues N messages of about 10 KB in a temporary SQLite
database, drains them through the worker's SMTP backend, then sends the same prebuilt bytes with
plain smtplib over one connection (the reference), then drains them again into a Maildir.

    python bench/delivery.py [--n 2000] [--size 10240]
"""

from __future__ import annotations

import argparse
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import select, update  # noqa: E402

from mailer import clock, config as config_module, db, emails, migrate  # noqa: E402
from mailer.outbox import backends  # noqa: E402
from mailer.outbox.models import OutboxMessage, OutboxState  # noqa: E402
from mailer.outbox.operations import enqueue  # noqa: E402
from mailer.outbox.worker import run_once  # noqa: E402

SMTP_SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
PARAGRAPH = ("Two dead and at least 40 detained as the purge resumes. Sign the petition, donate to the "
             "network, write to your representative. ")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def smtp_sink(port: int):
    """smtp-sink on 127.0.0.1:port with a backlog of 1000 (as root it must drop to `nobody`)."""
    process = subprocess.Popen([SMTP_SINK, "-u", "nobody", f"127.0.0.1:{port}", "1000"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"smtp-sink did not start: {process.stderr.read().decode()}")
                time.sleep(0.05)
        yield
    finally:
        process.terminate()
        process.wait(10)


def make_config(folder: Path, port: int, backend: str) -> config_module.Config:
    return config_module.load(path=None, environ={}, overrides={
        "site": {"secret_key": "bench", "base_url": "https://news.example.org",
                 "postal_address": "1 Example Street, London"},
        "database": {"url": f"sqlite:///{folder / 'bench.db'}"},
        "mail": {"backend": backend, "maildir": str(folder / "mail"), "from_address": "updates@news.example.org",
                 "return_path": "bounces+{token}@news.example.org"},
        "mail.smtp": {"host": "127.0.0.1", "port": port},
        "scheduler": {"enabled": False},
    })


def queue(config, count: int, size: int) -> None:
    """`count` messages of about `size` bytes, each built and queued as the app does."""
    half = max(size // 2 - 700, 0)  # headers, MIME parts and quoted-printable take the rest
    text = (PARAGRAPH * (half // len(PARAGRAPH) + 1))[:half]
    unsubscribe = "https://news.example.org/unsubscribe/token"
    rendered = emails.Rendered(subject="Accidentally Alex update", text=text + "\n" + unsubscribe,
                               html=f"<p>{text}</p><a href=\"{unsubscribe}\">Unsubscribe</a>")
    with db.session.session_factory.begin() as session:
        for i in range(count):
            message = emails.build(config, to=f"reader{i}@example.org", rendered=rendered,
                                   unsubscribe_url=unsubscribe)
            enqueue(session, kind="bench", message=message, dedupe_key=f"bench:{i}")


def requeue() -> None:
    with db.session.session_factory.begin() as session:
        session.execute(update(OutboxMessage).values(state=OutboxState.queued, next_attempt_at=clock.now(),
                                                     sent_at=None, attempts=0))


def drain(config) -> tuple[float, int]:
    backend = backends.from_config(config)
    started = time.perf_counter()
    tally = run_once(config, backend)
    backend.close()
    return time.perf_counter() - started, tally.sent


def plain_smtplib(port: int) -> tuple[float, int]:
    """The reference: the same bytes, no database, one connection."""
    with db.session.session_factory() as session:
        messages = [(row.recipient, row.content) for row in session.scalars(select(OutboxMessage))]
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as conn:
        for recipient, content in messages:
            conn.sendmail("updates@news.example.org", [recipient], content)
    return time.perf_counter() - started, len(messages)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="messages to send (default 2000)")
    parser.add_argument("--size", type=int, default=10240, help="approximate message size in bytes")
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="mailer-bench-") as tmp, smtp_sink(port):
        folder = Path(tmp)
        smtp_config = make_config(folder, port, "smtp")
        engine = db.make_engine(smtp_config["database"]["url"])
        migrate.upgrade(engine)
        db.bind(engine)

        started = time.perf_counter()
        queue(smtp_config, args.n, args.size)
        queued_in = time.perf_counter() - started
        with db.session.session_factory() as session:
            sizes = [len(c) for c in session.scalars(select(OutboxMessage.content).limit(1))]

        worker_s, worker_n = drain(smtp_config)
        smtplib_s, smtplib_n = plain_smtplib(port)
        requeue()
        maildir_s, maildir_n = drain(make_config(folder, port, "maildir"))
        engine.dispose()

    rate = {name: n / s for name, (s, n) in
            {"worker": (worker_s, worker_n), "smtplib": (smtplib_s, smtplib_n),
             "maildir": (maildir_s, maildir_n)}.items()}
    print(f"{args.n} messages of {sizes[0]} bytes; queued (build + insert) at {args.n / queued_in:,.0f} msg/s")
    print(f"worker, SMTP backend -> smtp-sink : {worker_n:>6} sent in {worker_s:6.2f} s = {rate['worker']:8,.0f} msg/s")
    print(f"plain smtplib, one connection     : {smtplib_n:>6} sent in {smtplib_s:6.2f} s = {rate['smtplib']:8,.0f} msg/s")
    print(f"worker / smtplib                  : {rate['worker'] / rate['smtplib']:.2f}")
    print(f"worker, Maildir backend           : {maildir_n:>6} sent in {maildir_s:6.2f} s = {rate['maildir']:8,.0f} msg/s")
    if worker_n != args.n or maildir_n != args.n:
        raise SystemExit("not every message was delivered")


if __name__ == "__main__":
    main()
