"""The `mailer` command. Every command turns a user's mistake into a one-line reason and exit status 2."""

from __future__ import annotations

import functools
import json
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

import click
from click.exceptions import NoArgsIsHelpError
from sqlalchemy.exc import OperationalError

from mailer import logs
from mailer.errors import MailerError


class UsageMistake(click.ClickException):
    """A mistyped command, option or argument, told in one line like every other user error."""

    exit_code = 2

    def show(self, file=None) -> None:
        click.echo(f"mailer: {self.format_message()}", err=True)


def _one_line(exc: click.ClickException) -> UsageMistake:
    """Click's three-line usage error as one line that still says where help is."""
    # Click lists choices one per line ("Choose from:\n\tadmin,\n\teditor"): keep it to one.
    message = " ".join(exc.format_message().split())
    ctx = getattr(exc, "ctx", None)
    if ctx is not None:
        message += f" (see `{ctx.command_path} --help`)"
    mistake = UsageMistake(message)
    mistake.exit_code = exc.exit_code
    return mistake


def _database_unavailable(ctx: click.Context, exc: OperationalError) -> str:
    """One line naming the database (without its password) and the driver's first line of complaint."""
    reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc).splitlines()[0]
    app = (ctx.find_root().obj or {}).get("app")
    if app is None:
        return f"the database did not answer: {reason}"
    url = app.extensions["engine"].url.render_as_string(hide_password=True)
    return f"cannot use the database {url}: {reason}"


class MailerGroup(click.Group):
    """A click group whose user errors end in one line on stderr, never a traceback."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.ClickException as exc:
            if isinstance(exc, (UsageMistake, NoArgsIsHelpError)):
                raise
            raise _one_line(exc) from None

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except MailerError as exc:
            click.echo(f"mailer: {exc}", err=True)
            ctx.exit(2)
        except OperationalError as exc:
            # A server that is down, a wrong password, a read-only SQLite file: the setup, not our code.
            click.echo(f"mailer: {_database_unavailable(ctx, exc)}", err=True)
            ctx.exit(2)
        except click.ClickException as exc:
            # A bare command group (`mailer subscribers`) answers with its help, as click does.
            if isinstance(exc, (UsageMistake, NoArgsIsHelpError)):
                raise
            raise _one_line(exc) from None


def app_context(fn):
    """Run the command inside the app (config, database, secret) and commit nothing implicitly."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        app = current_app_for_cli()
        with app.app_context():
            return fn(*args, **kwargs)

    return wrapper


def current_app_for_cli(*, needs_schema: bool = True):
    """The app for this command, built once; it refuses a database whose schema is missing or behind
    (except for `mailer db upgrade`, which is how to fix that)."""
    ctx = click.get_current_context()
    root = ctx.find_root()
    if root.obj is None:
        root.obj = {}
    if "app" not in root.obj:
        from mailer import config as config_module
        from mailer import instance, migrate
        from mailer.app import create_app

        config = config_module.load(home=root.obj.get("home"))
        instance.require(config)  # before anything is created in a folder that is not an instance
        root.obj["app"] = create_app(config)
        if needs_schema:
            migrate.require_current(root.obj["app"].extensions["engine"])
    return root.obj["app"]


def echo_rows(rows: list[dict], *, as_json: bool, empty: str, line) -> None:
    """Print rows as JSON for scripts, or one `line(row)` each for people; say how to add one when empty."""
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        click.echo(empty, err=True)
    for row in rows:
        click.echo(line(row))


def minute(iso: str | None) -> str:
    """'2026-11-21 22:29' from an ISO timestamp (or 'never')."""
    return (iso or "never")[:16].replace("T", " ")


@click.group(cls=MailerGroup, name="mailer")
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), envvar="MAILER_HOME",
              help="The instance folder (config.toml and var/); default: MAILER_HOME, else the current folder.")
