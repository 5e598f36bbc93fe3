"""Thin handlers for the public archive: the list, one send's web version, and the Atom feed."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from flask import Response, current_app, render_template

from mailer import clock, db, emails
from mailer.sends import operations, queries
from mailer.errors import NotFound

ATOM = "http://www.w3.org/2005/Atom"
FEED_ENTRIES = 50
WEB_VERSION_POLICY = ("default-src 'none'; img-src https: http: data:; style-src 'unsafe-inline'; "
                      "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


def index():
    db.reading()  # the archive's pages only read: they need not queue for SQLite's write lock
    return render_template("archive.html", sends=queries.archived_sends(db.session))


def show(slug: str):
    """The web version of a send: the mail as sent to everyone, with anonymous links and no personal ones."""
    db.reading()
    send = queries.archived_send(db.session, slug)
    if send is None:
        raise NotFound("There is no update at this address.")
    return _web_page(send.archive_html)


def show_variant(slug: str, variant_id: int):
    """The web version of one variant: the send as the readers of one topic set got it ("View in your
    browser" in their mail), with anonymous links and no personal ones."""
    send = queries.archived_send(db.session, slug)
    variant = queries.variant_of(db.session, send.id, variant_id) if send is not None else None
    rendered = operations.variant_web_version(db.session, send, variant) if variant is not None else None
    if rendered is None:
        raise NotFound("There is no update at this address.")
    return _web_page(rendered.html)


def _web_page(html: str) -> Response:
    response = Response(html, mimetype="text/html")
    # The page is mail: inline styles and remote images, never scripts or frames.
    response.headers["Content-Security-Policy"] = WEB_VERSION_POLICY
    return response


def atom():
    """The archive as an Atom feed (RFC 4287), newest first."""
    config = current_app.config["MAILER"]
    db.reading()
    sends = queries.archived_sends(db.session, limit=FEED_ENTRIES)
    ET.register_namespace("", ATOM)
    feed = ET.Element(f"{{{ATOM}}}feed")
    _text(feed, "title", f"{config.site_name} updates")
    _text(feed, "id", emails.absolute_url(config, "/archive/"))
    _text(feed, "updated", (sends[0].queued_at if sends else clock.now()).isoformat())
    ET.SubElement(feed, f"{{{ATOM}}}link", rel="self", href=emails.absolute_url(config, "/archive.atom"))
    ET.SubElement(feed, f"{{{ATOM}}}link", rel="alternate", type="text/html",
                  href=emails.absolute_url(config, "/archive/"))
    author = ET.SubElement(feed, f"{{{ATOM}}}author")
    _text(author, "name", config.site_name)
    for send in sends:
        url = emails.absolute_url(config, f"/archive/{send.slug}")
        entry = ET.SubElement(feed, f"{{{ATOM}}}entry")
        _text(entry, "title", send.subject)
        _text(entry, "id", url)
        _text(entry, "updated", send.queued_at.isoformat())
        _text(entry, "published", send.queued_at.isoformat())
        ET.SubElement(entry, f"{{{ATOM}}}link", rel="alternate", type="text/html", href=url)
        _text(entry, "summary", send.preheader or send.subject)
    body = ET.tostring(feed, encoding="utf-8", xml_declaration=True)
    return Response(body, mimetype="application/atom+xml")


def _text(parent: ET.Element, name: str, value: str) -> ET.Element:
    element = ET.SubElement(parent, f"{{{ATOM}}}{name}")
    element.text = value
    return element
