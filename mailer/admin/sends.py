"""Sends room: every digest and alert, how each went, its CSV figures, and retrying or cancelling its mail."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for

from mailer import clock, db
from mailer.admin import forms
from mailer.admin.access import audit, get_or_404
from mailer.admin.dashboard import chart_bars
from mailer.sends import operations as send_operations
from mailer.sends import queries as send_queries
from mailer.sends.models import Send
from mailer.errors import OutboxError
from mailer.links import queries as link_queries
from mailer.outbox import operations as outbox_operations
from subscribers.exporting import defused

blueprint = Blueprint("sends", __name__, url_prefix="/sends")

PAGE = 50
CHART_HOURS = 48


@dataclass(frozen=True)
class SendRow:
    send: Send
    recipients: int
    delivered: int
    failed: int
    unique_clicks: int


@dataclass(frozen=True)
class SendFigures:
    """What the send's page and its CSV show."""

    recipients: int
    queued: int
    sending: int
    delivered: int
    failed: int
    cancelled: int
    unsubscribed: int
    clicks: int
    unique_clicks: int
    action_clickers: int
    scanner_clicks: int  # security scanners' fetches: left out of every figure above
    links: list[link_queries.LinkClicks]

    @property
    def action_rate(self) -> float | None:
        """Share of delivered readers who clicked an action link; None before anything is delivered."""
        return self.action_clickers / self.delivered if self.delivered else None


def figures(send: Send) -> SendFigures:
    session = db.session
    counts = send_queries.delivery_counts(session, send.id)
    return SendFigures(
        recipients=send.recipients_count, queued=counts.get("queued", 0), sending=counts.get("sending", 0),
        delivered=counts.get("sent", 0), failed=counts.get("failed", 0), cancelled=counts.get("cancelled", 0),
        unsubscribed=send_queries.unsubscribed_after(session, send, send_operations.UNSUBSCRIBE_WINDOW),
        clicks=link_queries.clicks_for_send(session, send.id),
        unique_clicks=link_queries.unique_clickers(session, send.id),
        action_clickers=link_queries.action_clickers(session, send.id),
        scanner_clicks=link_queries.scanner_clicks(session, send.id),
        links=link_queries.clicks_per_link(session, send.id))


