"""`mailer digests …` and `mailer stats`: compose and queue digests, and see how a send went."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import click
from flask import current_app

from mailer import db
from mailer.cli import app_context, echo_rows, minute
from mailer.digests import operations, queries, schedules
from mailer.digests.models import DigestSchedule, Send
from mailer.errors import NotFound
from mailer.links import queries as link_queries


@click.group()
def digests():
    """Digests of the articles published since the last one."""


@digests.command("compose")
@click.option("--send-now", is_flag=True, help="Queue it to every eligible subscriber at once.")
@app_context
def compose(send_now):
    """Build the next digest from articles new since the last one."""
    session = db.session
    send = operations.compose_next(session)
    if send is None:
        click.echo("nothing new since the last digest")
        return
    _describe(send, operations.plan(session, send))
    if send_now:
        queued = operations.queue(session, send)
        session.commit()
        click.echo(f"queued to {queued} recipient(s)")
    else:
        session.commit()
        click.echo(f"not queued yet: `mailer digests send {send.id}` queues it")


@digests.command("send")
@click.argument("send_id", type=int)
@app_context
def send_digest(send_id):
    """Queue a composed digest SEND_ID to every eligible subscriber."""
    session = db.session
    send = _send_or_fail(send_id)
    queued = operations.queue(session, send)
    session.commit()
    click.echo(f"queued send {send.id} to {queued} recipient(s)")


@digests.command("schedule")
@click.option("--cron", metavar="EXPR", help='When, as a crontab line: "0 9 * * MON" is Mondays at 09:00.')
@click.option("--tz", metavar="ZONE", help="The time zone the times are in (default: scheduler.timezone).")
@click.option("--remove", "remove_id", type=int, metavar="ID", help="Remove schedule ID.")
@click.option("--json", "as_json", is_flag=True, help="List the schedules as JSON.")
@app_context
def schedule(cron, tz, remove_id, as_json):
    """Add a recurring digest (--cron), remove one (--remove ID), or list them (no option).

    Each time the schedule fires, the scheduler composes a digest of the articles new since the last
    one and queues it, as `digests compose --send-now` does; with nothing new it sends nothing.
    """
    session = db.session
    if remove_id is not None:
        if cron is not None or tz is not None:
            raise click.UsageError("--remove takes no --cron or --tz")
        schedules.remove(session, remove_id)
        session.commit()
        click.echo(f"removed schedule {remove_id}")
        return
    if cron is None:
        if tz is not None:
            raise click.UsageError('--tz goes with --cron: --cron "0 9 * * MON" --tz Europe/London')
        echo_rows([_schedule_row(s) for s in schedules.all_schedules(session)], as_json=as_json,
                  empty='no schedules yet: `mailer digests schedule --cron "0 9 * * MON"` adds one',
                  line=_schedule_line)
        return
    timezone = tz if tz is not None else current_app.config["MAILER"]["scheduler"]["timezone"]
    added = schedules.add(session, cron, timezone)
    session.commit()
    click.echo(f"added schedule {_schedule_line(_schedule_row(added))}")
    click.echo("the scheduler (`mailer serve`, or `mailer scheduler`) sends it; "
               "`mailer digests schedule` lists schedules")


def _schedule_row(schedule: DigestSchedule) -> dict:
    return {"id": schedule.id, "cron": schedule.cron, "timezone": schedule.timezone,
            "next_run_at": schedule.next_run_at.isoformat(),
            "last_run_at": schedule.last_run_at.isoformat() if schedule.last_run_at else None}


def _schedule_line(row: dict) -> str:
    """'1  "0 9 * * MON" Europe/London  next Mon 2026-11-30 09:00 GMT (09:00 UTC)'."""
    next_run_at = datetime.fromisoformat(row["next_run_at"])
    local = next_run_at.astimezone(ZoneInfo(row["timezone"]))
    last = f"{minute(row['last_run_at'])} UTC" if row["last_run_at"] else "never"
    return (f"{row['id']}\t\"{row['cron']}\" {row['timezone']}\t"
            f"next {local:%a %Y-%m-%d %H:%M %Z} ({next_run_at:%H:%M} UTC)\tlast {last}")


@click.command("stats")
@click.argument("send_id", type=int, required=False)
@app_context
def stats(send_id):
    """Delivery and engagement figures of SEND_ID (or a line per recent send)."""
    session = db.session
    if send_id is None:
        sends = queries.recent_sends(session)
        if not sends:
            click.echo("no sends yet")
        for send in sends:
            counts = queries.delivery_counts(session, send.id)
            click.echo(f"{send.id}\t{send.kind.value}\t{_when(send)}\t{send.subject}\t"
                       f"sent {counts.get('sent', 0)}/{sum(counts.values())}\t"
                       f"clicks {link_queries.clicks_for_send(session, send.id)}")
        return
    send = _send_or_fail(send_id)
    click.echo(f"send {send.id} ({send.kind.value}): {send.subject}")
    click.echo(f"queued: {_when(send)}  recipients: {send.recipients_count}")
    counts = queries.delivery_counts(session, send.id)
    click.echo("delivery: " + ", ".join(f"{state} {counts.get(state, 0)}"
                                        for state in ("queued", "sending", "sent", "failed")))
    click.echo(f"clicks: {link_queries.clicks_for_send(session, send.id)}  "
               f"unique clickers: {link_queries.unique_clickers(session, send.id)}  "
               f"scanner fetches (left out): {link_queries.scanner_clicks(session, send.id)}")
    opens, openers = link_queries.opens(session, send.id)
    if opens:
        click.echo(f"opens: {opens}  unique openers: {openers}")
    for link in link_queries.clicks_per_link(session, send.id):
        click.echo(f"  {link.clicks:>6} clicks  {link.unique_clickers:>6} unique  {link.anonymous_clicks:>6} anonymous"
                   f"  [{link.kind}] {link.label}  {link.url}")


def _describe(send: Send, plans: list[operations.TopicSetPlan]) -> None:
    click.echo(f"digest {send.id}: {send.subject}")
    config = current_app.config["MAILER"]
    click.echo(f"web version (public once queued): {operations.archive_url(config, send)}")
    click.echo(f"articles ({len(send.articles)}):")
    for article in send.articles:
        topics = ", ".join(t.slug for t in article.topics) or "no topic"
        click.echo(f"  {article.id}\t{article.published_at:%Y-%m-%d %H:%M}\t{article.title}\t[{topics}]")
    click.echo("recipients by topic set:")
    if not plans:
        click.echo("  nobody is eligible (no confirmed, unpaused, unsuppressed subscribers)")
    for p in plans:
        topics = ", ".join(sorted(p.topic_slugs)) or "all topics"
        note = f"{p.articles} article(s)" if p.articles else "nothing new in these topics: no mail"
        click.echo(f"  {topics}: {p.recipients} recipient(s), {note}")


def _send_or_fail(send_id: int) -> Send:
    send = queries.get_send(db.session, send_id)
    if send is None:
        raise NotFound(f"no send with id {send_id} (`mailer stats` lists them)")
    return send


def _when(send: Send) -> str:
    return f"{send.queued_at:%Y-%m-%d %H:%M} UTC" if send.queued_at else "not queued"
