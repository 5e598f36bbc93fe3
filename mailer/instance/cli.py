"""`mailer init`, `mailer doctor` and `mailer backup`: making, checking and copying an instance."""

from __future__ import annotations

from pathlib import Path

import click

from mailer import config as config_module
from mailer import instance


@click.command()
@click.argument("folder", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.pass_context
def init(ctx, folder):
    """Make FOLDER (default: the instance folder) a new instance: config.toml, secret key, database.

    On an existing instance it only adds what is missing and migrates the database; it never overwrites.
    """
    home = config_module.home_folder(home=folder or ctx.find_root().obj.get("home"))
    for line in instance.create(home):
        click.echo(line)
    hint = "mailer serve" if home == Path.cwd() else f"MAILER_HOME={home} mailer serve"
    click.echo(f"instance ready in {home}; start it with `{hint}`")


@click.command()
@click.option("--dkim-record", default="", metavar="TXT",
              help="The DKIM record as published (from `dig TXT SELECTOR._domainkey.DOMAIN`), to compare with the key.")
@click.pass_context
def doctor(ctx, dkim_record):
    """Check this instance before its first real send: relay, DKIM key, base URL, database, bounce
    mailbox; then print the DNS records to publish. Exit status 1 when a check fails."""
    from mailer.instance import doctor as doctor_module

    config = config_module.load(home=ctx.find_root().obj.get("home"))
    instance.require(config)
    findings = doctor_module.examine(config, dkim_record)
    for finding in findings:
        click.echo(finding.line())
    domain = config["mail"]["from_address"].rpartition("@")[2]
    click.echo(f"\nDNS records to publish for {domain} (this machine cannot look them up: compare with `dig TXT`):")
    for line in doctor_module.dns_records(config):
        click.echo(f"  {line}")
    failed = [f for f in findings if f.status == "fail"]
    if failed:
        click.echo()
        click.echo(f"{len(failed)} problem(s):", err=True)
        for finding in failed:
            click.echo(f"mailer doctor: {finding.check}: {finding.message}", err=True)
        ctx.exit(1)


@click.command()
@click.argument("into", type=click.Path(file_okay=False, path_type=Path))
@click.pass_context
def backup(ctx, into):
    """Copy the database, config.toml, the secret key and the DKIM key into a new folder under INTO,
    while the instance runs (deploy/README.md: how to restore)."""
    from mailer.instance import backup as backup_module

    config = config_module.load(home=ctx.find_root().obj.get("home"))
    instance.require(config)
    folder, done = backup_module.take(config, into)
    for line in done:
        click.echo(line)
    click.echo(f"backup in {folder}")