@click.option("--log-format", type=click.Choice(logs.FORMATS), default="text", show_default=True,
              envvar="MAILER_LOG_FORMAT", help="json: one object per line, for journald or Loki.")
@click.option("-v", "--verbose", count=True, help="-v: our DEBUG lines; -vv: the libraries' too.")
@click.pass_context
def cli(ctx, home, log_format, verbose):
    """Self-hosted newsletter and advocacy-alert mailer."""
    logs.setup(log_format, verbose)
    ctx.ensure_object(dict)
    ctx.obj.setdefault("log_format", log_format)
    if home is not None:
        ctx.obj.setdefault("home", home)


@cli.group()
def db():
    """The database schema."""


@db.command("upgrade")
def db_upgrade():
    """Apply migrations (Alembic) to the configured database."""
    app = current_app_for_cli(needs_schema=False)
    from mailer import migrate

    migrate.upgrade(app.extensions["engine"])
    click.echo("database is up to date")


def _stop_on_sigterm() -> None:
    """systemd stops a service with SIGTERM: end like Ctrl-C, so the lease and claimed mail are handed back."""
    def _raise(_signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _raise)


def _log_format() -> str:
    return click.get_current_context().find_root().obj.get("log_format", "text")


@cli.command()
@click.option("--once", is_flag=True, help="Deliver what is due now, then exit.")
@app_context
def worker(once):
    """A delivery worker: drains the outbox through the configured backend.

    Ctrl-C or SIGTERM stops it cleanly: the messages on the wire finish and are recorded, the rest
    of its batch goes back to the queue at once.
    """
    from flask import current_app

    from mailer import startup
    from mailer.outbox import backends
    from mailer.outbox.worker import WorkerThread, log_pass, run_once

    app = current_app._get_current_object()
    config = app.config["MAILER"]
    pool = backends.pool_from_config(config)
    thread = WorkerThread(app, pool)
    if once:
        with stop_on_signals(thread.stopping):
            try:
                tally = run_once(config, pool, thread.stopping)
            finally:
                for backend in pool:
                    backend.close()
        log_pass(tally)
        click.echo(f"delivered {tally.sent} message(s); {tally.retrying} to retry later; {tally.failed} failed")
        return
    startup.block(config, "worker", [
        ("scheduler", "not in this process (`mailer scheduler` or `mailer serve` runs it)"),
        ("workers", f"1 delivery worker in this process, up to {_connections(config)}"),
    ], startup.production_gaps(config), _log_format())
    with stop_on_signals(thread.stopping):
        thread.start()
        while thread.is_alive():
            thread.join(0.5)
    startup.log.info("mailer worker stopped")


