"""`python -m tests.mailer_later SECONDS ARGS…` runs `mailer ARGS…` with the one clock
(`mailer.clock.now`) SECONDS ahead: a drill's way to let the retry back-off or a lease run out
without waiting for it. Everything else is the real command in a real process."""

from __future__ import annotations

import sys
from datetime import timedelta

from mailer import clock


def main() -> None:
    ahead = timedelta(seconds=float(sys.argv[1]))
    wall_clock = clock.now
    # Bound before any other mailer module is imported, so theirs is the moved clock too.
    clock.now = lambda: wall_clock() + ahead
    sys.argv = ["mailer", *sys.argv[2:]]
    from mailer.cli import main as mailer

    mailer()


if __name__ == "__main__":
    main()
