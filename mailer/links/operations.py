"""Writes of tracked links: recording a click or an open."""

from __future__ import annotations

from flask import current_app
from sqlalchemy.orm import Session

from mailer import clock
from mailer.links.models import Click, Link
from mailer.errors import InvalidToken, NotFound
from mailer.links.queries import OPEN, READ
from mailer.links.tokens import LinkToken
from mailer.webhooks import operations as webhooks
from subscribers.models import Subscriber

# Only these schemes are ever redirected to, whatever a Link row says.
SAFE_SCHEMES = ("https://", "http://")


def record_click(session: Session, sealed: LinkToken) -> Link:
    """Record a click on the link sealed in a token and return the link to redirect to.

    The recipient is kept only while per-recipient tracking is on and the subscriber still exists
    (an erased subscriber's old mail counts anonymously).
    """
    link = link_to_follow(session, sealed)
    click = _add_click(session, link, sealed)
    if link.kind not in (READ, OPEN) and not click.is_scanner:
        webhooks.action_clicked(session, click, link)
    return link


def link_to_follow(session: Session, sealed: LinkToken) -> Link:
    """The link a token seals, checked to be a followable web address (no click recorded)."""
    link = _sealed_link(session, sealed)
    if link.kind == OPEN or not link.url.lower().startswith(SAFE_SCHEMES):
        raise InvalidToken("This link is not valid.")
    return link


def record_open(session: Session, sealed: LinkToken) -> None:
    """Record an open seen by the pixel (only ever in mail when tracking.opens is on)."""
    link = _sealed_link(session, sealed)
    if link.kind != OPEN:
        raise InvalidToken("This link is not valid.")
    _add_click(session, link, sealed)


def _sealed_link(session: Session, sealed: LinkToken) -> Link:
    link = session.get(Link, sealed.link_id)
    if link is None:
        raise NotFound("This link no longer works: the message it came from has been removed.")
    if link.send_id != sealed.send_id:
        raise InvalidToken("This link is not valid.")
    return link


def _add_click(session: Session, link: Link, sealed: LinkToken) -> Click:
    subscriber_id = sealed.subscriber_id
    if not current_app.config["MAILER"]["tracking"]["per_recipient"]:
        subscriber_id = None
    elif subscriber_id is not None and session.get(Subscriber, subscriber_id) is None:
        subscriber_id = None
    click = Click(link_id=link.id, send_id=link.send_id, subscriber_id=subscriber_id, clicked_at=clock.now())
    session.add(click)
    return click
