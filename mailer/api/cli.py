"""`mailer tokens …`: bearer tokens for the JSON API at /api/v1/."""

from __future__ import annotations

import click

from mailer import db
from mailer.api import operations, queries
from mailer.cli import app_context, echo_rows, minute
from mailer.editors import operations as editor_operations

CLI = editor_operations.Actor(None, "")


@click.group()
def tokens():
    """Bearer tokens for the JSON API (/api/v1/)."""


@tokens.command("create")
@click.option("--scope", required=True, type=click.Choice(operations.SCOPES),
              help="read: GET routes only; write: every route (subscribe, publish articles, schedules).")
@click.option("--name", default="", help="What the token is for, e.g. \"blog CMS\".")
@app_context
def create(scope, name):
    """Create a token and print its secret, once: only its SHA-256 is kept."""
    new = operations.create(db.session, scope, name)
    editor_operations.record(db.session, CLI, "api_token.create", new.token, f"{scope} {name}".strip())
    db.session.commit()
    click.echo(new.secret)
    click.echo(f"token {new.token.id} ({scope}{', ' + name if name else ''}) created. Copy the secret above now: "
               f"it is not shown again. Send it as `Authorization: Bearer …`.", err=True)


@tokens.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@app_context
def list_(as_json):
    """One row per token: id, name, scope, created, last used, revoked."""
    def line(row):
        state = f"revoked {minute(row['revoked_at'])}" if row["revoked_at"] else "active"
        return (f"{row['id']:>4}  {row['scope']:<5}  {row['prefix']}…  {row['name'] or '-'}  "
                f"created {minute(row['created_at'])}  last used {minute(row['last_used_at'])}  {state}")

    echo_rows([queries.as_row(t) for t in queries.all_tokens(db.session)], as_json=as_json,
              empty="no API tokens yet: create one with `mailer tokens create --scope read`", line=line)


@tokens.command("revoke")
@click.argument("token_id", type=int)
@app_context
def revoke(token_id):
    """Revoke token TOKEN_ID: requests with it get 401 from now on."""
    token = operations.revoke(db.session, token_id)
    editor_operations.record(db.session, CLI, "api_token.revoke", token)
    db.session.commit()
    click.echo(f"token {token.id} revoked")
