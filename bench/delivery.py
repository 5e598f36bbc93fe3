"""Delivery benchmark (not a test): what a user waits for, beside Postfix's own sender.

In one invocation, into one Postfix `smtp-sink` on loopback:

1. reference: Postfix's C load generator `smtp-source -d -s 16` (16 sessions, 10 KB messages);
2. a Flask-Mail-style loop: an `EmailMessage` and a Jinja render per recipient, one smtplib connection;
3. this project end to end, driven as a user drives it: N confirmed subscribers (inserted in bulk
   straight into the tables: setting up is not what is measured), three articles imported with
   `mailer articles import`, then `mailer digests compose --send-now`, then K `mailer worker --once`
   processes at a time until every outbox row of the send is sent. Meanwhile a thread asks
   `/subscribe` and `/healthz` of a `mailer serve --no-worker --no-scheduler` over and over.

Prints msg/s of each and their ratios, the fan-out (queueing) time, database growth per recipient,
the composer's and the workers' peak RSS, and the p99 of the two pages while the send queues and
drains, each against the target of issue 7.

    python bench/delivery.py [--n 20000] [--workers 1] [--database postgresql://user@host:port/db]

With --database, a fresh database is created on that server for the run and dropped afterwards.
"""

from __future__ import annotations

import argparse
import email.message
import email.utils
import os
import re
import resource
import shutil
import signal
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import jinja2
from sqlalchemy import MetaData, create_engine, insert, select, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
SMTP_SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
SMTP_SOURCE = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
MESSAGE_SIZE = 10240
# The slower senders get a sample, not all N: a rate is a rate, and the loop runs ~200 msg/s.
REFERENCE_CAP, LOOP_CAP = 50_000, 5_000
CONNECTIONS = 4  # mail.smtp.connections as a new instance has it (the run sets no other)
SECRET = "bench-secret"
PAGES = ("/subscribe", "/healthz")
FROM = "updates@news.example.org"

# Targets from issue 7 ("Targets").
TARGET_VS_SOURCE, TARGET_VS_LOOP = 0.5, 10
TARGET_100K_SECONDS, TARGET_1M_FANOUT_SECONDS = 60, 30
TARGET_BYTES_PER_READER, TARGET_RSS_MB, TARGET_P99_MS = 300, 150, 250

# Three articles over four topics; readers follow all, two or one of them, so the digest has three variants.
ARTICLES = {
    "chechnya.md": """\
---
title: Two Dead And At Least 40 Detained As Chechen LGBT Purge Resumes
summary: Reports from Grozny say police have again rounded up men suspected of being gay. Two are dead and at least 40 detained, the Russian LGBT Network says. Families are told to keep quiet; the network has moved a dozen people to safety this week and needs help to move more.
topics: [chechen-anti-gay-purge, lgbtiq-rights]
url: https://accidentallyalex.example/2026/11/chechen-lgbt-purge-resumes
image: https://accidentallyalex.example/images/grozny.jpg
actions:
  - {label: Sign the petition for Russia to intervene, url: "https://www.change.org/p/russia-intervene-chechnya", kind: petition}
  - {label: Donate to The Russian LGBT Network, url: "https://lgbtnet.org/en/donate", kind: donate}
---
Reports from Grozny say police have again rounded up men suspected of being gay.
""",
    "ukraine.md": """\
---
title: Winter Aid For Refugees From Ukraine
summary: Shelters in Lviv need generators and blankets before the first frost. The appeal has raised half of what it needs; every donation this week is matched by a local business.
topics: [ukraine]
url: https://accidentallyalex.example/2026/11/winter-aid
actions:
  - {label: Donate to the winter appeal, url: "https://example.org/winter-appeal", kind: donate}
---
Shelters in Lviv need generators and blankets before the first frost.
""",
    "climate.md": """\
---
title: Climate March On Saturday
summary: Meet at noon by the river. Bring a banner, water and a friend; the route is step-free and ends at the town hall steps.
topics: [climate]
url: https://accidentallyalex.example/2026/11/climate-march
actions:
  - {label: Join the march, url: "https://example.org/march", kind: event}
---
Meet at noon by the river.
""",
}
TOPIC_SETS = ((), ("lgbtiq-rights", "ukraine"), ("climate",))

