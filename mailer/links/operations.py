"""Writes of tracked links: recording a click or an open."""

from __future__ import annotations

from flask import current_app
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from mailer import clock
from mailer.links.models import Click, Link
from mailer.errors import InvalidToken, NotFound
from mailer.links import scanners
from mailer.links.queries import OPEN, READ
from mailer.links.tokens import LinkToken
from mailer.webhooks import operations as webhooks
from subscribers.models import Subscriber

# Only these schemes are ever redirected to, whatever a Link row says.
SAFE_SCHEMES = ("https://", "http://")


def record_click(session: Session, sealed: LinkToken, user_agent: str = "") -> Link:
    """Record a click on the link sealed in a token and return the link to redirect to.

    The recipient is kept only while per-recipient tracking is on and the subscriber still exists
    (an erased subscriber's old mail counts anonymously). A security scanner's fetch is recorded
    too, flagged `is_scanner` (mailer.links.scanners), so the figures can leave it out.
    """
    link = link_to_follow(session, sealed)
    click = _add_click(session, link, sealed, user_agent)
    if link.kind not in (READ, OPEN) and not click.is_scanner:
        webhooks.action_clicked(session, click, link)
    return link


def link_to_follow(session: Session, sealed: LinkToken) -> Link:
    """The link a token seals, checked to be a followable web address (no click recorded)."""
    link = _sealed_link(session, sealed)
    if link.kind == OPEN or not link.url.lower().startswith(SAFE_SCHEMES):
        raise InvalidToken("This link is not valid.")
    return link


def record_open(session: Session, sealed: LinkToken, user_agent: str = "") -> None:
    """Record an open seen by the pixel (only ever in mail when tracking.opens is on)."""
    link = _sealed_link(session, sealed)
    if link.kind != OPEN:
        raise InvalidToken("This link is not valid.")
    _add_click(session, link, sealed, user_agent)


def _sealed_link(session: Session, sealed: LinkToken) -> Link:
    link = session.get(Link, sealed.link_id)
    if link is None:
        raise NotFound("This link no longer works: the message it came from has been removed.")
    if link.send_id != sealed.send_id:
        raise InvalidToken("This link is not valid.")
    return link


def _add_click(session: Session, link: Link, sealed: LinkToken, user_agent: str) -> Click:
    subscriber_id = sealed.subscriber_id
    if not current_app.config["MAILER"]["tracking"]["per_recipient"]:
        subscriber_id = None
    elif subscriber_id is not None and session.get(Subscriber, subscriber_id) is None:
        subscriber_id = None
    now = clock.now()
    is_scanner = scanners.is_scanner_agent(user_agent)
    if not is_scanner and subscriber_id is not None and link.kind != OPEN:
        is_scanner = _flag_burst(session, link, subscriber_id, now)
    click = Click(link_id=link.id, send_id=link.send_id, subscriber_id=subscriber_id, clicked_at=now,
                  is_scanner=is_scanner)
    session.add(click)
    return click


def _flag_burst(session: Session, link: Link, subscriber_id: int, now) -> bool:
    """Whether this click completes a scanner's burst on one mail; if so, the burst's earlier clicks
    are flagged too (they looked like a reader's until this one)."""
    recent = session.execute(
        select(Click.id, Click.link_id).join(Link, Click.link_id == Link.id).where(
            Click.send_id == link.send_id, Click.subscriber_id == subscriber_id, Link.kind != OPEN,
            Click.clicked_at > now - scanners.BURST_WINDOW)).all()
    links_in_mail = session.scalar(select(func.count()).select_from(Link).where(
        Link.send_id == link.send_id, Link.kind != OPEN)) or 0
    if not scanners.is_burst({row.link_id for row in recent} | {link.id}, links_in_mail):
        return False
    session.execute(update(Click).where(Click.id.in_([row.id for row in recent])).values(is_scanner=True))
    return True
