"""The bounce mailbox: a Maildir on this host or an IMAP folder, read message by message.

Each message is recorded and committed, then marked so that it is never read again: in a Maildir it
moves from new/ to cur/ flagged Seen (`:2,S`); over IMAP it is flagged \\Seen, and only unseen messages
are read. A run stopped between the commit and the mark reads that message again, and its reference
makes the second reading a no-op.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from flask import current_app

from mailer import db
from mailer.bounces import operations, reports
from mailer.bounces.operations import BounceSettings, Outcome, Tally
from mailer.errors import BounceError

log = logging.getLogger(__name__)

Handler = Callable[[bytes], Outcome]
FETCH_EVERY = 50  # messages fetched from the IMAP server at a time
IMAP_TIMEOUT = 30  # seconds


def handler(source: str) -> Handler:
    """Record one raw message from `source` (maildir, imap) and commit; inside the app."""
    config = current_app.config["MAILER"]
    settings = BounceSettings.from_config(config)
    secret = current_app.config["SECRET_KEY"]

    def handle(raw: bytes) -> Outcome:
        report = reports.read(raw, settings.return_path)
        try:
            outcome = operations.record(db.session, report, source=source, secret=secret, settings=settings)
            db.session.commit()
        except Exception:
            db.session.rollback()
            raise
        return outcome

    return handle


def process_maildir(path: str | Path, handle: Handler) -> Tally:
    """Read every message in the Maildir's new/, then move it to cur/ flagged Seen."""
    root = Path(path)
    new, cur = root / "new", root / "cur"
    if not new.is_dir() or not cur.is_dir():
        raise BounceError(f"{path} is not a Maildir: it needs the folders new/ and cur/")
    tally = Tally()
    for entry in sorted(new.iterdir()):
        if entry.name.startswith(".") or not entry.is_file():
            continue
        try:
            raw = entry.read_bytes()
        except FileNotFoundError:  # another reader moved it first
            continue
        tally.add(handle(raw))
        try:
            entry.rename(cur / f"{entry.name}:2,S")
        except FileNotFoundError:
            pass
    return tally


def process_imap(settings: Mapping[str, Any], handle: Handler) -> Tally:
    """Read the unseen messages of `bounces.imap_folder`, flagging each \\Seen once it is recorded."""
    from imapclient import IMAPClient, SEEN
    from imapclient.exceptions import IMAPClientError, LoginError

    host, port, security = settings["imap_host"], settings["imap_port"], settings["imap_security"]
    where = f"the bounce mailbox at {host}:{port}"
    context = ssl.create_default_context()
    try:
        client = IMAPClient(host, port=port, ssl=security == "tls", ssl_context=context, timeout=IMAP_TIMEOUT)
    except (OSError, IMAPClientError) as exc:
        raise BounceError(f"cannot reach {where}: {_reason(exc)}") from None
    tally = Tally()
    try:
        if security == "starttls":
            client.starttls(context)
        client.login(settings["imap_username"], settings["imap_password"])
        client.select_folder(settings["imap_folder"])
        unseen = client.search(["UNSEEN"])
        for start in range(0, len(unseen), FETCH_EVERY):
            chunk = unseen[start:start + FETCH_EVERY]
            fetched = client.fetch(chunk, ["BODY.PEEK[]"])
            for uid in chunk:
                raw = fetched.get(uid, {}).get(b"BODY[]")
                if raw is None:  # expunged by someone else meanwhile
                    continue
                tally.add(handle(raw))
                client.add_flags([uid], [SEEN])
    except LoginError:
        raise BounceError(f"{where} refused the login of bounces.imap_username") from None
    except (OSError, IMAPClientError) as exc:
        raise BounceError(f"{where} failed: {_reason(exc)}") from None
    finally:
        try:
            client.logout()
        except (OSError, IMAPClientError):
            pass
    return tally


def process_configured(config, *, maildir: str | None = None, use_imap: bool = False) -> tuple[str, Tally]:
    """Read the mailbox asked for (or the configured one: IMAP, else bounces.maildir); (what was read, tally)."""
    bounces = config["bounces"]
    if maildir is None and not use_imap:
        if bounces["imap_host"]:
            use_imap = True
        elif bounces["maildir"]:
            maildir = bounces["maildir"]
        else:
            raise BounceError("no bounce mailbox: give --maildir DIR or --imap, or set bounces.imap_host "
                              "or bounces.maildir")
    if use_imap:
        if not bounces["imap_host"]:
            raise BounceError("--imap needs bounces.imap_host (and imap_username, imap_password) in the config")
        return f"{bounces['imap_host']}:{bounces['imap_port']}", process_imap(bounces, handler("imap"))
    return str(maildir), process_maildir(maildir, handler("maildir"))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed ({exc.reason or exc})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = exc.args[0] if exc.args else exc.__class__.__name__
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return " ".join(str(text).split())[:200] or exc.__class__.__name__