# The Flask-Mail-style loop renders this per recipient, as a Flask app with Flask-Mail typically does.
LOOP_TEXT = jinja2.Template("""\
Hello {{ name }},
{% for article in articles %}
{{ article.title }}
{{ article.summary }}
Read more: {{ article.url }}?u={{ token }}
{% for action in article.actions %}  * {{ action.label }}: {{ action.url }}?u={{ token }}
{% endfor %}{% endfor %}
Manage your topics: https://news.example.org/preferences/{{ token }}
Unsubscribe: https://news.example.org/unsubscribe/{{ token }}
Accidentally Alex, 1 Example Street, London
""")
LOOP_HTML = jinja2.Template("""\
<!doctype html><html><body style="margin:0;padding:0;background:#f4f4f4">
<table role="presentation" width="100%" style="font-family:Georgia,serif;color:#222"><tr><td align="center">
<table role="presentation" width="600" style="background:#fff;padding:24px">
<tr><td><p style="font-size:16px;line-height:1.5">Hello {{ name }},</p></td></tr>
{% for article in articles %}<tr><td style="padding:16px 0;border-top:1px solid #ddd">
<h2 style="font-size:22px;line-height:1.3;margin:0 0 8px"><a href="{{ article.url }}?u={{ token }}"
 style="color:#b0005a;text-decoration:none">{{ article.title }}</a></h2>
<p style="font-size:16px;line-height:1.5;margin:0 0 12px">{{ article.summary }}</p>
{% for action in article.actions %}<p style="margin:0 0 8px"><a href="{{ action.url }}?u={{ token }}"
 style="display:inline-block;padding:10px 16px;background:#b0005a;color:#fff;border-radius:4px;
 text-decoration:none;font-family:Helvetica,Arial,sans-serif;font-size:15px">{{ action.label }}</a></p>
{% endfor %}<p style="margin:0"><a href="{{ article.url }}?u={{ token }}" style="color:#b0005a">Read more</a></p>
</td></tr>{% endfor %}
<tr><td style="padding-top:24px;font-size:13px;color:#666;font-family:Helvetica,Arial,sans-serif">
<a href="https://news.example.org/preferences/{{ token }}" style="color:#666">Manage your topics</a> ·
<a href="https://news.example.org/unsubscribe/{{ token }}" style="color:#666">Unsubscribe</a><br>
Accidentally Alex, 1 Example Street, London</td></tr></table></td></tr></table></body></html>
""")
LOOP_ARTICLES = [
    {"title": "Two Dead And At Least 40 Detained As Chechen LGBT Purge Resumes",
     "summary": "Reports from Grozny say police have again rounded up men suspected of being gay. " * 6,
     "url": "https://accidentallyalex.example/2026/11/chechen-lgbt-purge-resumes",
     "actions": [{"label": "Sign the petition for Russia to intervene", "url": "https://www.change.org/p/russia"},
                 {"label": "Donate to The Russian LGBT Network", "url": "https://lgbtnet.org/en/donate"}]},
    {"title": "Winter Aid For Refugees From Ukraine",
     "summary": "Shelters in Lviv need generators and blankets before the first frost. " * 6,
     "url": "https://accidentallyalex.example/2026/11/winter-aid",
     "actions": [{"label": "Donate to the winter appeal", "url": "https://example.org/winter-appeal"}]},
    {"title": "Climate March On Saturday", "summary": "Meet at noon by the river. " * 12,
     "url": "https://accidentallyalex.example/2026/11/climate-march",
     "actions": [{"label": "Join the march", "url": "https://example.org/march"}]},
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{what} did not start on port {port}")
            time.sleep(0.05)


@contextmanager
def smtp_sink(port: int):
    """smtp-sink on 127.0.0.1:port with a backlog of 1000 (as root it must drop to `nobody`)."""
    process = subprocess.Popen([SMTP_SINK, "-u", "nobody", f"127.0.0.1:{port}", "1000"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, process, "smtp-sink")
        yield
    finally:
        process.terminate()
        process.wait(10)


# ---- the reference and the loop -------------------------------------------------------------------

def smtp_source(port: int, count: int) -> float:
    """Seconds Postfix's smtp-source takes for `count` 10 KB messages over 16 reused sessions."""
    started = time.perf_counter()
    subprocess.run([SMTP_SOURCE, "-d", "-s", "16", "-l", str(MESSAGE_SIZE), "-m", str(count),
                    "-f", FROM, "-t", "reader@example.org", f"127.0.0.1:{port}"], check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def flask_mail_loop(port: int, count: int) -> tuple[float, int]:
    """Seconds for `count` messages built as a Flask-Mail app does; and the last message's size."""
    size = 0
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as conn:
        for i in range(count):
            to = f"reader{i}@example.org"
            values = {"name": f"Reader {i}", "token": f"{i:08x}.{SECRET}", "articles": LOOP_ARTICLES}
            message = email.message.EmailMessage()
            message["From"] = f"Accidentally Alex <{FROM}>"
            message["To"] = to
            message["Subject"] = "Accidentally Alex: this week's digest"
            message["Date"] = email.utils.formatdate(localtime=False)
            message["Message-ID"] = email.utils.make_msgid(domain="news.example.org")
            message["List-Unsubscribe"] = f"<https://news.example.org/unsubscribe/{values['token']}>"
            message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
            message.set_content(LOOP_TEXT.render(values))
            message.add_alternative(LOOP_HTML.render(values), subtype="html")
            content = message.as_bytes()
            size = len(content)
            conn.sendmail(FROM, [to], content)
    return time.perf_counter() - started, size


# ---- the project ----------------------------------------------------------------------------------

@contextmanager
def database(url: str | None, folder: Path):
    """The run's database URL: a SQLite file in `folder`, or a fresh database on the given server."""
    if url is None:
        yield f"sqlite:///{folder / 'bench.db'}"
        return
    server = make_url(url)
    if server.drivername in ("postgresql", "postgres"):
        server = server.set(drivername="postgresql+psycopg")
    name = f"mailer_bench_{os.getpid()}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def database_bytes(engine) -> int:
    """What the database takes on disk: the SQLite file (after a checkpoint), or the tables, indexes
    and TOAST of PostgreSQL's public schema."""
    if engine.dialect.name == "sqlite":
        path = Path(engine.url.database)
        with engine.connect() as conn:
            conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
        return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())
    with engine.connect() as conn:
        return int(conn.scalar(text(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r'")))


def add_subscribers(engine, count: int) -> None:
    """`count` confirmed subscribers over the three topic sets, inserted straight into the tables."""
    tables = MetaData()
    tables.reflect(engine, only=["subscribers", "subscriber_topics", "topics"])
    subscribers, follows, topics = (tables.tables[n] for n in ("subscribers", "subscriber_topics", "topics"))
    now = datetime.now(timezone.utc)
    with engine.begin() as conn:
        topic_ids = dict(conn.execute(select(topics.c.slug, topics.c.id)).all())
        first = (conn.scalar(select(subscribers.c.id).order_by(subscribers.c.id.desc()).limit(1)) or 0) + 1
        chunk = 10_000
        for start in range(0, count, chunk):
            ids = range(first + start, first + min(start + chunk, count))
            conn.execute(insert(subscribers), [
                {"id": i, "email": f"reader{i}@example.org", "name": f"Reader {i}" if i % 3 else "",
                 "state": "confirmed", "is_paused": False, "token_version": 1, "created_at": now,
                 "confirmed_at": now} for i in ids])
            rows = [{"subscriber_id": i, "topic_id": topic_ids[slug]}
                    for i in ids for slug in TOPIC_SETS[i % len(TOPIC_SETS)]]
            if rows:
                conn.execute(insert(follows), rows)
        if engine.dialect.name == "postgresql":  # ids were given: move the sequence past them
            conn.execute(text("SELECT setval(pg_get_serial_sequence('subscribers', 'id'), "
                              "(SELECT max(id) FROM subscribers))"))


class PeakRSS(threading.Thread):
    """Polls VmHWM of child processes: each one's own peak (ru_maxrss of a child would start at the
    parent's, which this benchmark's parent inflates)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peaks: dict[int, int] = {}
        self._halt = threading.Event()

    def watch(self, pid: int) -> None:
        self.peaks.setdefault(pid, 0)

    def run(self) -> None:
        while not self._halt.wait(0.05):
            for pid in list(self.peaks):
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                for line in status.splitlines():
                    if line.startswith("VmHWM:"):
                        self.peaks[pid] = max(self.peaks[pid], int(line.split()[1]) * 1024)

    def stop(self) -> None:
        self._halt.set()
        self.join()


class Prober(threading.Thread):
    """Asks for one page over and over until stopped, as a visitor would; keeps each answer's time by
    phase of the send. One thread a page, so a page that waits never hides how the other one does."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url = url
        self.phase = "idle"  # set by the main thread as the send moves on
        self.times: dict[str, list[float]] = {}
        self.errors = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            phase = self.phase
            started = time.perf_counter()
            try:
                with urllib.request.urlopen(self.url, timeout=120) as response:
                    response.read()
                    ok = response.status == 200
            except (urllib.error.URLError, OSError):
                ok = False
            self.times.setdefault(phase, []).append(time.perf_counter() - started)
            self.errors += not ok

    def stop(self) -> None:
        self._halt.set()
        self.join()


def set_phase(probers: dict[str, Prober], phase: str) -> None:
    for prober in probers.values():
        prober.phase = phase


def p99(samples: list[float]) -> float:
    if len(samples) < 2:
        return samples[0] if samples else float("nan")
    return statistics.quantiles(samples, n=100, method="inclusive")[98]


class Project:
    """The project's commands, run as a user runs them, against one database and the sink."""

    def __init__(self, folder: Path, database_url: str, sink_port: int):
        self.folder = folder
        self.environ = {k: v for k, v in os.environ.items() if not k.startswith("MAILER_")}
        self.environ.update({
            "PYTHONPATH": str(ROOT),
            "MAILER_DATABASE_URL": database_url,
            "MAILER_SITE_SECRET_KEY": SECRET,
            "MAILER_SITE_BASE_URL": "https://news.example.org",
            "MAILER_SITE_POSTAL_ADDRESS": "Accidentally Alex, 1 Example Street, London",
            "MAILER_MAIL_FROM_ADDRESS": FROM,
            "MAILER_MAIL_RETURN_PATH": "bounces+{token}@news.example.org",
            "MAILER_MAIL_BACKEND": "smtp",
            "MAILER_MAIL_SMTP_HOST": "127.0.0.1",
            "MAILER_MAIL_SMTP_PORT": str(sink_port),
            "MAILER_SCHEDULER_ENABLED": "false",
        })
        self.logs = 0

    def start(self, *args: str) -> subprocess.Popen:
        self.logs += 1
        log = open(self.folder / f"{self.logs:02d}-{args[0]}.log", "w")
        process = subprocess.Popen([sys.executable, "-m", "mailer", *args], cwd=self.folder, env=self.environ,
                                   stdout=log, stderr=subprocess.STDOUT)
        log.close()
        process.log = Path(log.name)  # type: ignore[attr-defined]
        return process

    def finish(self, process: subprocess.Popen) -> None:
        if process.wait() != 0:
            raise SystemExit(f"`mailer {' '.join(process.args[3:])}` exited {process.returncode}:\n"
                             + process.log.read_text()[-3000:])

    def run(self, *args: str) -> None:
        self.finish(self.start(*args))


PASS_TIME = re.compile(r"delivery pass time: claiming ([\d.]+) s, building ([\d.]+) s, relay ([\d.]+) s, "
                       r"recording ([\d.]+) s \((\d+) commits\)")


def time_spent(logs: list[Path]) -> dict[str, float]:
    """The workers' own account of where a pass's time went (their "delivery pass time" log lines)."""
    spent = dict.fromkeys(("claiming", "building", "relay", "recording", "commits"), 0.0)
    for log in logs:
        for match in PASS_TIME.finditer(log.read_text()):
            for phase, seconds in zip(spent, match.groups()):
                spent[phase] += float(seconds)
    return spent


def send_states(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return dict(conn.execute(text(
            "SELECT state, count(*) FROM outbox WHERE send_id IS NOT NULL GROUP BY state")).all())


def end_to_end(args, port: int, folder: Path) -> dict:
    with database(args.database, folder) as url:
        project = Project(folder, url, port)
        engine = create_engine(url)
        try:
            project.run("db", "upgrade")
            started = time.perf_counter()
            project.run("topics", "list")  # what any `mailer` command costs before it does anything
            startup_s = time.perf_counter() - started
            for name, body in ARTICLES.items():
                (folder / name).write_text(body)
            project.run("articles", "import", *(str(folder / name) for name in ARTICLES))
            add_subscribers(engine, args.n)
            size_before = database_bytes(engine)

            web_port = free_port()
            serve = project.start("serve", "--no-worker", "--no-scheduler", "--port", str(web_port))
            wait_for_port(web_port, serve, "mailer serve", seconds=60)
            probers = {path: Prober(f"http://127.0.0.1:{web_port}{path}") for path in PAGES}
            for prober in probers.values():
                prober.start()
            rss = PeakRSS()
            rss.start()
            try:
                set_phase(probers, "queueing")
                started = time.perf_counter()
                compose = project.start("digests", "compose", "--send-now")
                rss.watch(compose.pid)
                project.finish(compose)
                queued_at = time.perf_counter()
                set_phase(probers, "draining")
                worker_pids, rounds, worker_logs = [], 0, []
                cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
                while send_states(engine).keys() - {"sent"} and rounds < 5:
                    rounds += 1
                    workers = [project.start("worker", "--once") for _ in range(args.workers)]
                    for worker in workers:
                        rss.watch(worker.pid)
                        worker_pids.append(worker.pid)
                    for worker in workers:
                        project.finish(worker)
                        worker_logs.append(worker.log)
                drained_at = time.perf_counter()
                cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
                set_phase(probers, "after")
            finally:
                for prober in probers.values():
                    prober.stop()
                rss.stop()
                serve.send_signal(signal.SIGTERM)
                try:
                    serve.wait(15)
                except subprocess.TimeoutExpired:
                    serve.kill()
            states = send_states(engine)
            size_queued_and_sent = database_bytes(engine)
            return {
                "states": states, "sent": states.get("sent", 0), "rounds": rounds,
                "startup_s": startup_s, "queue_s": queued_at - started, "drain_s": drained_at - queued_at, "total_s": drained_at - started,
                "growth": (size_queued_and_sent - size_before) / max(args.n, 1),
                "composer_rss": rss.peaks[compose.pid], "worker_rss": max(rss.peaks[p] for p in worker_pids),
                "worker_cpu_s": (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime),
                "worker_time": time_spent(worker_logs),
                "probers": probers, "dialect": engine.dialect.name,
            }
        finally:
            engine.dispose()


# ---- the report -----------------------------------------------------------------------------------

def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="readers of the send (default 20000; try 100000, 1000000)")
    parser.add_argument("--workers", type=int, default=1, help="`mailer worker --once` processes at a time (default 1)")
    parser.add_argument("--database", help="a PostgreSQL server URL, e.g. postgresql://mailer@127.0.0.1:5432/postgres "
                                           "(default: a SQLite file in a temporary folder)")
    args = parser.parse_args()
    for tool in (SMTP_SINK, SMTP_SOURCE):
        if not Path(tool).exists():
            raise SystemExit(f"{tool} is missing: apt-get install postfix (it brings smtp-sink and smtp-source)")

    port = free_port()
    with tempfile.TemporaryDirectory(prefix="mailer-bench-") as tmp, smtp_sink(port):
        reference_n = min(args.n, REFERENCE_CAP)
        reference_s = smtp_source(port, reference_n)
        loop_n = min(args.n, LOOP_CAP)
        loop_s, loop_size = flask_mail_loop(port, loop_n)
        run = end_to_end(args, port, Path(tmp))

    reference, loop = reference_n / reference_s, loop_n / loop_s
    project = run["sent"] / run["total_s"]
    mb = 1024 * 1024
    print(f"delivery benchmark: {args.n:,} readers, {run['dialect']}, {args.workers} worker(s) at a time, "
          f"into smtp-sink on loopback")
    print(f"  smtp-source -s 16 (reference)   {reference_n:>9,} msgs in {reference_s:7.1f} s = {reference:9,.0f} msg/s"
          f"  ({MESSAGE_SIZE:,} B each)")
    print(f"  Flask-Mail-style loop           {loop_n:>9,} msgs in {loop_s:7.1f} s = {loop:9,.0f} msg/s"
          f"  ({loop_size:,} B each)")
    print(f"  mailer, send now to last 250    {run['sent']:>9,} msgs in {run['total_s']:7.1f} s = {project:9,.0f} msg/s"
          f"  (states {run['states']}, {run['rounds']} round(s) of workers)")
    print(f"    fan-out (compose --send-now)  {run['queue_s']:7.1f} s = {args.n / run['queue_s']:,.0f} rows/s")
    print(f"      of which a process start-up {run['startup_s']:7.1f} s (`mailer topics list` on the same database)")
    print(f"    delivery (workers)            {run['drain_s']:7.1f} s = {run['sent'] / run['drain_s']:,.0f} msg/s")
    print(f"      the workers' CPU (user+sys) {run['worker_cpu_s']:7.1f} s = {run['worker_cpu_s'] / run['drain_s']:.2f} of "
          f"a core over the delivery, {run['worker_cpu_s'] / max(run['sent'], 1) * 1e6:,.0f} µs a message")
    spent = run["worker_time"]
    connections = CONNECTIONS * args.workers
    print(f"      where it went (the workers' log): claiming {spent['claiming']:.1f} s and building "
          f"{spent['building']:.1f} s in the pass's thread, ahead of the connections;")
    print(f"        per connection ({connections}): talking to the relay {spent['relay'] / connections:.1f} s, "
          f"waiting for its result's commit {spent['recording'] / connections:.1f} s "
          f"({run['sent'] / max(spent['commits'], 1):.1f} results a commit)")
    print("targets (issue 7):")
    print(f"  mailer / smtp-source            {project / reference:6.2f}   (>= {TARGET_VS_SOURCE}: "
          f"{verdict(project / reference >= TARGET_VS_SOURCE)})")
    print(f"  mailer / Flask-Mail loop        {project / loop:6.2f}   (>= {TARGET_VS_LOOP}: "
          f"{verdict(project / loop >= TARGET_VS_LOOP)})")
    if args.n >= 100_000 and run["dialect"] == "sqlite":
        seconds = run["total_s"] * 100_000 / args.n
        print(f"  100k readers, send now to last  {seconds:6.1f} s (<= {TARGET_100K_SECONDS} s on SQLite: "
              f"{verdict(seconds <= TARGET_100K_SECONDS)})")
    if args.n >= 1_000_000:
        print(f"  fan-out of {args.n:,} rows   {run['queue_s']:6.1f} s (<= {TARGET_1M_FANOUT_SECONDS} s: "
              f"{verdict(run['queue_s'] <= TARGET_1M_FANOUT_SECONDS)})")
    print(f"  database growth per reader      {run['growth']:6,.0f} B (<= {TARGET_BYTES_PER_READER} B: "
          f"{verdict(run['growth'] <= TARGET_BYTES_PER_READER)})")
    for label, key in (("composer peak RSS", "composer_rss"), ("worker peak RSS", "worker_rss")):
        print(f"  {label:<32}{run[key] / mb:6.0f} MB (<= {TARGET_RSS_MB} MB: "
              f"{verdict(run[key] / mb <= TARGET_RSS_MB)})")
    for path, prober in run["probers"].items():
        during = prober.times.get("queueing", []) + prober.times.get("draining", [])
        queueing = prober.times.get("queueing", [])
        line = (f"  {path:<10} while the send queues and drains: p99 {p99(during) * 1000:6,.0f} ms, "
                f"worst {max(during, default=float('nan')) * 1000:6,.0f} ms ({len(during)} requests; "
                f"while it queues: p99 {p99(queueing) * 1000:,.0f} ms)")
        if path == "/subscribe":
            line += f"  (p99 <= {TARGET_P99_MS} ms: {verdict(p99(during) * 1000 <= TARGET_P99_MS)})"
        print(line)
        if prober.errors:
            print(f"  {path}: {prober.errors} request(s) failed or answered other than 200")
    if run["sent"] != args.n:
        raise SystemExit(f"not every reader was sent the digest: {run['states']}")


if __name__ == "__main__":
    main()
