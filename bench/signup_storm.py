"""Signup storm drill: readers behind one reverse proxy sign up all at once.

For each server (`mailer serve`, gunicorn) and each database (SQLite, PostgreSQL), in one run:

1. a fresh database and instance folder, with `site.trusted_proxies = 1` (the drill is the proxy: it
   sends each reader's address in X-Forwarded-For) and the default limits (20 posts an hour per
   address, 3 confirmations a day per mailbox, 100 pending signups an hour per domain);
2. N signups (`--signups`, default 1000) from `--threads` threads (32), each reader with an address
   and an X-Forwarded-For of their own, spread over 40 mail domains; then `--same` (50) concurrent
   signups of one mailbox from 50 addresses, released together;
3. a Flask hello-world served the same way (waitress with the same threads, or gunicorn with the same
   workers) and loaded the same way (the same number of form POSTs from the same threads);
4. checks: no 5xx, no refused reader (every storm POST answers 302 to the thanks page), every 302
   matched by exactly one pending subscriber and one consent event, at most 3 confirmations queued
   for the repeated mailbox; and prints requests/s, POST p50/p99 and the ratio to the hello-world,
   and the server's CPU time per request (its processes' user + system time over the storm, from
   /proc): on a shared machine the ratios move with the neighbours' load, the CPU time much less.

    python bench/signup_storm.py                         # everything, full size
    python bench/signup_storm.py --servers serve --databases sqlite --signups 200

Each thread reads the form once and waits `signup.min_seconds` before its first POST, as a person
takes that long; the token it read is good for all its POSTs. Exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, func, select  # noqa: E402

from mailer.outbox.models import OutboxMessage  # noqa: E402
from subscribers.models import ConsentEvent, Subscriber, SubscriberState  # noqa: E402

REPEATED = "target@example.net"
DOMAINS = 40
MIN_SECONDS = 2  # the default signup.min_seconds
NO_ANSWER = 599  # what the drill records for a request that got no answer
HELLO = '''
from flask import Flask, redirect
app = Flask("hello")

@app.route("/", methods=["GET", "POST"])
def hello():
    return redirect("/thanks")
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Load:
    """What one load run saw."""

    statuses: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    wall: float = 0.0
    refused: list[str] = field(default_factory=list)  # readers not answered 302
    server_cpu: float = 0.0  # seconds of CPU the server's processes spent on this load

    @property
    def requests_per_second(self) -> float:
        return len(self.statuses) / self.wall if self.wall else 0.0

    def percentile(self, p: float) -> float:
        ordered = sorted(self.seconds)
        return ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000 if ordered else 0.0

    @property
    def cpu_ms_per_request(self) -> float:
        return self.server_cpu / len(self.statuses) * 1000 if self.statuses else 0.0

    @property
    def errors(self) -> int:
        return sum(1 for s in self.statuses if s >= 500)


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU of process `pid` and its children (gunicorn's workers), from /proc; 0 elsewhere."""
    if pid is None or not Path("/proc").is_dir():
        return 0.0
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:  # a process that ended meanwhile
            continue
        if stat.parent.name == str(pid) or fields[1] == str(pid):  # fields[1] is the parent's id
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def post(port: int, path: str, body: bytes, forwarded: str) -> tuple[int, str, float]:
    """One POST on a new connection (gunicorn's sync workers close each one anyway)."""
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", path, body=body, headers={
            "Content-Type": "application/x-www-form-urlencoded", "X-Forwarded-For": forwarded,
            "User-Agent": "Mozilla/5.0 (signup storm drill)"})
        response = conn.getresponse()
        response.read()
        return response.status, response.getheader("Location", ""), time.perf_counter() - started
    except OSError:  # no answer within a minute, or the connection dropped: as bad as a 5xx
        return NO_ANSWER, "", time.perf_counter() - started
    finally:
        conn.close()


def form_token(port: int) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/subscribe")
    page = conn.getresponse().read().decode()
    conn.close()
    return re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)


