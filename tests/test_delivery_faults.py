"""Fault drills for the delivery engine (issue 7), each on SQLite and on PostgreSQL.

The product is driven only as a user drives it: the digest is queued with `mailer digests compose
--send-now` (in process, through the CLI), delivery is real `mailer worker` processes configured by
`MAILER_<SECTION>_<KEY>` variables, and mail goes over SMTP to tests/relay.py, which can defer,
refuse, stall, hang up or be down, and which counts every copy it accepted. What a drill checks is
what a user would notice: who got the mail and how many times, and what the ledger (the outbox
rows' state and attempts, the suppressions) says happened.

Time is moved, never waited for: `tests.mailer_later` runs a command with the one clock ahead,
so a back-off or a lease has run out. The few waits below are bounded, and each bound is far above
what the step needs, or far below what the wrong behaviour takes (a stop has to come before the
relay, at its fixed pace, could possibly have taken the rest of the queue).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text

from mailer import db as db_module
from mailer.db import make_engine
from tests.relay import Relay

ROOT = Path(__file__).resolve().parent.parent
SECRET = "test-secret"
# Far longer than any step needs on a loaded 2-core machine; reaching one is a failure, not a measurement.
PATIENCE = 90
# A clean stop finishes the messages on the wire, records every result and exits "within a few seconds".
STOP_WITHIN = 8
HOUR = 3600
DAY = 24 * HOUR

ARTICLE = """\
---
title: Drill news
summary: What the fault drills send.
topics: [drills]
---
Meet at noon by the river.

