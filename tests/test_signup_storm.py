"""The signup storm drill (bench/signup_storm.py) in a small size: behind a trusted proxy, against
`mailer serve` and gunicorn with several workers, on SQLite and PostgreSQL, no 5xx, no refused
reader, every 302 one pending subscriber with one consent event, at most 3 confirmations to a
mailbox signed up concurrently. The figures it prints are not asserted (tests never assert on time)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parent.parent / "bench" / "signup_storm.py"


def _drill_module():
    spec = importlib.util.spec_from_file_location("signup_storm", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("signup_storm", module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("server", ["serve", "gunicorn"])
def test_a_small_signup_storm_holds(database_url, server):
    storm = _drill_module()
    result = storm.drill(server, database_url.split(":")[0].split("+")[0], signups=60, threads=8, same=10, workers=2,
                         database_url=database_url)
    print(result.line())
    assert result.problems == []
    assert len(result.load.statuses) == 60 and set(result.load.statuses) == {302}
    assert set(result.repeated.statuses) == {302}
