"""Importing a CSV of subscribers: every row checked, bad rows reported and skipped, the rest added in chunks.

Each chunk is its own transaction, so a 100k-row file never holds one huge transaction, and a rerun
after a crash simply skips the addresses that are already in.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from mailer import db
from mailer.errors import SubscriberError
from mailer.topics.models import Topic
from subscribers import operations, queries

CHUNK_ROWS = 500
EMAIL, NAME, TOPICS = "email", "name", "topics"
# Spreadsheet formulas are defused on export with a leading quote (see exporting); an import takes it off.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


_SUPPRESSED = {
    "erased": "erased on request (only the person can sign up again, through the web form)",
}


@dataclass(frozen=True)
class Row:
    line: int
    email: str
    name: str
    topic_slugs: list[str]


@dataclass(frozen=True)
class Problem:
    """A row that was not imported: an error in the file, or a skip on purpose (suppressed, duplicate)."""

    line: int
    reason: str
    is_error: bool

    def __str__(self) -> str:
        return f"line {self.line}: {'error' if self.is_error else 'skipped'}: {self.reason}"


@dataclass
class ImportReport:
    imported: int = 0
    skipped: int = 0
    errors: int = 0
    problems: list[Problem] = field(default_factory=list)

    def summary(self) -> str:
        return f"imported {self.imported}, skipped {self.skipped}, errors {self.errors}"


def count_rows(path: Path) -> int:
    """Read the whole file once: checks it is UTF-8 CSV with an email column, and counts its rows.

    A file that fails here changes nothing in the database.
    """
    with _open(path) as f:
        reader = csv.reader(f)
        try:
            header = next(reader, None)
            if header is None:
                raise SubscriberError(f"{path.name} is empty: it needs a header line with an 'email' column.")
            columns = [c.strip().lower() for c in header]
            if EMAIL not in columns:
                raise SubscriberError(f"{path.name} has no 'email' column in its header line "
                                      f"(found: {', '.join(columns) or 'nothing'}).")
            return sum(1 for row in reader if row)
        except UnicodeDecodeError:
            raise SubscriberError(f"{path.name} is not UTF-8 text near line {reader.line_num + 1}; "
                                  "save it as CSV UTF-8.") from None
        except csv.Error as exc:
            raise SubscriberError(f"{path.name} line {reader.line_num}: not valid CSV ({exc}).") from None


def _open(path: Path):
    # utf-8-sig: spreadsheet programs put a byte-order mark in front of "CSV UTF-8" files.
    return path.open(newline="", encoding="utf-8-sig")


def read_rows(path: Path, default_topics: list[str], known_topics: set[str]) -> Iterator[Row | Problem]:
    """Each data row of the file as a checked Row, or a Problem saying why it cannot be imported."""
    seen: dict[str, int] = {}
    with _open(path) as f:
        reader = csv.reader(f)
        columns = [c.strip().lower() for c in next(reader)]
        line = reader.line_num + 1
        for values in reader:
            start, line = line, reader.line_num + 1
            if not values:
                continue
            if len(values) > len(columns):
                yield Problem(start, f"{len(values)} fields, but the header has {len(columns)}", True)
                continue
            record = dict(zip(columns, values))
            try:
                row = _check(start, record, default_topics, known_topics)
            except SubscriberError as exc:
                yield Problem(start, f"{_shown(record.get(EMAIL, ''))}: {exc}", True)
                continue
            if row.email in seen:
                yield Problem(start, f"{row.email}: same address as line {seen[row.email]}", False)
                continue
            seen[row.email] = start
            yield row


def _check(line: int, record: dict[str, str], default_topics: list[str], known_topics: set[str]) -> Row:
    email = operations.normalise_email(_undefused(record.get(EMAIL, "").strip()))
    name = operations.clean_name(_undefused(record.get(NAME, "").strip()))
    slugs = [s.strip() for s in record.get(TOPICS, "").split(";") if s.strip()]
    unknown = sorted(set(slugs) - known_topics)
    if unknown:
        raise SubscriberError(f"Unknown topic: {', '.join(unknown)}")
    return Row(line, email, name, sorted(set(slugs) | set(default_topics)))


def _undefused(cell: str) -> str:
    """A cell as it was before export defused it: the quote in front of a formula start comes off."""
    return cell[1:] if cell.startswith("'") and cell[1:2] and cell[1] in FORMULA_STARTS else cell


def _shown(raw: str) -> str:
    """An address as typed, safe to print on one line (it may be long or hold control characters)."""
    text = repr(raw.strip())
    return text if len(text) <= 80 else text[:77] + "..."


def check_file(path: Path, topic_slugs: list[str]) -> tuple[int, list[Problem]]:
    """Read the whole file without importing anything: its row count, and every row that is an error.

    Raises SubscriberError when the file itself is not a subscriber CSV. Skips (a repeated address) are not
    errors: the import reports them as it goes.
    """
    total = count_rows(path)
    known_topics = set(db.session.scalars(select(Topic.slug)))
    unknown = sorted(set(topic_slugs) - known_topics)
    if unknown:
        raise SubscriberError(f"Unknown topic: {', '.join(unknown)}")
    return total, [item for item in read_rows(path, topic_slugs, known_topics)
                   if isinstance(item, Problem) and item.is_error]


@dataclass(frozen=True)
class Progress:
    """Where an import stands once the chunk being committed is in: `rows_done` rows of the file behind it
    (a resumed import counts the rows it skipped), and the report of this run so far."""

    rows_done: int
    report: ImportReport


def import_csv(path: Path, *, topic_slugs: list[str], is_confirmed: bool,
               on_rows: Callable[[int], None] = lambda n: None,
               on_problem: Callable[[Problem], None] = lambda p: None,
               chunk_rows: int = CHUNK_ROWS, skip_rows: int = 0,
               on_chunk: Callable[[Progress], None] = lambda progress: None) -> ImportReport:
    """Import the subscribers in the CSV at `path`, committing every `chunk_rows` rows.

    Without `is_confirmed` each new address is signed up as `pending` and sent the confirmation mail
    (double opt-in). With it they are confirmed at once with a consent event `imported`: only for
    lists whose consent was given elsewhere. Addresses already known are skipped silently; suppressed
    ones (unsubscribed, bounced, erased) and repeats within the file are skipped and reported.
    `on_rows(n)` is told as rows are done; `on_problem` gets each row that was not imported.
    `skip_rows` resumes after that many data rows. `on_chunk` runs inside each chunk's transaction, just
    before its commit, so a caller's record of the progress commits with the rows it counts.
    """
    known_topics = set(db.session.scalars(select(Topic.slug)))
    unknown = sorted(set(topic_slugs) - known_topics)
    if unknown:
        raise SubscriberError(f"Unknown topic: {', '.join(unknown)}")
    report = ImportReport()
    rows_done = skip_rows

    def note(problem: Problem) -> None:
        _count_problem(report, problem)
        on_problem(problem)

    chunk: list[Row] = []
    read = 0  # rows read since the last commit, imported or not
    for index, item in enumerate(read_rows(path, topic_slugs, known_topics)):
        if index < skip_rows:
            continue
        read += 1
        if isinstance(item, Problem):
            note(item)
            on_rows(1)
            continue
        chunk.append(item)
        if len(chunk) >= chunk_rows:
            rows_done += read
            _import_chunk(chunk, path.name, is_confirmed, report, note, rows_done, on_chunk)
            on_rows(len(chunk))
            chunk, read = [], 0
    if read:
        rows_done += read
        _import_chunk(chunk, path.name, is_confirmed, report, note, rows_done, on_chunk)
        on_rows(len(chunk))
    return report


def _count_problem(report: ImportReport, problem: Problem) -> None:
    report.problems.append(problem)
    if problem.is_error:
        report.errors += 1
    else:
        report.skipped += 1


def _import_chunk(rows: list[Row], source_name: str, is_confirmed: bool, report: ImportReport,
                  note: Callable[[Problem], None], rows_done: int, on_chunk: Callable[[Progress], None]) -> None:
    """Add one chunk of checked rows in one transaction."""

    def work() -> tuple[int, list[Problem], int]:
        added = _add(rows, source_name, is_confirmed) if rows else (0, [], 0)
        imported, problems, already_known = added
        after = ImportReport(report.imported + imported, report.skipped + already_known, report.errors,
                             list(report.problems))
        for problem in problems:
            _count_problem(after, problem)
        on_chunk(Progress(rows_done, after))
        return added

    # Someone may sign up with one of these addresses meanwhile: then the chunk looks again, once.
    imported, problems, already_known = db.commit_retrying_once(work)
    report.imported += imported
    report.skipped += already_known
    for problem in problems:
        note(problem)


def _add(rows: list[Row], source_name: str, is_confirmed: bool) -> tuple[int, list[Problem], int]:
    emails = [r.email for r in rows]
    suppressed = queries.suppression_reasons(emails)
    known = queries.known_addresses(emails)
    imported, problems, already_known = 0, [], 0
    for row in rows:
        if row.email in suppressed:
            reason = _SUPPRESSED.get(suppressed[row.email], suppressed[row.email])
            problems.append(Problem(row.line, f"{row.email}: {reason}; an import does not subscribe it again", False))
        elif row.email in known:
            already_known += 1
        elif is_confirmed:
            operations.import_confirmed(db.session, email=row.email, name=row.name, topic_slugs=row.topic_slugs,
                                        source_name=source_name)
            imported += 1
        else:
            operations.sign_up(db.session, email=row.email, name=row.name, topic_slugs=row.topic_slugs,
                               meta=operations.RequestMeta(source="import", form_id=source_name[:50]))
            imported += 1
    return imported, problems, already_known