Sign the petition: https://example.org/petition
"""


def readers(count: int) -> list[str]:
    return [f"reader{i:03d}@example.org" for i in range(count)]


@dataclass(frozen=True)
class Row:
    recipient: str
    state: str
    attempts: int


@pytest.fixture
def relay():
    relay = Relay()
    relay.up()
    yield relay
    relay.down()


@pytest.fixture
def queue_digest(runner, tmp_path, database_url):
    """Queue a digest to `addresses` (confirmed, following the one topic) the way an editor does."""

    def queue(addresses: list[str]) -> None:
        article = tmp_path / "drill-news.md"
        article.write_text(ARTICLE)
        result = runner.invoke(["articles", "import", str(article)])
        assert result.exit_code == 0, result.output
        people = tmp_path / "readers.csv"
        people.write_text("email\n" + "".join(f"{a}\n" for a in addresses))
        result = runner.invoke(["subscribers", "import", str(people), "--confirmed", "--topics", "drills"])
        assert result.exit_code == 0, result.output
        result = runner.invoke(["digests", "compose", "--send-now"])
        assert result.exit_code == 0, result.output
        db_module.session.remove()  # the test's own transaction ends: SQLite has one writer at a time
        engine = make_engine(database_url)
        with engine.connect() as conn:
            queued = conn.scalar(text("SELECT count(*) FROM outbox WHERE send_id IS NOT NULL"))
        engine.dispose()
        assert queued == len(addresses)

    return queue


class Deployment:
    """`mailer worker` processes of one instance: the test's database, SMTP to the drill relay."""

    def __init__(self, database_url: str, directory: Path, relay: Relay, settings: dict[str, str]):
        self.database_url, self.directory, self.relay = database_url, directory, relay
        self.settings = settings
        self.engine = make_engine(database_url)
        self.processes: list[subprocess.Popen] = []

    def environ(self) -> dict[str, str]:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("MAILER_")}
        environ.update({
            "PYTHONPATH": str(ROOT),
            "MAILER_DATABASE_URL": self.database_url,
            "MAILER_SITE_SECRET_KEY": SECRET,
            "MAILER_SITE_BASE_URL": "https://news.example.org",
            "MAILER_SITE_POSTAL_ADDRESS": "Accidentally Alex, 1 Example Street, London",
            "MAILER_MAIL_FROM_ADDRESS": "updates@news.example.org",
            "MAILER_MAIL_BACKEND": "smtp",
            "MAILER_MAIL_SMTP_HOST": self.relay.host,
            "MAILER_MAIL_SMTP_PORT": str(self.relay.port),
            "MAILER_SCHEDULER_ENABLED": "false",
            "MAILER_DELIVERY_POLL_SECONDS": "1",
        })
        environ.update(self.settings)
        return environ

    def mailer(self, *args: str, ahead: float = 0) -> subprocess.CompletedProcess:
        """Run one `mailer` command to its end, the clock `ahead` seconds on; it must succeed."""
        command = [sys.executable, "-m", "tests.mailer_later", str(ahead), *args] if ahead else \
            [sys.executable, "-m", "mailer", *args]
        done = subprocess.run(command, cwd=self.directory, env=self.environ(), capture_output=True, text=True,
                              timeout=PATIENCE)
        assert done.returncode == 0, f"mailer {' '.join(args)} exited {done.returncode}:\n{done.stderr[-3000:]}"
        return done

    def once(self, ahead: float = 0) -> None:
        """`mailer worker --once`: deliver what is due, then exit."""
        self.mailer("worker", "--once", ahead=ahead)

    def start_worker(self) -> subprocess.Popen:
        """A long-running `mailer worker`, as systemd runs it; its log goes to a file beside the test."""
        log = open(self.directory / f"worker-{len(self.processes)}.log", "w")
        process = subprocess.Popen([sys.executable, "-m", "mailer", "worker"], cwd=self.directory,
                                   env=self.environ(), stdout=log, stderr=subprocess.STDOUT,
                                   preexec_fn=_default_signals)
        log.close()
        self.processes.append(process)
        return process

    def stop(self, process: subprocess.Popen, signum: int = signal.SIGTERM) -> bool:
        """Send `signum`; True if the worker exited within STOP_WITHIN seconds (else it is killed)."""
        process.send_signal(signum)
        try:
            process.wait(STOP_WITHIN)
            return True
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            return False

    def rows(self) -> list[Row]:
        """The send's ledger: one outbox row per reader. These three columns, `send_id` and
        `suppressions.email` are all the drills read of the schema: a rename is followed here."""
        with self.engine.connect() as conn:
            return [Row(*r) for r in conn.execute(text(
                "SELECT recipient, state, attempts FROM outbox WHERE send_id IS NOT NULL ORDER BY recipient"))]

    def states(self) -> Counter:
        return Counter(row.state for row in self.rows())

    def suppressed(self) -> set[str]:
        with self.engine.connect() as conn:
            return set(conn.scalars(text("SELECT email FROM suppressions")))

    def wait_until_all_sent(self, count: int) -> None:
        """Until `count` rows are sent, or the relay has a copy too many (the drill has failed: no need to wait on)."""
        deadline = time.monotonic() + PATIENCE
        while self.states()["sent"] < count and not self.relay.duplicates():
            assert time.monotonic() < deadline, f"not all sent after {PATIENCE} s: {self.states()}"
            assert all(p.poll() is None for p in self.processes), "a worker died: see worker-*.log"
            time.sleep(0.2)

    def drain(self, ahead_steps=(0, HOUR, DAY)) -> None:
        """`worker --once` passes, each with the clock further on, until every row is settled or the steps run out."""
        for ahead in ahead_steps:
            self.once(ahead=ahead)
            if not {"queued", "sending"} & set(self.states()):
                return

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        self.engine.dispose()


def _default_signals() -> None:
    # A worker started from a shell with job control off inherits SIGINT ignored; Ctrl-C must reach it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def deployment(database_url, tmp_path, relay):
    """Make a deployment with extra `MAILER_…` settings: deployment(MAILER_DELIVERY_LEASE_SECONDS="3")."""
    made: list[Deployment] = []

    def make(**settings: str) -> Deployment:
        made.append(Deployment(database_url, tmp_path, relay, settings))
        return made[-1]

    yield make
    for deployment in made:
        deployment.close()


