"""`mailer users …`: editor accounts for the workspace at /admin/."""

from __future__ import annotations

import sys

import click

from mailer import db
from mailer.cli import app_context, echo_rows, minute
from mailer.editors import operations, queries
from mailer.errors import EditorError

CLI = operations.Actor(None, "")


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise EditorError("no terminal to ask for a password: pipe it in with --password-stdin")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


@click.group()
def users():
    """Editor accounts for the workspace at /admin/."""


@users.command("create")
@click.argument("email")
@click.option("--role", required=True, type=click.Choice(["admin", "editor"]),
              help="admin: everything, including accounts; editor: content, subscribers and sends.")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
@app_context
def create(email, role, password_stdin):
    """Create an account that signs in at /admin/ (the password is asked for)."""
    password = _read_password(password_stdin)
    editor = operations.create(db.session, email, password, role, CLI)
    db.session.commit()
    click.echo(f"created {editor.role.value} {editor.email} (id {editor.id}); sign in at /admin/")


@users.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@app_context
def list_(as_json):
    """One row per account: id, role, address, two-factor, last sign-in."""
    def line(row):
        state = " disabled" if row["disabled"] else ""
        factor = "2fa" if row["two_factor"] else "no-2fa"
        return f"{row['id']:>4}  {row['role']:<6}  {row['email']}  {factor}{state}  last {minute(row['last_login_at'])}"

    echo_rows([queries.as_row(e) for e in queries.all_editors(db.session)], as_json=as_json,
              empty="no accounts yet: add one with `mailer users create EMAIL --role admin`", line=line)


@users.command("set-role")
@click.argument("email")
@click.argument("role", type=click.Choice(["admin", "editor"]))
@app_context
def set_role(email, role):
    """Make EMAIL an admin or an editor."""
    editor = operations.get(db.session, email)
    operations.set_role(db.session, editor, role, CLI)
    db.session.commit()
    click.echo(f"{editor.email} is now {role}")


@users.command("disable")
@click.argument("email")
@click.option("--enable", is_flag=True, help="Let a disabled account sign in again.")
@app_context
def disable(email, enable):
    """Stop EMAIL signing in; its open sessions end at once."""
    editor = operations.get(db.session, email)
    if enable:
        operations.enable(db.session, editor, CLI)
    else:
        operations.disable(db.session, editor, CLI)
    db.session.commit()
    click.echo(f"{editor.email} is {'enabled' if enable else 'disabled'}")


@users.command("reset-password")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="Read the new password from the first line of stdin.")
@click.option("--remove-2fa", is_flag=True, help="Also remove two-factor (the editor lost the phone and codes).")
@app_context
def reset_password(email, password_stdin, remove_2fa):
    """Set a new password for EMAIL; its open sessions end."""
    editor = operations.get(db.session, email)
    operations.set_password(db.session, editor, _read_password(password_stdin), CLI)
    if remove_2fa:
        operations.remove_totp(db.session, editor, CLI)
    db.session.commit()
    click.echo(f"new password set for {editor.email}" + ("; two-factor removed" if remove_2fa else ""))
