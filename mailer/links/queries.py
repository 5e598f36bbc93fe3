"""Reads of tracked links: click counts per link and per send, unique per recipient.

Every figure counts readers only: a security scanner's fetch (`Click.is_scanner`) is counted apart,
by `scanner_clicks` and `LinkClicks.scanner_clicks`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session

from mailer.links.models import Click, Link

OPEN = "open"  # the kind of the one Link per send that the open pixel counts on
READ = "read"  # a "Read more": every other kind but OPEN is an action link (sign, donate, ...)
BY_READER = Click.is_scanner.is_(False)


@dataclass(frozen=True)
class LinkClicks:
    link_id: int
    label: str
    kind: str
    url: str
    clicks: int
    unique_clickers: int  # distinct known recipients; anonymous clicks are not in here
    anonymous_clicks: int
    scanner_clicks: int  # security scanners' fetches: in none of the figures above


def clicks_per_link(session: Session, send_id: int) -> list[LinkClicks]:
    """Every clickable link of a send with its counts, most clicked first."""
    rows = session.execute(
        select(Link.id, Link.label, Link.kind, Link.url,
               func.count(Click.id).filter(BY_READER),
               func.count(distinct(Click.subscriber_id)).filter(BY_READER),
               func.count(Click.id).filter(Click.subscriber_id.is_(None), BY_READER),
               func.count(Click.id).filter(Click.is_scanner.is_(True)))
        .outerjoin(Click, Click.link_id == Link.id)
        .where(Link.send_id == send_id, Link.kind != OPEN)
        .group_by(Link.id, Link.label, Link.kind, Link.url)
        .order_by(func.count(Click.id).filter(BY_READER).desc(), Link.id))
    return [LinkClicks(*row) for row in rows]


def clicks_for_send(session: Session, send_id: int) -> int:
    """All readers' clicks on a send's links (opens and scanners not included)."""
    return session.scalar(
        select(func.count(Click.id)).join(Link, Click.link_id == Link.id)
        .where(Click.send_id == send_id, Link.kind != OPEN, BY_READER)) or 0


def scanner_clicks(session: Session, send_id: int) -> int:
    """Security scanners' fetches of a send's links, left out of every other figure."""
    return session.scalar(
        select(func.count(Click.id)).join(Link, Click.link_id == Link.id)
        .where(Click.send_id == send_id, Link.kind != OPEN, Click.is_scanner.is_(True))) or 0


def unique_clickers(session: Session, send_id: int) -> int:
    """How many distinct recipients clicked at least one link of a send."""
    return session.scalar(
        select(func.count(distinct(Click.subscriber_id))).join(Link, Click.link_id == Link.id)
        .where(Click.send_id == send_id, Link.kind != OPEN, BY_READER)) or 0


def opens(session: Session, send_id: int) -> tuple[int, int]:
    """(opens, unique openers) counted by the pixel; zero unless tracking.opens was on."""
    row = session.execute(
        select(func.count(Click.id), func.count(distinct(Click.subscriber_id)))
        .join(Link, Click.link_id == Link.id)
        .where(Click.send_id == send_id, Link.kind == OPEN, BY_READER)).one()
    return row[0], row[1]


def action_clickers(session: Session, send_id: int) -> int:
    """How many distinct recipients clicked at least one action link (not a "Read more") of a send."""
    return session.scalar(
        select(func.count(distinct(Click.subscriber_id))).join(Link, Click.link_id == Link.id)
        .where(Click.send_id == send_id, Link.kind.not_in((READ, OPEN)), BY_READER)) or 0


def click_times(session: Session, send_id: int, since: datetime, until: datetime) -> list[datetime]:
    """When each click on a send's links (opens not included) happened between `since` and `until`."""
    return list(session.scalars(
        select(Click.clicked_at).join(Link, Click.link_id == Link.id)
        .where(Click.send_id == send_id, Link.kind != OPEN, BY_READER, Click.clicked_at >= since,
               Click.clicked_at < until)
        .order_by(Click.clicked_at)))