def storm(port: int, *, signups: int, threads: int, same: int, needs_token: bool,
          server_pid: int | None = None) -> tuple[Load, Load]:
    """The storm of distinct readers, then the concurrent signups of one mailbox."""
    tokens: dict[int, str] = {}

    def body(n: int, email: str, token: str) -> bytes:
        return urllib.parse.urlencode({"csrf_token": token, "email": email, "consent": "y"}).encode()

    def reader(n: int) -> str:
        return f"reader{n}@d{n % DOMAINS}.example.org"

    def address(n: int) -> str:
        return f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"

    def work(worker: int, load: Load) -> None:
        token = tokens.get(worker, "")
        for n in range(worker, signups, threads):
            status, location, seconds = post(port, "/subscribe", body(n, reader(n), token), address(n))
            with lock:
                load.statuses.append(status)
                load.seconds.append(seconds)
                if status != 302 or not location.endswith("/subscribe/thanks"):
                    load.refused.append(f"{reader(n)}: {status}")

    lock = threading.Lock()
    if needs_token:
        for worker in range(max(threads, same)):
            tokens[worker] = form_token(port)
        time.sleep(MIN_SECONDS)  # a person takes that long to fill the form in
    load = Load()
    cpu = cpu_seconds(server_pid)
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda w: work(w, load), range(threads)))
    load.wall = time.perf_counter() - started
    load.server_cpu = cpu_seconds(server_pid) - cpu

    repeated = Load()
    gate = threading.Barrier(same)

    def one(n: int) -> None:
        gate.wait()
        status, _, seconds = post(port, "/subscribe", body(n, REPEATED, tokens.get(n, "")), f"172.16.0.{n % 250}")
        with lock:
            repeated.statuses.append(status)
            repeated.seconds.append(seconds)
            if status != 302:
                repeated.refused.append(f"{REPEATED} #{n}: {status}")

    started = time.perf_counter()
    with ThreadPoolExecutor(same) as pool:
        list(pool.map(one, range(same)))
    repeated.wall = time.perf_counter() - started
    return load, repeated


@contextmanager
def postgres():
    from tests.pg import Server

    server = Server()
    try:
        yield server.start()
    finally:
        server.stop()


@contextmanager
def served(kind: str, app: str, port: int, cwd: Path, env: dict, *, threads: int, workers: int):
    """`mailer serve` (waitress) or gunicorn for the mailer (`app` "mailer"), or the hello-world."""
    if kind == "serve" and app == "mailer":
        cmd = [sys.executable, "-m", "mailer", "serve", "--port", str(port), "--threads", str(threads),
               "--no-worker", "--no-scheduler"]
    elif kind == "serve":
        cmd = [sys.executable, "-c", "import hello, waitress; waitress.serve(hello.app, host='127.0.0.1', "
               f"port={port}, threads={threads}, _quiet=True)"]
    else:
        cmd = [sys.executable, "-m", "gunicorn", "-w", str(workers), "-b", f"127.0.0.1:{port}", "--log-level",
               "warning", "mailer.wsgi:app" if app == "mailer" else "hello:app"]
    process = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/healthz" if app == "mailer" else "/")
                conn.getresponse().read()
                conn.close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"{kind} ({app}) did not start: {process.stderr.read().decode()[-2000:]}")
                time.sleep(0.1)
        yield process.pid
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class Result:
    server: str
    database: str
    load: Load
    repeated: Load
    hello: Load
    problems: list[str]

    def line(self) -> str:
        ratio = self.load.requests_per_second / self.hello.requests_per_second if self.hello.wall else 0.0
        return (f"{self.server:<9} {self.database:<10} {len(self.load.statuses):>6} posts "
                f"{self.load.requests_per_second:>7.1f} req/s  p50 {self.load.percentile(0.5):>6.0f} ms  "
                f"p99 {self.load.percentile(0.99):>6.0f} ms  5xx {self.load.errors + self.repeated.errors}  "
                f"refused {len(self.load.refused) + len(self.repeated.refused)}  | hello "
                f"{self.hello.requests_per_second:>7.1f} req/s  ratio {ratio:.2f}x  | server CPU "
                f"{self.load.cpu_ms_per_request:.1f} ms/req (hello {self.hello.cpu_ms_per_request:.1f})  | "
                + ("OK" if not self.problems else "FAILED: " + "; ".join(self.problems[:5])))