def assert_each_reader_once(relay: Relay, addresses: list[str]) -> None:
    copies = relay.copies()
    doubled = sorted((a, n) for a, n in copies.items() if n > 1)
    assert not doubled, f"readers sent more than one copy ({relay.duplicates()} extra), e.g. {doubled[:5]}"
    assert relay.duplicates() == 0
    missing = [a for a in addresses if copies[a] == 0]
    assert not missing, f"{len(missing)} readers got nothing, e.g. {missing[:5]}"


# ---- the relay says "later", then "yes" ----------------------------------------------------------

def test_relay_deferring_then_accepting_delivers_all_and_counts_attempts(queue_digest, deployment, relay):
    """421 at MAIL FROM (the relay hangs up) and 451 at RCPT for a while, then 250: every reader gets
    the digest once, and each refusal is an attempt in the ledger."""
    addresses = readers(30)
    queue_digest(addresses)
    relay.defer_mail(4)
    relay.defer_rcpt(6)
    instance = deployment()

    instance.drain()

    assert instance.states() == {"sent": 30}
    assert_each_reader_once(relay, addresses)
    refusals = relay.faults_answered["mail"] + relay.faults_answered["rcpt"]
    assert refusals == 10
    assert sum(row.attempts for row in instance.rows()) == 30 + refusals


def test_one_refused_recipient_fails_and_is_suppressed_the_rest_are_sent(queue_digest, deployment, relay):
    addresses = readers(30)
    gone = addresses[7]
    queue_digest(addresses)
    relay.refuse(gone)
    instance = deployment()

    instance.drain()

    by_reader = {row.recipient: row.state for row in instance.rows()}
    assert by_reader.pop(gone) == "failed"
    assert set(by_reader.values()) == {"sent"}
    assert gone in instance.suppressed()
    assert_each_reader_once(relay, [a for a in addresses if a != gone])
    assert relay.copies()[gone] == 0


def test_relay_down_at_start_then_up_delivers_all_once(queue_digest, deployment, relay):
    addresses = readers(30)
    queue_digest(addresses)
    relay.down()
    instance = deployment()

    instance.once()
    assert instance.states() == {"queued": 30}  # nothing lost, nothing given up: the relay is just away

    relay.up()
    instance.drain(ahead_steps=(HOUR, DAY))

    assert instance.states() == {"sent": 30}
    assert_each_reader_once(relay, addresses)


def test_connection_dropped_mid_data_is_retried_and_delivered_once(queue_digest, deployment, relay):
    addresses = readers(30)
    queue_digest(addresses)
    relay.drop_data(3)
    instance = deployment()

    instance.drain()

    assert relay.faults_answered["data"] == 3
    assert instance.states() == {"sent": 30}
    assert_each_reader_once(relay, addresses)
    assert sum(row.attempts for row in instance.rows()) == 30 + 3


# ---- stops and crashes ---------------------------------------------------------------------------

# The relay takes 0.1 s a message on each of 2 connections: 300 readers take at least 15 s, so a worker
# that drains the queue instead of stopping is still at it long after STOP_WITHIN.
STOP_READERS, STOP_PACE, STOP_CONNECTIONS = 300, 0.1, "2"


@pytest.mark.slow
@pytest.mark.parametrize("signum", [
    pytest.param(signal.SIGTERM, id="SIGTERM"),
    pytest.param(signal.SIGINT, id="SIGINT"),
])
def test_a_stop_signal_mid_batch_records_every_result_and_exits_in_seconds(queue_digest, deployment, relay, signum):
    addresses = readers(STOP_READERS)
    queue_digest(addresses)
    relay.slow(STOP_PACE)
    instance = deployment(MAILER_MAIL_SMTP_CONNECTIONS=STOP_CONNECTIONS)
    worker = instance.start_worker()
    assert relay.wait_for(10, PATIENCE), "the worker delivered nothing"

    assert instance.stop(worker, signum), f"the worker was still running {STOP_WITHIN} s after {signum.name}"

    delivered = set(relay.copies())
    rows = instance.rows()
    assert {row.recipient for row in rows if row.state == "sent"} == delivered  # every result recorded
    assert not [row for row in rows if row.state == "sending"]  # unclaimed rows handed back at once
    assert len(delivered) < STOP_READERS  # it stopped rather than finishing the queue
    relay.slow(0)
    instance.once()  # a worker started straight after sends the rest, and nothing twice
    assert instance.states() == {"sent": STOP_READERS}
    assert_each_reader_once(relay, addresses)


