"""`mailer subscribers …`: look up, import, export, and (GDPR) hand over or erase a subscriber's data."""

from __future__ import annotations

import json
import re
import sys
from datetime import datetime, timezone
from pathlib import Path

import click
from flask import current_app

from mailer import db
from mailer.cli import app_context
from mailer.errors import NotFound, SubscriberError
from subscribers import embed, exporting, importing, operations, queries
from subscribers.models import Subscriber


@click.group()
def subscribers():
    """Subscribers and their consent."""


def _subscriber(email: str) -> Subscriber:
    subscriber = queries.by_email(operations.normalise_email(email))
    if subscriber is None:
        raise NotFound(f"no subscriber with address {email}")
    return subscriber


@subscribers.command("show")
@click.argument("email")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@app_context
def show(email, as_json):
    """State, topics and the consent history of EMAIL."""
    data = queries.personal_data(_subscriber(email))
    if as_json:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    # Plain lines, not a table: a consent record is read by people on 80 columns and by grep.
    click.echo(data["email"] + (f" ({data['name']})" if data["name"] else ""))
    state = data["state"] + (", paused" if data["is_paused"] else "")
    click.echo(f"  state: {state}; topics: {', '.join(data['topics']) or 'all (none chosen)'}")
    click.echo("  " + "; ".join(f"{label} {_when(data[key])} UTC" for label, key in (
        ("signed up", "created_at"), ("confirmed", "confirmed_at"), ("unsubscribed", "unsubscribed_at"))
        if data[key]))
    click.echo("consent history (times in UTC):")
    actions = [event["action"].replace("_", " ") for event in data["consent_history"]]
    width = max(map(len, actions), default=0)
    for action, event in zip(actions, data["consent_history"]):
        detail = _detail(event)
        click.echo(f"  {_when(event['occurred_at'])}  {action:<{width}}  policy {event['privacy_policy_version']}"
                   f"  {_how(event)}{'; ' + detail if detail else ''}")
    sent = sum(1 for message in data["mail"] if message["state"] == "sent")
    click.echo(f"{len(data['mail'])} messages queued, {sent} sent; {len(data['clicks'])} clicks "
               "(everything, with IP addresses and the consent text: --json)")


# The page (form id) a consent event was recorded on, in words.
PAGES = {"subscribe": "signup form", "confirm": "confirmation page", "preferences": "preferences page",
         "unsubscribe": "unsubscribe page"}


def _how(event: dict) -> str:
    """Where a consent event came from, in words: "signup form, from 203.0.113.7"."""
    source, form_id = event["source"] or "", event["form_id"] or ""
    if source == "one-click":
        how = "one-click unsubscribe in the mail program"
    elif source == "import":
        how = "CSV import"
    elif source == "web":
        how = PAGES.get(form_id, f"web form {form_id}" if form_id else "web")
    else:
        how = " ".join(filter(None, [source, form_id]))
    return f"{how}, from {event['ip_address']}" if event["ip_address"] else how


def _detail(event: dict) -> str:
    if event["action"] in ("given", "topics_changed") and event["detail"]:
        return "topics: " + event["detail"].replace(",", ", ")
    return event["detail"]


def _when(iso: str) -> str:
    """"2026-11-21 22:36:25" from an aware ISO timestamp: a person reads seconds, not microseconds."""
    return datetime.fromisoformat(iso).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


@subscribers.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--topics", default="", metavar="a,b", help="Topic slugs every imported subscriber follows.")
@click.option("--confirmed", "is_confirmed", is_flag=True,
              help="Confirm the imported subscribers at once, without a confirmation mail. Only for lists whose "
                   "people already gave consent elsewhere: the consent event `imported` names this file as proof.")
