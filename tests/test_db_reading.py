"""A transaction begun with `db.reading()` only reads: on SQLite it takes no write lock, so a page that
only reads answers while a writer (the delivery worker's commits, a signup) holds it, and holds up none."""

from __future__ import annotations

import threading

from sqlalchemy import text

from mailer import db


def _while_a_writer_holds_the_lock(work) -> bool:
    """Run `work` in another thread while this one is inside a write transaction; whether it finished
    before the writer let go (a reader that waited for the lock would still be waiting)."""
    done = threading.Event()

    def run():
        work()
        done.set()

    with db.session.get_bind().begin() as writer:
        writer.execute(text("UPDATE topics SET title = title"))
        thread = threading.Thread(target=run)
        thread.start()
        finished = done.wait(20)
    thread.join()
    return finished


def test_a_reader_does_not_wait_for_a_writer(app, session):
    seen = []

    def read():
        with db.session.session_factory() as other:
            db.reading(other)
            seen.append(other.scalar(text("SELECT count(*) FROM topics")))

    assert _while_a_writer_holds_the_lock(read)
    assert seen == [0]


def test_healthz_answers_while_a_writer_holds_the_lock(app, client):
    answers = []
    assert _while_a_writer_holds_the_lock(lambda: answers.append(client.get("/healthz").status_code))
    assert answers == [200]


def test_the_signup_form_is_shown_while_a_writer_holds_the_lock(app, client):
    answers = []
    assert _while_a_writer_holds_the_lock(lambda: answers.append(client.get("/subscribe").status_code))
    assert answers == [200]


def test_reading_leaves_a_transaction_already_begun_as_it_is(app, session):
    session.execute(text("SELECT 1"))
    db.reading()  # no warning, no error: the transaction goes on as it began
    session.execute(text("UPDATE topics SET title = title"))
    session.commit()
