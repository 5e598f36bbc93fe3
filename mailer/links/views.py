"""Thin handlers for tracked links: check the token, record, redirect to the sealed URL."""

from __future__ import annotations

import base64

from flask import Response, redirect, request

from mailer import db
from mailer.links import operations, tokens

# A transparent 1×1 GIF for the open pixel.
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")


def follow(token: str):
    """GET /l/<token>: count the click and send the reader on to the Link row's URL, and only there.

    The query string is never read: a `?url=` or `next=` cannot turn this into an open redirect.
    """
    sealed = tokens.read(token)
    if request.method == "HEAD":  # link scanners probe with HEAD; a reader's click is a GET
        link = operations.link_to_follow(db.session, sealed)
    else:
        link = operations.record_click(db.session, sealed, request.headers.get("User-Agent", ""))
        db.session.commit()
    response = redirect(link.url, code=302)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def opened(token: str):
    """GET /o/<token>: the open pixel (only in mail when tracking.opens is on)."""
    operations.record_open(db.session, tokens.read(token), request.headers.get("User-Agent", ""))
    db.session.commit()
    return Response(PIXEL, mimetype="image/gif", headers={"Cache-Control": "no-store"})
