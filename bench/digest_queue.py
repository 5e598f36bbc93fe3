"""Digest fan-out benchmark (not a test): how fast `sends.operations.queue` fills the outbox.

Builds a temporary SQLite database (or uses `--database postgresql+psycopg://…`, emptied first) with
the three fixed test articles and N confirmed subscribers spread over three topic sets (some with
non-ASCII names, some at IDN domains), composes one digest, then queues it twice, each time in a
fresh child process so each gets its own peak RSS:

- rowloop (the reference): the eligible readers read into Python and an id-only outbox row inserted
  for each, 500 rows a statement — the best a loop over subscribers can do, with no message bytes;
- fanout: `queue()` as the app runs it: one render per topic set, then one INSERT … SELECT.

Each run is timed up to and including the commit; the outbox is emptied between runs. Printed: rows/s,
the ratio, peak RSS, and the database growth per queued reader (SQLite: used pages; PostgreSQL: the
outbox's total relation size).

    python bench/digest_queue.py [--n 100000] [--database URL] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import delete, insert, select, text  # noqa: E402

from mailer import clock, config as config_module, db, migrate  # noqa: E402
from mailer.app import create_app  # noqa: E402
from mailer.digests import operations  # noqa: E402
from mailer.outbox.models import BULK_PRIORITY, OutboxMessage, OutboxState  # noqa: E402
from mailer.sends import operations as send_operations  # noqa: E402
from mailer.sends import queries as send_queries  # noqa: E402
from mailer.sends.models import Send, SendVariant  # noqa: E402
from mailer.topics.models import SubscriberTopic  # noqa: E402
from subscribers.models import Subscriber, SubscriberState  # noqa: E402
from tests import factories  # noqa: E402

TOPIC_SETS = ((), ("lgbtiq-rights", "ukraine"), ("climate",))
SORT = "tottime"
PATHS = ("rowloop", "fanout")
INSERT_EVERY = 500


def make_config(folder: Path, database: str | None = None) -> config_module.Config:
    return config_module.load(path=None, environ={}, overrides={
        "site": {"secret_key": "bench", "base_url": "https://news.example.org", "name": "Accidentally Alex",
                 "postal_address": "Accidentally Alex, 1 Example Street, London"},
        "database": {"url": database or f"sqlite:///{folder / 'bench.db'}"},
        "mail": {"maildir": str(folder / "mail"), "from_address": "updates@news.example.org"},
        "scheduler": {"enabled": False},
    })


def recipient(i: int) -> tuple[str, str]:
    """Mostly plain readers; every 20th has a non-ASCII name and every 50th an IDN domain, as real lists do."""
    name = "Zoë Łukasiewicz" if i % 20 == 0 else ("" if i % 3 == 0 else f"Reader {i}")
    domain = "bücher.example" if i % 50 == 0 else "example.org"
    return f"reader{i}@{domain}", name


def set_up(folder: Path, n: int, database: str | None) -> None:
    """The database: migrated, the fixed articles, N subscribers, one composed (not queued) digest."""
    config = make_config(folder, database)
    engine = db.make_engine(config["database"]["url"])
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    migrate.upgrade(engine)
    engine.dispose()
    app = create_app(config)
    with app.app_context():
        session = db.session
        factories.fixed_articles(session)
        topics = {slug: factories.topic(session, slug).id for slugs in TOPIC_SETS for slug in slugs}
        session.flush()
        now = clock.now()
        for start in range(0, n, 10_000):  # Core inserts: a million ORM objects would take longer than the run
            people = [{"email": email, "name": name, "state": SubscriberState.confirmed, "is_paused": False,
                       "token_version": 1, "created_at": now}
                      for email, name in map(recipient, range(start, min(n, start + 10_000)))]
            session.execute(insert(Subscriber), people)
            ids = session.scalars(select(Subscriber.id).where(Subscriber.email.in_([p["email"] for p in people]))
                                  .order_by(Subscriber.id)).all()
            follows = [{"subscriber_id": sid, "topic_id": topics[slug]}
                       for i, sid in enumerate(ids, start) for slug in TOPIC_SETS[i % len(TOPIC_SETS)]]
            if follows:
                session.execute(insert(SubscriberTopic), follows)
        operations.compose_next(session)
        session.commit()
        db.session.remove()
    app.extensions["engine"].dispose()


def empty_outbox(folder: Path, database: str | None) -> None:
    app = create_app(make_config(folder, database))
    with app.app_context():
        session = db.session
        session.execute(delete(OutboxMessage))
        session.execute(delete(SendVariant))
        send = session.scalar(select(Send))
        send.queued_at, send.recipients_count = None, 0
        session.commit()
        db.session.remove()
    app.extensions["engine"].dispose()


def row_loop(session, send: Send) -> int:
    """The reference: readers read into Python, an id-only row each, inserted 500 at a time."""
    now = clock.now()
    rows = [{"kind": send.kind.value, "send_id": send.id, "subscriber_id": r.id, "recipient": r.email,
             "subject": "", "state": OutboxState.queued, "priority": BULK_PRIORITY, "attempts": 0, "last_error": "",
             "created_at": now, "next_attempt_at": now}
            for r in send_queries.eligible_subscribers(session)]
    for start in range(0, len(rows), INSERT_EVERY):
        session.execute(insert(OutboxMessage), rows[start:start + INSERT_EVERY])
    send.queued_at = now
    return len(rows)


def database_bytes(session) -> int:
    if session.get_bind().dialect.name == "postgresql":
        return session.scalar(text("SELECT pg_total_relation_size('outbox')"))
    pages = session.scalar(text("PRAGMA page_count")) - session.scalar(text("PRAGMA freelist_count"))
    return pages * session.scalar(text("PRAGMA page_size"))


def rss_kb(field: str) -> int:
    """VmRSS (now) or VmHWM (peak) of this process, from /proc; getrusage's ru_maxrss where there is none.

    Not ru_maxrss on Linux: it survives exec, so a child would report its parent's peak.
    """
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith(f"{field}:"))
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def reset_peak_rss() -> None:
    """Start the peak (VmHWM) again from the current RSS, so the peak is the queueing's own (Linux 4.0+)."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        pass


