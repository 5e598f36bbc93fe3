"""Exporting subscribers as CSV, streamed, in the columns `mailer subscribers import` reads back."""

from __future__ import annotations

import csv
from typing import TextIO

from subscribers import queries
from subscribers.importing import FORMULA_STARTS

COLUMNS = ("email", "name", "state", "topics", "created_at", "confirmed_at")


def defused(cell: str) -> str:
    """A cell a spreadsheet shows as text: one that would start a formula gets a leading quote (OWASP)."""
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def write_csv(out: TextIO) -> int:
    """Write every subscriber, whatever their state, to `out`; return how many."""
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    count = 0
    for subscriber in queries.every_subscriber():
        writer.writerow([
            defused(subscriber.email),  # "=1+2@example.org" is a valid address: a formula to a spreadsheet
            defused(subscriber.name),
            subscriber.state.value + (" (paused)" if subscriber.is_paused else ""),
            ";".join(t.slug for t in subscriber.topics),
            subscriber.created_at.isoformat(),
            subscriber.confirmed_at.isoformat() if subscriber.confirmed_at else "",
        ])
        count += 1
    return count
