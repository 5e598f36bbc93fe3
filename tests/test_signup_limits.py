"""Abuse limits that hold in production: the confirmation cap under concurrency (PostgreSQL too), the
per-IP limit counted in the database every process shares, and the client address behind a proxy."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import func, select

from mailer.outbox.models import OutboxMessage
from subscribers.models import ConsentEvent, RateHit, Subscriber
from tests.conftest import make_config
from tests.test_bad_input import signup_form


def test_fifty_concurrent_signups_of_one_address_queue_at_most_three_confirmations(database_url, tmp_path):
    from mailer import db
    from mailer.app import create_app

    app = create_app(make_config(database_url, tmp_path, site={"trusted_proxies": 1}))
    app.config["TESTING"] = True
    forms = [signup_form(app.test_client(), email="target@example.org") for _ in range(50)]
    start = threading.Barrier(50)

    def post(n: int) -> int:
        client = app.test_client()
        start.wait()
        with app.app_context():
            # One reader each (distinct addresses behind the proxy): only the per-address cap may hold them.
            response = client.post("/subscribe", data=forms[n], headers={"X-Forwarded-For": f"198.51.100.{n}"})
            db.session.remove()
            return response.status_code

    with ThreadPoolExecutor(50) as pool:
        statuses = list(pool.map(post, range(50)))
    assert statuses == [302] * 50
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Subscriber)) == 1
        assert db.session.scalar(select(func.count()).select_from(ConsentEvent)) == 50
        assert db.session.scalar(select(func.count()).select_from(OutboxMessage)) == 3
        # Each post counted against its reader's address, the ones that lost the race for the new row too.
        assert db.session.scalar(select(func.count()).select_from(RateHit).where(RateHit.scope == "limiter")) == 50
        db.session.remove()
    app.extensions["engine"].dispose()


def test_per_ip_counts_are_kept_as_keyed_hashes_in_the_shared_table(database_url, tmp_path):
    from mailer import db
    from mailer.app import create_app

    app = create_app(make_config(database_url, tmp_path, site={"trusted_proxies": 1},
                                 signup={"rate_limit": "2 per hour"}))
    client = app.test_client()
    headers = {"X-Forwarded-For": "203.0.113.9"}
    statuses = [client.post("/subscribe", data=signup_form(client, email=f"r{n}@example.org"), headers=headers
                            ).status_code for n in range(3)]
    assert statuses == [302, 302, 429]
    # A second app on the same database (another gunicorn worker) sees the same counts.
    other = create_app(make_config(database_url, tmp_path, site={"trusted_proxies": 1},
                                   signup={"rate_limit": "2 per hour"})).test_client()
    assert other.post("/subscribe", data=signup_form(other, email="r4@example.org"), headers=headers
                      ).status_code == 429
    assert other.post("/subscribe", data=signup_form(other, email="r4@example.org"),
                      headers={"X-Forwarded-For": "203.0.113.10"}).status_code == 302
    with app.app_context():
        keys = list(db.session.scalars(select(RateHit.key).where(RateHit.scope == "limiter")))
        assert len(keys) == 3 and not any("203.0.113" in key for key in keys)
        db.session.remove()
    app.extensions["engine"].dispose()


def test_refused_signups_count_against_the_per_ip_limit_too(database_url, tmp_path):
    """A bad address, a forged form, the honeypot and a body far too large each count: the count is
    part of the signup's own transaction, and a refusal must not roll it back."""
    from mailer.app import create_app

    app = create_app(make_config(database_url, tmp_path, site={"trusted_proxies": 1},
                                 signup={"rate_limit": "4 per hour"}))
    client = app.test_client()
    headers = {"X-Forwarded-For": "203.0.113.20"}
    bad_address = client.post("/subscribe", data=signup_form(client, email="not an address"), headers=headers)
    forged = client.post("/subscribe", data=signup_form(client, csrf_token="forged"), headers=headers)
    honeypot = client.post("/subscribe", data=signup_form(client, website="spam"), headers=headers)
    too_large = client.post("/subscribe", data=signup_form(client, name="x" * 100_000), headers=headers)
    last = client.post("/subscribe", data=signup_form(client, email="late@example.org"), headers=headers)
    assert [r.status_code for r in (bad_address, forged, honeypot, too_large, last)] == [400, 400, 302, 413, 429]
    app.extensions["engine"].dispose()


def test_a_signup_after_a_read_in_the_same_thread_is_answered(database_url, tmp_path):
    """The limiter counts on the request's own connection: a read begun in this thread (on SQLite it
    holds the write lock) no longer leaves the count waiting on a second connection."""
    from mailer import db
    from mailer.app import create_app

    app = create_app(make_config(database_url, tmp_path, site={"trusted_proxies": 1}))
    client = app.test_client()
    form = signup_form(client, email="reader@example.org")
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Subscriber)) == 0  # the read stays open
        response = client.post("/subscribe", data=form, headers={"X-Forwarded-For": "203.0.113.21"})
        assert response.status_code == 302
        db.session.remove()
        assert db.session.scalar(select(func.count()).select_from(RateHit).where(RateHit.scope == "limiter")) == 1
        db.session.remove()
    app.extensions["engine"].dispose()


def test_counts_can_live_in_process_memory_when_configured(database_url, tmp_path):
    """`site.rate_limit_storage = "memory://"`: one process only, nothing written to rate_hits."""
    from mailer import db
    from mailer.app import create_app

    app = create_app(make_config(database_url, tmp_path, site={"rate_limit_storage": "memory://"},
                                 signup={"rate_limit": "1 per hour", "pending_per_domain_per_hour": 0}))
    client = app.test_client()
    statuses = [client.post("/subscribe", data=signup_form(client, email=f"r{n}@example.org")).status_code
                for n in range(2)]
    assert statuses == [302, 429]
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(RateHit)) == 0
        db.session.remove()
    app.extensions["engine"].dispose()


def test_redis_storage_without_the_redis_package_is_a_one_line_config_error(database_url, tmp_path):
    import importlib.util

    import pytest

    from mailer.app import create_app
    from mailer.errors import ConfigError

    if importlib.util.find_spec("redis") is not None:
        pytest.skip("the redis package is installed here")
    with pytest.raises(ConfigError, match=r"^site\.rate_limit_storage: 'redis' prerequisite not available$"):
        create_app(make_config(database_url, tmp_path, site={"rate_limit_storage": "redis://127.0.0.1:6379/0"}))
