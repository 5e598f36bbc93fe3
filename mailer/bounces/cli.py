"""`mailer bounces …`: read the bounce mailbox and suppress what bounced or complained."""

from __future__ import annotations

import click
from flask import current_app

from mailer.bounces import mailboxes
from mailer.cli import app_context


@click.group()
def bounces():
    """Bounces (DSNs) and complaints (ARF) read back from the bounce mailbox."""


@bounces.command("process")
@click.option("--maildir", "maildir", metavar="DIR", type=click.Path(file_okay=False),
              help="Read the Maildir DIR (its new/ messages; each moves to cur/ once read).")
@click.option("--imap", "use_imap", is_flag=True, help="Read the IMAP folder set in [bounces] (its unseen messages).")
@app_context
def process(maildir, use_imap):
    """Read new bounces and complaints once: hard bounces and complaints suppress the address at once,
    soft bounces after bounces.soft_limit within bounces.soft_days. Without an option, the configured
    mailbox (bounces.imap_host, else bounces.maildir) is read."""
    if maildir and use_imap:
        raise click.UsageError("give --maildir DIR or --imap, not both")
    where, tally = mailboxes.process_configured(current_app.config["MAILER"], maildir=maildir, use_imap=use_imap)
    click.echo(f"{where}: {tally.line()}")
