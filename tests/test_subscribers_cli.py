"""`mailer subscribers import / export / export-data / erase / show` through the CLI runner."""

from __future__ import annotations

import csv
import io
import json

import pytest
from sqlalchemy import func, select

from mailer.outbox.models import OutboxMessage
from mailer.topics.models import Topic
from subscribers import importing, operations, queries
from subscribers.models import ConsentAction, ConsentEvent, Subscriber, SubscriberState, Suppression
from tests.contract import check_message

HEADER = ["email", "name", "topics"]


@pytest.fixture
def topics(session):
    session.add_all([Topic(slug="lgbtiq-rights", title="LGBTIQ rights"), Topic(slug="ukraine", title="Ukraine")])
    session.commit()


@pytest.fixture
def write_csv(tmp_path):
    def write(rows, name="list.csv", header=HEADER):
        path = tmp_path / name
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            if header:
                writer.writerow(header)
            writer.writerows(rows)
        return path

    return write


def count(session, model) -> int:
    return session.scalar(select(func.count()).select_from(model))


def by_email(session, email) -> Subscriber | None:
    return session.scalar(select(Subscriber).where(Subscriber.email == email))


# ---- import ------------------------------------------------------------------------------------

def test_import_signs_up_pending_and_sends_confirmation(runner, session, topics, write_csv, deliver, config):
    path = write_csv([["ana@example.org", "Ana", "ukraine"], ["ben@example.org", "", ""]])
    result = runner.invoke(["subscribers", "import", str(path), "--topics", "lgbtiq-rights"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "imported 2, skipped 0, errors 0"

    ana = by_email(session, "ana@example.org")
    assert ana.state == SubscriberState.pending and ana.name == "Ana"
    assert [t.slug for t in ana.topics] == ["lgbtiq-rights", "ukraine"]
    given = ana.consent_events[0]
    assert (given.action, given.source, given.form_id) == (ConsentAction.given, "import", "list.csv")

    mails = deliver()
    assert sorted(str(m["To"]) for m in mails) == ["Ana <ana@example.org>", "ben@example.org"]
    for mail in mails:
        parts = check_message(mail, postal_address=config["site"]["postal_address"])
        assert "/confirm/" in parts["text"]


def test_import_confirmed_records_imported_consent_and_sends_nothing(runner, session, topics, write_csv, deliver):
    path = write_csv([["ana@example.org", "Ana", ""]], name="old-list.csv")
    result = runner.invoke(["subscribers", "import", str(path), "--confirmed", "--topics", "ukraine"])
    assert result.exit_code == 0, result.output
    ana = by_email(session, "ana@example.org")
    assert ana.state == SubscriberState.confirmed and ana.confirmed_at is not None
    [event] = ana.consent_events
    assert (event.action, event.source) == (ConsentAction.imported, "import")
    assert "old-list.csv" in event.detail and event.privacy_policy_version == "2026-11-01"
    assert [t.slug for t in ana.topics] == ["ukraine"]
    assert deliver() == []


def test_import_help_says_what_confirmed_is_for(runner):
    result = runner.invoke(["subscribers", "import", "--help"])
    assert "already gave consent elsewhere" in " ".join(result.output.split())


def test_import_reports_bad_rows_by_line_and_imports_the_rest(runner, session, topics, write_csv, deliver):
    long_address = "a" * 64 + "@" + ".".join(["b" * 60] * 4) + ".org"
    assert len(long_address) > 254
    path = write_csv([
        ["good@example.org", "Good", ""],           # line 2
        ["not-an-address", "", ""],                 # line 3
        [long_address, "", ""],                     # line 4
        ["inject@example.org", "x\r\nBcc: y@evil.example", ""],  # lines 5-6: the quoted name spans two
        ["GOOD@example.org", "", ""],               # line 7: the local part keeps its case: a new address
        ["good@EXAMPLE.org", "Again", ""],          # line 8: domain case is normalised: a repeat of line 2
        ["topic@example.org", "", "ukraine;nope"],  # line 9
        ["extra@example.org", "", "", "surplus"],   # line 10
        ["nul@example.org", "a\x00b", ""],          # line 11
        ["", "No address", ""],                     # line 12
        ["last@example.org", "Last", "ukraine"],    # line 13
    ])
    result = runner.invoke(["subscribers", "import", str(path)])
    assert result.exit_code == 1
    assert result.stdout.strip() == "imported 3, skipped 1, errors 7"
    problems = result.stderr.splitlines()
    assert [p.split(":")[0] for p in problems] == [
        "line 3", "line 4", "line 5", "line 8", "line 9", "line 10", "line 11", "line 12"]
    assert "not valid" in problems[0]
    assert "254" in problems[1]
    assert "line breaks" in problems[2]
    assert problems[3] == "line 8: skipped: good@example.org: same address as line 2"
    assert "Unknown topic: nope" in problems[4]
    assert "4 fields" in problems[5]
    assert "control characters" in problems[6]
    assert "enter your email address" in problems[7]

    assert sorted(session.scalars(select(Subscriber.email))) == [
        "GOOD@example.org", "good@example.org", "last@example.org"]
    recipients = sorted(str(m["To"]) for m in deliver())
    assert recipients == ["GOOD@example.org", "Good <good@example.org>", "Last <last@example.org>"]


def test_running_the_same_import_again_adds_nothing(runner, session, write_csv, deliver):
    path = write_csv([["ana@example.org", "Ana", ""], ["ben@example.org", "Ben", ""]])
    assert runner.invoke(["subscribers", "import", str(path)]).exit_code == 0
    assert len(deliver()) == 2
    again = runner.invoke(["subscribers", "import", str(path)])
    assert again.exit_code == 0
    assert again.stdout.strip() == "imported 0, skipped 2, errors 0"
    assert count(session, Subscriber) == 2
    assert count(session, ConsentEvent) == 2
    assert len(deliver()) == 2  # no second confirmation mail


def test_an_interrupted_import_resumes_without_duplicates(app, session, write_csv):
    path = write_csv([[f"reader{i}@example.org", "", ""] for i in range(5)])

    class Crash(Exception):
        pass

    def crash_after_first_chunk(n):
        raise Crash

    with pytest.raises(Crash):
        importing.import_csv(path, topic_slugs=[], is_confirmed=True, chunk_rows=2, on_rows=crash_after_first_chunk)
    session.rollback()
    assert count(session, Subscriber) == 2  # the first chunk was committed on its own

    report = importing.import_csv(path, topic_slugs=[], is_confirmed=True, chunk_rows=2)
    assert (report.imported, report.skipped, report.errors) == (3, 2, 0)
    assert count(session, Subscriber) == 5


def test_import_never_resubscribes_a_suppressed_address(app, runner, session, write_csv, deliver):
    session.add_all([Suppression(email="gone@example.org", reason="unsubscribed"),
                     Suppression(email="bounced@example.org", reason="bounced"),
                     Suppression(email=operations.erased_marker("erased@example.org", app.config["SECRET_KEY"]),
                                 reason="erased")])
    session.commit()
    path = write_csv([["gone@example.org", "", ""], ["bounced@example.org", "", ""],
                      ["erased@example.org", "", ""], ["new@example.org", "", ""]])
    for flags in ([], ["--confirmed"]):
        result = runner.invoke(["subscribers", "import", str(path), *flags])
        assert result.exit_code == 0
        problems = result.stderr.splitlines()
        assert problems[0] == ("line 2: skipped: gone@example.org: unsubscribed; "
                               "an import does not subscribe it again")
        assert "line 3: skipped: bounced@example.org: bounced" in problems[1]
        assert "line 4: skipped: erased@example.org: erased on request" in problems[2]
    assert list(session.scalars(select(Subscriber.email))) == ["new@example.org"]
    assert [str(m["To"]) for m in deliver()] == ["new@example.org"]


@pytest.mark.parametrize("content, reason", [
    (b"", "is empty"),
    (b"address,name\nana@example.org,Ana\n", "has no 'email' column"),
    ("email,name\nana@example.org,Zo\u00eb\n".encode("latin-1"), "is not UTF-8"),
])
def test_a_broken_file_changes_nothing(runner, session, tmp_path, content, reason):
    path = tmp_path / "broken.csv"
    path.write_bytes(content)
    result = runner.invoke(["subscribers", "import", str(path)])
    assert result.exit_code == 2
    assert result.stderr.startswith("mailer: broken.csv") and reason in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert count(session, Subscriber) == 0


def test_import_with_an_unknown_topic_option_changes_nothing(runner, session, write_csv):
    path = write_csv([["ana@example.org", "", ""]])
    result = runner.invoke(["subscribers", "import", str(path), "--topics", "nope"])
    assert (result.exit_code, result.stderr) == (2, "mailer: Unknown topic: nope\n")
    assert count(session, Subscriber) == 0


def test_import_of_a_missing_file_is_a_usage_error(runner, tmp_path):
    result = runner.invoke(["subscribers", "import", str(tmp_path / "nope.csv")])
    assert result.exit_code == 2 and "does not exist" in result.stderr


def test_import_reads_a_spreadsheet_csv_with_bom_and_header_case(runner, session, tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufeffEmail,Name\r\nzoe@example.org,Zo\u00eb\r\n".encode("utf-8"))
    result = runner.invoke(["subscribers", "import", str(path), "--confirmed"])
    assert result.exit_code == 0, result.output
    assert by_email(session, "zoe@example.org").name == "Zo\u00eb"


# ---- export ------------------------------------------------------------------------------------

def _add(session, email, state, name="", topics=(), is_paused=False):
    subscriber = Subscriber(email=email, name=name, state=state, is_paused=is_paused,
                            topics=list(session.scalars(select(Topic).where(Topic.slug.in_(topics)))))
    session.add(subscriber)
    return subscriber


def test_export_lists_everyone_and_marks_state(runner, session, topics):
    _add(session, "ana@example.org", SubscriberState.confirmed, "Ana", ["ukraine", "lgbtiq-rights"])
    _add(session, "ben@example.org", SubscriberState.pending)
    _add(session, "cy@example.org", SubscriberState.unsubscribed)
    _add(session, "di@example.org", SubscriberState.confirmed, is_paused=True)
    session.commit()
    result = runner.invoke(["subscribers", "export"])
    assert result.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(rows[0]) == ["email", "name", "state", "topics", "created_at", "confirmed_at"]
    assert [(r["email"], r["state"], r["topics"]) for r in rows] == [
        ("ana@example.org", "confirmed", "lgbtiq-rights;ukraine"),
        ("ben@example.org", "pending", ""),
        ("cy@example.org", "unsubscribed", ""),
        ("di@example.org", "confirmed (paused)", ""),
    ]
    assert result.stderr == "exported 4 subscribers\n"


def test_export_to_a_file_reimports_as_the_same_list(runner, session, topics, tmp_path):
    _add(session, "ana@example.org", SubscriberState.confirmed, "Ana", ["ukraine"])
    _add(session, "eve@example.org", SubscriberState.confirmed, '=HYPERLINK("http://evil.example","x")')
    session.commit()
    path = tmp_path / "out.csv"
    assert runner.invoke(["subscribers", "export", str(path)]).exit_code == 0
    exported = list(csv.DictReader(path.open(newline="", encoding="utf-8")))
    # A spreadsheet shows the name as text instead of running it as a formula.
    assert exported[1]["name"] == '\'=HYPERLINK("http://evil.example","x")'

    for subscriber in session.scalars(select(Subscriber)):
        session.delete(subscriber)
    session.commit()
    result = runner.invoke(["subscribers", "import", str(path), "--confirmed"])
    assert result.stdout.strip() == "imported 2, skipped 0, errors 0"
    assert [(s.email, s.name, [t.slug for t in s.topics]) for s in
            session.scalars(select(Subscriber).order_by(Subscriber.email))] == [
        ("ana@example.org", "Ana", ["ukraine"]),
        ("eve@example.org", '=HYPERLINK("http://evil.example","x")', []),
    ]


def test_export_streams_in_batches_with_each_subscribers_topics(app, session, topics):
    for i in range(7):
        _add(session, f"r{i}@example.org", SubscriberState.confirmed, topics=["ukraine"] if i % 2 else [])
    session.commit()
    streamed = [(s.email, [t.slug for t in s.topics]) for s in queries.every_subscriber(batch=3)]
    assert streamed == [(f"r{i}@example.org", ["ukraine"] if i % 2 else []) for i in range(7)]


# ---- GDPR access and erasure, and show --------------------------------------------------------

@pytest.fixture
def ana(session, topics):
    subscriber = operations.sign_up(session, email="ana@example.org", name="Ana", topic_slugs=["ukraine"])
    operations.confirm(session, subscriber)
    session.commit()
    return subscriber


def test_export_data_prints_everything_held_as_json(runner, ana):
    result = runner.invoke(["subscribers", "export-data", "ana@example.org"])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert (data["email"], data["name"], data["state"], data["topics"]) == (
        "ana@example.org", "Ana", "confirmed", ["ukraine"])
    assert [e["action"] for e in data["consent_history"]] == ["given", "confirmed"]
    assert [m["kind"] for m in data["mail"]] == ["confirmation", "welcome"]
    assert data["clicks"] == []


@pytest.mark.parametrize("verb", ["show", "export-data", "erase"])
def test_unknown_address_is_a_one_line_error(runner, verb):
    result = runner.invoke(["subscribers", verb, "nobody@example.org"])
    assert (result.exit_code, result.stderr) == (2, "mailer: no subscriber with address nobody@example.org\n")


def test_erase_then_show_finds_nobody(runner, session, ana):
    result = runner.invoke(["subscribers", "erase", "ana@example.org"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("erased ana@example.org: 2 consent events, 1 topic choices; 2 messages blanked")
    shown = runner.invoke(["subscribers", "show", "ana@example.org"])
    assert (shown.exit_code, shown.stderr) == (2, "mailer: no subscriber with address ana@example.org\n")
    assert count(session, OutboxMessage) == 2