def clicks_per_hour(send: Send) -> list[tuple[datetime, int]]:
    """Clicks in each of the first 48 hours after the send was queued (UTC), empty hours included."""
    if send.queued_at is None:
        return []
    start = send.queued_at.replace(minute=0, second=0, microsecond=0)
    per_hour = [0] * CHART_HOURS
    for clicked_at in link_queries.click_times(db.session, send.id, start, start + timedelta(hours=CHART_HOURS)):
        per_hour[int((clicked_at - start).total_seconds() // 3600)] += 1
    return [(start + timedelta(hours=n), count) for n, count in enumerate(per_hour)]


def _send(send_id: int) -> Send:
    return get_or_404(Send, send_id)


def index():
    page = max(request.args.get("page", 1, type=int) or 1, 1)
    sends = send_queries.sends_page(db.session, PAGE + 1, (page - 1) * PAGE)
    rows = []
    for send in sends[:PAGE]:
        counts = send_queries.delivery_counts(db.session, send.id)
        rows.append(SendRow(send, send.recipients_count, counts.get("sent", 0), counts.get("failed", 0),
                            link_queries.unique_clickers(db.session, send.id)))
    return render_template("admin/sends.html", rows=rows, page=page, has_more=len(sends) > PAGE)


def show(send_id: int, error: str | None = None):
    send = _send(send_id)
    hours = clicks_per_hour(send)
    return render_template(
        "admin/sends_show.html", send=send, figures=figures(send), hours=hours,
        bars=chart_bars(hours, width=600, height=120), hours_total=sum(count for _, count in hours),
        failed=send_queries.failed_messages(db.session, send.id), confirm=forms.ConfirmForm(), error=error,
    ), (400 if error else 200)


def export(send_id: int):
    send = _send(send_id)
    numbers = figures(send)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(("label", "kind", "url", "clicks", "unique_clickers", "scanner_fetches"))
    for link in numbers.links:
        # Labels and URLs come from articles and feeds: one starting "=" must stay text in a spreadsheet.
        writer.writerow((defused(link.label), defused(link.kind), defused(link.url), link.clicks,
                         link.unique_clickers, link.scanner_clicks))
    writer.writerow(())
    writer.writerow(("figure", "value"))
    rate = numbers.action_rate
    for name, value in (("send", send.id), ("subject", defused(send.subject)), ("kind", send.kind.value),
                        ("recipients", numbers.recipients), ("queued", numbers.queued),
                        ("sending", numbers.sending), ("delivered", numbers.delivered),
                        ("failed", numbers.failed), ("cancelled", numbers.cancelled),
                        ("unsubscribed_within_7_days", numbers.unsubscribed), ("clicks", numbers.clicks),
                        ("unique_clickers", numbers.unique_clicks), ("action_clickers", numbers.action_clickers),
                        ("scanner_fetches", numbers.scanner_clicks),
                        ("action_rate", "" if rate is None else f"{rate:.4f}")):
        writer.writerow((name, value))
    return Response(out.getvalue(), mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="send-{send.id}.csv"'})


def retry(send_id: int, message_id: int):
    send = _send(send_id)
    if not forms.ConfirmForm().validate_on_submit():
        abort(400)
    return _change(send, lambda: outbox_operations.retry_failed(db.session, send, clock.now(), message_id),
                   "send.retry", f"Message {message_id} is queued again.")


def retry_all(send_id: int):
    send = _send(send_id)
    if request.method == "GET" or not request.form.get("confirmed"):
        return _confirm(send, "Retry every failed message",
                        "Every failed message of this send goes back in the queue and is tried again now.",
                        url_for("admin.sends.retry_all", send_id=send.id), "Retry them all")
    if not forms.ConfirmForm().validate_on_submit():
        abort(400)
    return _change(send, lambda: outbox_operations.retry_failed(db.session, send, clock.now()),
                   "send.retry", "{n} failed message(s) are queued again.")


def cancel(send_id: int):
    send = _send(send_id)
    if request.method == "GET" or not request.form.get("confirmed"):
        return _confirm(send, "Cancel what is still queued",
                        "Messages of this send still waiting in the queue will not be sent. "
                        "Messages already sent, or being sent right now, are not affected. This cannot be undone.",
                        url_for("admin.sends.cancel", send_id=send.id), "Cancel the queued messages")
    if not forms.ConfirmForm().validate_on_submit():
        abort(400)
    return _change(send, lambda: outbox_operations.cancel_queued(db.session, send, clock.now()),
                   "send.cancel", "{n} queued message(s) cancelled.")


def _confirm(send: Send, title: str, explanation: str, action: str, button: str):
    return render_template("admin/sends_confirm.html", send=send, title=title, explanation=explanation,
                           action=action, button=button, confirm=forms.ConfirmForm())


def _change(send: Send, change, action: str, done: str):
    """Run an operation and its audit row in one commit; on a refusal, the page again with the reason.

    `done` says what happened, `{n}` standing for how many messages: the audit's detail and the notice."""
    try:
        changed = change()
    except OutboxError as exc:
        db.session.rollback()
        return show(send.id, error=str(exc))
    done = done.format(n=changed)
    audit(action, send, done)
    db.session.commit()
    flash(done)
    return redirect(url_for("admin.sends.show", send_id=send.id))


blueprint.add_url_rule("/", "index", index, methods=["GET"])
blueprint.add_url_rule("/<int:send_id>", "show", show, methods=["GET"])
blueprint.add_url_rule("/<int:send_id>/export.csv", "export", export, methods=["GET"])
blueprint.add_url_rule("/<int:send_id>/messages/<int:message_id>/retry", "retry", retry, methods=["POST"])
blueprint.add_url_rule("/<int:send_id>/retry", "retry_all", retry_all, methods=["GET", "POST"])
blueprint.add_url_rule("/<int:send_id>/cancel", "cancel", cancel, methods=["GET", "POST"])