@app_context
def import_(file, topics, is_confirmed):
    """Import subscribers from FILE, a UTF-8 CSV with a header line.

    Columns: email (required), name, topics (slugs separated by ";"). Every address is checked; bad
    rows are reported with their line number and skipped. Addresses already known are skipped;
    unsubscribed, bounced and erased addresses are reported and never subscribed again by an import.
    Without --confirmed, new subscribers are pending and get the confirmation mail (double opt-in).
    Rows are committed 500 at a time: after a crash, run the same import again.
    Exits 1 when some rows had errors.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    topic_slugs = [s.strip() for s in topics.split(",") if s.strip()]
    total = importing.count_rows(file)
    console = Console(stderr=True)
    with Progress(TextColumn("importing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, disable=not console.is_terminal) as progress:
        task = progress.add_task("import", total=total)
        report = importing.import_csv(
            file, topic_slugs=topic_slugs, is_confirmed=is_confirmed,
            on_rows=lambda n: progress.advance(task, n),
            on_problem=lambda problem: click.echo(str(problem), err=True))
    click.echo(report.summary())
    if report.errors:
        sys.exit(1)


@subscribers.command("export")
@click.argument("file", required=False, type=click.Path(dir_okay=False, writable=True, allow_dash=True,
                                                        path_type=Path))
@app_context
def export(file):
    """Write every subscriber as CSV to FILE (or standard output): email, name, state, topics,
    created_at, confirmed_at.

    No one is left out; state says pending, confirmed, unsubscribed, with " (paused)" when paused.
    Topics are separated by ";", so the file can be imported again. A name that a spreadsheet would
    run as a formula starts with a ' (import takes it off).
    """
    if file is None or str(file) == "-":
        count = exporting.write_csv(sys.stdout)
    else:
        try:
            out = file.open("w", newline="", encoding="utf-8")
        except OSError as exc:
            raise SubscriberError(f"cannot write {file}: {exc.strerror or exc}") from None
        with out:
            count = exporting.write_csv(out)
    click.echo(f"exported {count} subscribers", err=True)


@subscribers.command("export-data")
@click.argument("email")
@app_context
def export_data(email):
    """Everything we hold about EMAIL, as JSON (GDPR access and portability, Art. 15 and 20)."""
    click.echo(json.dumps(queries.personal_data(_subscriber(email)), indent=2, ensure_ascii=False))


@subscribers.command("erase", short_help="Erase EMAIL and their data (GDPR Art. 17).")
@click.argument("email")
@app_context
def erase(email):
    """Erase EMAIL (GDPR Art. 17): subscriber, consent history and topic choices are deleted.

    Messages sent to them keep only their counts, clicks stay anonymous, copies the maildir backend
    wrote are deleted, and the suppression list keeps a keyed hash of the address (not the address) so
    no import or send reaches them again. Only the person can come back, by signing up on the web form
    and confirming.
    """
    subscriber = _subscriber(email)
    address = subscriber.email
    erasure = operations.erase(db.session, subscriber)
    db.session.commit()
    config = current_app.config["MAILER"]
    copies = ""
    if config["mail"]["backend"] == "maildir":
        copies = f", {operations.forget_in_maildir(config['mail']['maildir'], address)} Maildir copies deleted"
    click.echo(f"erased {email}: {erasure.consent_events} consent events, {erasure.topics} topic choices; "
               f"{erasure.messages} messages blanked, {erasure.clicks} clicks made anonymous{copies}")


@click.group()
def signup():
    """The signup form on other sites."""


@signup.command("embed")
@click.option("--form-id", default=embed.SNIPPET_FORM_ID, show_default=True,
              help="Kept with each consent from this box (letters, digits, - and _; up to 50).")
@click.option("--frame", "framed", is_flag=True,
              help="An iframe of /subscribe?embed=1 instead (needs signup.embed_origins).")
@app_context
def embed_snippet(form_id, framed):
    """Print the HTML that puts the signup box on the blog's pages."""
    from flask import current_app

    if not re.fullmatch(r"[A-Za-z0-9_-]{1,50}", form_id):
        raise click.UsageError("--form-id takes letters, digits, - and _ (up to 50)")
    config = current_app.config["MAILER"]
    if framed and not config["signup"]["embed_origins"].split():
        raise SubscriberError("set signup.embed_origins to the blog's origin (https://blog.example.org) "
                              "first: no other site may frame the form")
    click.echo(embed.snippet(config, current_app.config["SECRET_KEY"], current_app.jinja_env,
                             form_id=form_id, framed=framed))