@contextmanager
def stop_on_signals(stopping):
    """While inside: SIGINT (Ctrl-C) and SIGTERM (systemctl stop) set `stopping` instead of raising.

    Not KeyboardInterrupt: a join() it interrupts returns at once on CPython 3.11, and the process
    would exit with the delivery thread killed mid-batch.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        stopping.set()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _connections(config) -> str:
    if config["mail"]["backend"] == "smtp":
        return f"{config['mail.smtp']['connections']} relay connection(s)"
    return "one Maildir writer"


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--no-scheduler", is_flag=True, help="Do not run schedules in this process.")
@click.option("--no-worker", is_flag=True, help="Do not deliver mail from this process.")
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1), help="Web request threads.")
def serve(host, port, no_scheduler, no_worker, threads):
    """The web app with a delivery worker (and the scheduler) in one process."""
    from waitress.server import create_server

    from mailer import scheduling, startup
    from mailer.outbox import backends
    from mailer.outbox.worker import WorkerThread

    app = current_app_for_cli()
    config = app.config["MAILER"]
    # The port before anything starts: a busy one is one line, not a worker left running.
    try:
        # Waitress drops X-Forwarded-* unless told of a proxy; behind `site.trusted_proxies` the app's
        # ProxyFix reads them, trusting exactly that many hops (every reader was the proxy otherwise).
        server = create_server(app, host=host, port=port, threads=threads, ident="mailer",
                               clear_untrusted_proxy_headers=not config["site"]["trusted_proxies"])
    except OSError as exc:
        raise MailerError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    except ValueError:  # waitress's answer to a host name that does not resolve
        raise MailerError(f"cannot listen on {host}:{port}: no such address") from None
    keeper = None
    if no_scheduler:
        scheduler_line = "off (--no-scheduler)"
    elif not config["scheduler"]["enabled"]:
        scheduler_line = "off (scheduler.enabled = false: run `mailer scheduler` apart)"
    else:
        keeper = scheduling.ScheduleKeeper(app)
        with app.app_context():
            keeper.check()
        scheduler_line = keeper.describe()
    workers_line = "none (--no-worker)" if no_worker else f"1 delivery worker in this process, up to {_connections(config)}"
    gaps = startup.production_gaps(config)
    if gap := startup.listening_gap(config, host, port):
        gaps.append(gap)
    startup.block(config, "serve", [("listening", f"http://{host}:{port}"), ("scheduler", scheduler_line),
                                    ("workers", workers_line)], gaps, _log_format())
    _stop_on_sigterm()
    worker_thread = None
    if not no_worker:
        worker_thread = WorkerThread(app, backends.pool_from_config(config))
        worker_thread.start()
    if keeper:
        keeper.start()
    try:
        server.run()  # returns on Ctrl-C or SIGTERM (waitress closes its sockets)
    finally:
        if worker_thread:
            worker_thread.stop()
            # Let the messages on the wire finish and be recorded; the rest of the batch goes back.
            worker_thread.join(30)
        if keeper:
            keeper.stop()
        startup.log.info("mailer serve stopped")


@cli.command()
def scheduler():
    """The scheduler alone: run exactly one per deployment (with `mailer serve --no-scheduler`).

    A second one on the same database stands by and takes over when the first stops.
    """
    from mailer import scheduling, startup

    app = current_app_for_cli()
    config = app.config["MAILER"]
    keeper = scheduling.ScheduleKeeper(app)
    with app.app_context():
        keeper.check()
    startup.block(config, "scheduler", [("scheduler", keeper.describe()),
                                        ("workers", "none in this process (`mailer worker` delivers)")],
                  startup.production_gaps(config), _log_format())
    _stop_on_sigterm()
    keeper.start()
    try:
        while keeper.is_alive():
            keeper.join(1)
    except KeyboardInterrupt:
        pass
    finally:
        keeper.stop()
        startup.log.info("mailer scheduler stopped")


def _register_domain_commands() -> None:
    from mailer.alerts.cli import alerts
    from mailer.api.cli import tokens
    from mailer.articles.cli import articles
    from mailer.bounces.cli import bounces
    from mailer.digests.cli import digests
    from mailer.editors.cli import users
    from mailer.feeds.cli import feeds
    from mailer.instance.cli import backup, doctor, init
    from mailer.outbox.cli import outbox
    from mailer.sends.cli import stats
    from mailer.topics.cli import topics
    from mailer.webhooks.cli import webhooks
    from subscribers.cli import signup, subscribers

    cli.add_command(subscribers)
    cli.add_command(signup)
    cli.add_command(topics)
    cli.add_command(articles)
    cli.add_command(feeds)
    cli.add_command(digests)
    cli.add_command(alerts)
    cli.add_command(stats)
    cli.add_command(outbox)
    cli.add_command(users)
    cli.add_command(init)
    cli.add_command(doctor)
    cli.add_command(backup)
    cli.add_command(tokens)
    cli.add_command(webhooks)
    cli.add_command(bounces)


_register_domain_commands()


def main() -> None:
    try:
        cli(prog_name="mailer")
    except MailerError as exc:  # raised while building the app, before a group could catch it
        click.echo(f"mailer: {exc}", err=True)
        sys.exit(2)
