"""`mailer subscribers …`: look up a subscriber and their consent history."""

from __future__ import annotations

import json

import click

from mailer.cli import app_context
from mailer.errors import NotFound
from subscribers import operations, queries


@click.group()
def subscribers():
    """Subscribers and their consent."""


@subscribers.command("show")
@click.argument("email")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@app_context
def show(email, as_json):
    """State, topics and the consent history of EMAIL."""
    subscriber = queries.by_email(operations.normalise_email(email))
    if subscriber is None:
        raise NotFound(f"no subscriber with address {email}")
    data = queries.personal_data(subscriber)
    if as_json:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"[bold]{data['email']}[/bold]  state: {data['state']}"
                  f"{' (paused)' if data['is_paused'] else ''}  topics: {', '.join(data['topics']) or 'all'}")
    table = Table("time", "action", "policy version", "source", "detail")
    for e in data["consent_history"]:
        table.add_row(e["occurred_at"], e["action"], e["privacy_policy_version"], e["source"] or "", e["detail"])
    console.print(table)