def child(folder: Path, path: str, profile: bool, database: str | None) -> None:
    """Queue the digest once along `path` and print what it cost as JSON."""
    app = create_app(make_config(folder, database))
    with app.app_context():
        session = db.session
        send = session.scalar(select(Send))
        size_before = database_bytes(session)
        reset_peak_rss()
        rss_before = rss_kb("VmRSS")
        profiler = cProfile.Profile() if profile else None
        started = time.perf_counter()
        if profiler:
            profiler.enable()
        queued = row_loop(session, send) if path == "rowloop" else send_operations.queue(session, send)
        session.commit()
        if profiler:
            profiler.disable()
        seconds = time.perf_counter() - started
        rss_peak = rss_kb("VmHWM")
        growth = database_bytes(session) - size_before
        db.session.remove()
    report = {"queued": queued, "seconds": seconds, "rss_before_kb": rss_before, "rss_peak_kb": rss_peak,
              "growth": growth}
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats(SORT).print_stats(10)
        report["profile"] = out.getvalue()
    print(json.dumps(report))


def run_child(folder: Path, path: str, profile: bool, database: str | None) -> dict:
    argv = [sys.executable, __file__, "--child", path, "--folder", str(folder)] + (["--profile"] if profile else [])
    if database:
        argv += ["--database", database]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{path} run failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="subscribers (default 100000)")
    parser.add_argument("--database", help="a PostgreSQL URL to use instead of a temporary SQLite file (emptied!)")
    parser.add_argument("--profile", action="store_true", help="print cProfile's top 10 (by own time) per path")
    parser.add_argument("--paths", default=",".join(PATHS), help="which paths to run (default: both)")
    parser.add_argument("--child", choices=PATHS, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.folder, args.child, args.profile, args.database)
        return
    with tempfile.TemporaryDirectory(prefix="mailer-bench-") as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        set_up(folder, args.n, args.database)
        print(f"{args.n} subscribers over {len(TOPIC_SETS)} topic sets, set up in {time.perf_counter() - started:.1f} s")
        results = {}
        for path in args.paths.split(","):
            results[path] = run_child(folder, path, args.profile, args.database)
            empty_outbox(folder, args.database)
    for path, r in results.items():
        if r["queued"] != args.n:
            raise SystemExit(f"{path} queued {r['queued']} of {args.n}")
        print(f"{path:<8}: {r['queued']} queued in {r['seconds']:6.2f} s = {r['queued'] / r['seconds']:9,.0f} rows/s;"
              f" database +{r['growth'] / r['queued']:,.0f} bytes a reader; peak RSS {r['rss_peak_kb'] / 1024:5.0f} MB"
              f" ({r['rss_before_kb'] / 1024:.0f} MB when it began)")
        if "profile" in r:
            print(r["profile"])
    if len(results) == 2:
        print(f"fanout / rowloop: {results['rowloop']['seconds'] / results['fanout']['seconds']:.1f}x faster")


if __name__ == "__main__":
    main()