@pytest.mark.slow
def test_sigkill_mid_batch_then_restart_sends_one_row_per_reader_and_doubles_at_most_the_wire(
        queue_digest, deployment, relay):
    connections = 4
    addresses = readers(200)
    queue_digest(addresses)
    relay.slow(0.05)
    instance = deployment(MAILER_MAIL_SMTP_CONNECTIONS=str(connections))
    worker = instance.start_worker()
    assert relay.wait_for(30, PATIENCE), "the worker delivered nothing"

    worker.kill()
    worker.wait()
    relay.slow(0)
    # The restart comes after the dead worker's lease (default 300 s) has run out.
    instance.drain(ahead_steps=(600, HOUR))

    rows = instance.rows()
    assert [row.recipient for row in rows] == addresses and {row.state for row in rows} == {"sent"}
    copies = relay.copies()
    assert {a for a in addresses if copies[a] == 0} == set()
    assert relay.duplicates() <= connections, f"{relay.duplicates()} messages doubled by one SIGKILL"


# ---- two workers -----------------------------------------------------------------------------------

@pytest.mark.slow
def test_two_workers_and_a_relay_slower_than_the_lease_send_each_reader_once(queue_digest, deployment, relay):
    """The drill from the issue (1 s a message with a 10 s lease), at a size a test can wait for:
    0.5 s a message with a 3 s lease, like a relay at 50 s a message under the default 300 s lease.
    One connection a worker, so whatever share of the 12 readers a worker claims takes it up to two
    leases to send: its claim has to hold while it waits on the relay."""
    addresses = readers(12)
    queue_digest(addresses)
    relay.slow(0.5)
    instance = deployment(MAILER_DELIVERY_LEASE_SECONDS="3", MAILER_MAIL_SMTP_CONNECTIONS="1")
    workers = [instance.start_worker(), instance.start_worker()]

    instance.wait_until_all_sent(len(addresses))
    for worker in workers:
        instance.stop(worker)

    assert_each_reader_once(relay, addresses)


# Two workers on one SQLite file take turns at its one write lock; on PostgreSQL they claim side by side.
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_workers_on_postgresql_send_no_reader_twice(queue_digest, deployment, relay):
    addresses = readers(400)
    queue_digest(addresses)
    instance = deployment()
    workers = [instance.start_worker(), instance.start_worker()]

    instance.wait_until_all_sent(len(addresses))
    for worker in workers:
        instance.stop(worker)

    assert_each_reader_once(relay, addresses)
    assert len(instance.rows()) == len(addresses)


# ---- an outage longer than the retries --------------------------------------------------------------

def test_relay_down_past_the_give_up_deadline_then_outbox_retry_delivers_all_once(queue_digest, deployment, relay):
    """`delivery.give_up_after` (default 3 days, as Mailman's delivery_retry_period): an outage longer than
    that fails the rows; once the relay is back, `mailer outbox retry --failed` puts them back and each
    reader gets the digest once."""
    addresses = readers(20)
    queue_digest(addresses)
    relay.down()
    instance = deployment()

    for ahead in (0, 3 * DAY + HOUR):  # the first try, and one after the deadline
        instance.once(ahead=ahead)
    assert instance.states() == {"failed": 20}
    assert relay.copies() == Counter()

    relay.up()
    later = 3 * DAY + 2 * HOUR
    instance.mailer("outbox", "retry", "--failed", ahead=later)
    instance.once(ahead=later)

    assert instance.states() == {"sent": 20}
    assert_each_reader_once(relay, addresses)
