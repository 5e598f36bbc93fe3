"""Digest queueing benchmark (not a test): how fast `sends.operations.queue` fills the outbox.

Builds a temporary SQLite database with the three fixed test articles and N confirmed subscribers
spread over three topic sets (some with non-ASCII names, some at IDN domains), composes one digest,
then queues it twice, each time in a fresh child process so each gets its own peak RSS:

- reference: every recipient's message built by `emails.build` (a stdlib EmailMessage, serialised),
- bulk: the message built once per topic set as a byte template and filled per recipient,

both through the same `queue()` (same tokens, same inserts). Each run is timed up to and including
the commit, and the outbox is emptied between runs.

    python bench/digest_queue.py [--n 5000] [--profile]
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

from sqlalchemy import delete, func, select  # noqa: E402

from mailer import config as config_module, db, emails, migrate  # noqa: E402
from mailer.app import create_app  # noqa: E402
from mailer.digests import operations  # noqa: E402
from mailer.sends import operations as send_operations  # noqa: E402
from mailer.sends.models import Send  # noqa: E402
from mailer.outbox.models import OutboxMessage  # noqa: E402
from subscribers.models import Subscriber, SubscriberState  # noqa: E402
from tests import factories  # noqa: E402

TOPIC_SETS = ((), ("lgbtiq-rights", "ukraine"), ("climate",))
SORT = "tottime"
PATHS = ("reference", "bulk")


def make_config(folder: Path) -> config_module.Config:
    return config_module.load(path=None, environ={}, overrides={
        "site": {"secret_key": "bench", "base_url": "https://news.example.org", "name": "Accidentally Alex",
                 "postal_address": "Accidentally Alex, 1 Example Street, London"},
        "database": {"url": f"sqlite:///{folder / 'bench.db'}"},
        "mail": {"maildir": str(folder / "mail"), "from_address": "updates@news.example.org"},
        "scheduler": {"enabled": False},
    })


def recipient(i: int) -> tuple[str, str]:
    """Mostly plain readers; every 20th has a non-ASCII name and every 50th an IDN domain, as real lists do."""
    name = "Zoë Łukasiewicz" if i % 20 == 0 else ("" if i % 3 == 0 else f"Reader {i}")
    domain = "bücher.example" if i % 50 == 0 else "example.org"
    return f"reader{i}@{domain}", name


def set_up(folder: Path, n: int) -> None:
    """The database: migrated, the fixed articles, N subscribers, one composed (not queued) digest."""
    config = make_config(folder)
    engine = db.make_engine(config["database"]["url"])
    migrate.upgrade(engine)
    engine.dispose()
    app = create_app(config)
    with app.app_context():
        session = db.session
        factories.fixed_articles(session)
        topics = {slug: factories.topic(session, slug) for slugs in TOPIC_SETS for slug in slugs}
        for i in range(n):
            email, name = recipient(i)
            session.add(Subscriber(email=email, name=name, state=SubscriberState.confirmed,
                                   topics=[topics[slug] for slug in TOPIC_SETS[i % len(TOPIC_SETS)]]))
        session.flush()
        operations.compose_next(session)
        session.commit()
        db.session.remove()
    app.extensions["engine"].dispose()


def empty_outbox(folder: Path) -> None:
    app = create_app(make_config(folder))
    with app.app_context():
        session = db.session
        session.execute(delete(OutboxMessage))
        send = session.scalar(select(Send))
        send.queued_at, send.recipients_count = None, 0
        session.commit()
        db.session.remove()
    app.extensions["engine"].dispose()


class ReferenceBulkMessage:
    """The per-recipient stdlib path, behind the same interface as emails.BulkMessage."""

    def __init__(self, config, *, subject: str, text: str, html: str, slot):
        self.config, self.subject, self.text, self.html, self.slot = config, subject, text, html, slot

    def personal(self, *, to: str, to_name: str = "", unsubscribe_url: str, values,
                 message_id: str | None = None) -> emails.PreparedMessage:
        def fill(match):
            return values(match.group(1))

        rendered = emails.Rendered(subject=self.subject, text=self.slot.sub(fill, self.text),
                                   html=self.slot.sub(fill, self.html))
        return emails.prepared(emails.build(self.config, to=to, to_name=to_name, rendered=rendered,
                                            unsubscribe_url=unsubscribe_url, message_id=message_id))


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


def child(folder: Path, path: str, profile: bool) -> None:
    """Queue the digest once along `path` and print what it cost as JSON."""
    if path == "reference":
        send_operations.emails.BulkMessage = ReferenceBulkMessage
    app = create_app(make_config(folder))
    with app.app_context():
        session = db.session
        send = session.scalar(select(Send))
        reset_peak_rss()
        rss_before = rss_kb("VmRSS")
        profiler = cProfile.Profile() if profile else None
        started = time.perf_counter()
        if profiler:
            profiler.enable()
        queued = send_operations.queue(session, send)
        session.commit()
        if profiler:
            profiler.disable()
        seconds = time.perf_counter() - started
        rss_peak = rss_kb("VmHWM")
        size = session.scalar(select(func.avg(func.length(OutboxMessage.content))))
        db.session.remove()
    report = {"queued": queued, "seconds": seconds, "rss_before_kb": rss_before, "rss_peak_kb": rss_peak,
              "bytes": int(size or 0)}
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats(SORT).print_stats(10)
        report["profile"] = out.getvalue()
    print(json.dumps(report))


def run_child(folder: Path, path: str, profile: bool) -> dict:
    argv = [sys.executable, __file__, "--child", path, "--folder", str(folder)] + (["--profile"] if profile else [])
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{path} run failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="subscribers (default 5000)")
    parser.add_argument("--profile", action="store_true", help="print cProfile's top 10 (by own time) per path")
    parser.add_argument("--paths", default=",".join(PATHS), help="which paths to run (default: both)")
    parser.add_argument("--child", choices=PATHS, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.folder, args.child, args.profile)
        return
    with tempfile.TemporaryDirectory(prefix="mailer-bench-") as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        set_up(folder, args.n)
        print(f"{args.n} subscribers over {len(TOPIC_SETS)} topic sets, set up in {time.perf_counter() - started:.1f} s")
        results = {}
        for path in args.paths.split(","):
            results[path] = run_child(folder, path, args.profile)
            empty_outbox(folder)
    for path, r in results.items():
        if r["queued"] != args.n:
            raise SystemExit(f"{path} queued {r['queued']} of {args.n}")
        print(f"{path:<9}: {r['queued']} queued in {r['seconds']:6.2f} s = {r['queued'] / r['seconds']:8,.0f} msg/s;"
              f" {r['bytes']:,} bytes a message; peak RSS {r['rss_peak_kb'] / 1024:5.0f} MB"
              f" ({r['rss_before_kb'] / 1024:.0f} MB when it began)")
        if "profile" in r:
            print(r["profile"])
    if len(results) == 2:
        print(f"bulk / reference: {results['reference']['seconds'] / results['bulk']['seconds']:.1f}x")


if __name__ == "__main__":
    main()