def check(database_url: str, load: Load, repeated: Load) -> list[str]:
    """Every 302 of the storm is one pending subscriber with one consent event; the repeated mailbox
    is one subscriber with one consent event per 302 and at most 3 confirmations queued."""
    problems = []
    if load.errors or repeated.errors:
        problems.append(f"{load.errors + repeated.errors} 5xx")
    if load.refused or repeated.refused:
        problems.append(f"{len(load.refused) + len(repeated.refused)} refused, e.g. "
                        + ", ".join((load.refused + repeated.refused)[:3]))
    engine = create_engine(database_url)
    with engine.connect() as conn:
        accepted = load.statuses.count(302)
        pending = conn.scalar(select(func.count()).select_from(Subscriber).where(
            Subscriber.state == SubscriberState.pending, Subscriber.email != REPEATED))
        events = conn.scalar(select(func.count()).select_from(ConsentEvent).join(Subscriber).where(
            Subscriber.email != REPEATED))
        single = conn.scalar(select(func.count()).select_from(
            select(ConsentEvent.subscriber_id).group_by(ConsentEvent.subscriber_id)
            .having(func.count() != 1).join(Subscriber).where(Subscriber.email != REPEATED).subquery()))
        if (pending, events, single) != (accepted, accepted, 0):
            problems.append(f"{accepted} accepted but {pending} pending subscribers and {events} consent events")
        # Each consent keeps its reader's address (from X-Forwarded-For), never the proxy's.
        addresses = conn.scalar(select(func.count(func.distinct(ConsentEvent.ip_address))).join(Subscriber).where(
            Subscriber.email != REPEATED, ConsentEvent.ip_address.like("10.%")))
        if addresses != accepted:
            problems.append(f"{accepted} readers but {addresses} distinct reader addresses in their consents")
        target = conn.scalar(select(Subscriber.id).where(Subscriber.email == REPEATED))
        target_events = conn.scalar(select(func.count()).select_from(ConsentEvent).where(
            ConsentEvent.subscriber_id == target))
        confirmations = conn.scalar(select(func.count()).select_from(OutboxMessage).where(
            OutboxMessage.subscriber_id == target))
        if target_events != repeated.statuses.count(302):
            problems.append(f"{REPEATED}: {repeated.statuses.count(302)} accepted, {target_events} consent events")
        if not 1 <= confirmations <= 3:
            problems.append(f"{REPEATED}: {confirmations} confirmations queued (cap 3)")
    engine.dispose()
    return problems


def drill(server: str, database: str, *, signups: int, threads: int, same: int, workers: int,
          database_url: str) -> Result:
    with tempfile.TemporaryDirectory(prefix="signup-storm-") as folder:
        cwd = Path(folder)
        (cwd / "hello.py").write_text(HELLO)
        (cwd / "config.toml").write_text(
            f'[site]\nsecret_key = "storm-drill"\ntrusted_proxies = 1\nbase_url = "https://news.example.org"\n'
            f'[database]\nurl = "{database_url}"\n[mail]\nmaildir = "{cwd / "mail"}"\n'
            f'[scheduler]\nenabled = false\n')
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAILER_")}
        env.update(PYTHONPATH=str(ROOT) + os.pathsep + str(cwd), MAILER_CONFIG=str(cwd / "config.toml"))
        subprocess.run([sys.executable, "-m", "mailer", "db", "upgrade"], cwd=cwd, env=env, check=True,
                       capture_output=True)
        port = free_port()
        with served(server, "mailer", port, cwd, env, threads=threads, workers=workers) as pid:
            load, repeated = storm(port, signups=signups, threads=threads, same=same, needs_token=True,
                                   server_pid=pid)
        problems = check(database_url, load, repeated)
        port = free_port()
        with served(server, "hello", port, cwd, env, threads=threads, workers=workers) as pid:
            hello, _ = storm(port, signups=signups, threads=threads, same=1, needs_token=False, server_pid=pid)
    return Result(server, database, load, repeated, hello, problems)


def run(servers: list[str], databases: list[str], *, signups: int, threads: int, same: int, workers: int,
        print_lines: bool = True) -> list[Result]:
    results = []
    for database in databases:
        for server in servers:
            if database == "sqlite":
                with tempfile.TemporaryDirectory(prefix="signup-storm-db-") as folder:
                    url = f"sqlite:///{folder}/mailer.db"
                    results.append(drill(server, database, signups=signups, threads=threads, same=same,
                                         workers=workers, database_url=url))
            else:
                with postgres() as url:
                    results.append(drill(server, database, signups=signups, threads=threads, same=same,
                                         workers=workers, database_url=url))
            if print_lines:
                print(results[-1].line(), flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", default="serve,gunicorn")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--signups", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--same", type=int, default=50)
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers")
    args = parser.parse_args()
    if "postgresql" in args.databases and shutil.which("pg_ctl") is None and not list(
            Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")):
        raise SystemExit("PostgreSQL is not installed (apt-get install postgresql)")
    results = run(args.servers.split(","), args.databases.split(","), signups=args.signups, threads=args.threads,
                  same=args.same, workers=args.workers)
    sys.exit(1 if any(r.problems for r in results) else 0)


if __name__ == "__main__":
    main()
