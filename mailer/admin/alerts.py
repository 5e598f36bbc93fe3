"""The urgent-alert room: pick an article or write a short one, choose who, see how many and a preview,
then send once. The confirm form carries a key, so a double click or a resubmitted form sends one alert."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from flask import Blueprint, abort, current_app, flash, make_response, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from mailer import clock, db
from mailer.admin.access import audit
from mailer.alerts import operations, queries
from mailer.alerts.compose import compose_alert
from mailer.articles import operations as article_operations
from mailer.articles.models import ActionKind, Article
from mailer.digests.compose import ActionView, ArticleView, TopicView
from mailer.errors import MailerError
from mailer.sends import operations as send_operations
from mailer.sends import queries as send_queries
from mailer.sends.models import Send, SendKind
from mailer.topics import queries as topic_queries
from mailer.topics.models import Topic

blueprint = Blueprint("alerts", __name__, url_prefix="/alerts")

ACTION_ROWS = 2
RECENT_ARTICLES = 50
# The preview is a whole mail with inline styles; only this page allows them. Remote images stay
# unloaded: the sites hosting them would learn who previews an alert, and when, before it goes out.
PREVIEW_POLICY = ("default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                  "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


@dataclass(frozen=True)
class AlertDraft:
    """What the editor chose: an article (by id) or a short one written here, and the topics."""

    article_id: int | None
    title: str
    text: str
    actions: tuple[article_operations.ActionDraft, ...]
    topic_slugs: tuple[str, ...]
    everyone: bool


def _recent_articles() -> list[Article]:
    return list(db.session.scalars(select(Article).where(Article.published_at <= clock.now())
                                   .order_by(Article.published_at.desc()).limit(RECENT_ARTICLES)))


def _read_draft(form) -> AlertDraft:
    """The draft from the form; MailerError with the reason when it cannot be sent."""
    article_id = form.get("article_id", "").strip()
    title = article_operations.one_line(form.get("title"), 300)
    text = " ".join(form.get("text", "").split())[:1000]
    actions = []
    for n in range(ACTION_ROWS):
        label, url = form.get(f"action_label_{n}", "").strip(), form.get(f"action_url_{n}", "").strip()
        if label or url:
            actions.append(article_operations.action_draft(
                {"label": label, "url": url, "kind": form.get(f"action_kind_{n}", "")}))
    if article_id:
        if not article_id.isdigit():
            raise MailerError("choose an article from the list")
        if title or text or actions:
            raise MailerError("choose an article or write a short one, not both")
    elif not title:
        raise MailerError("choose an article, or give the alert a title and a line or two")
    everyone = form.get("everyone") == "y"
    slugs = tuple(dict.fromkeys(form.getlist("topics")))
    if not everyone and not slugs:
        raise MailerError("choose the topics whose readers need this, or tick 'everyone'")
    return AlertDraft(int(article_id) if article_id else None, title, text, tuple(actions), slugs, everyone)


def _audience_topics(draft: AlertDraft) -> list[Topic]:
    if draft.everyone:
        return sorted(topic_queries.by_title(db.session), key=lambda t: t.slug)
    found = queries.topics_by_slug(db.session, list(draft.topic_slugs))
    unknown = [slug for slug in draft.topic_slugs if slug not in found]
    if unknown:
        raise MailerError(f"no topic {', '.join(unknown)}")
    return sorted(found.values(), key=lambda t: t.slug)


def _article_view(draft: AlertDraft) -> ArticleView:
    """The article as the alert will show it: the chosen one, or the draft written here."""
    if draft.article_id is not None:
        article = operations.article_to_alert(db.session, draft.article_id)
        return ArticleView(id=article.id, title=article.title, summary=article.summary, url=article.canonical_url or "",
                           published_at=article.published_at, body_html=article.body_html,
                           image_url=article.image_url, topics=tuple(TopicView(t.slug, t.title) for t in article.topics),
                           actions=tuple(ActionView(a.label, a.url, a.kind.value) for a in article.actions))
    return ArticleView(id=0, title=draft.title, summary=draft.text, url="", published_at=clock.now(),
                       actions=tuple(ActionView(a.label, a.url, a.kind) for a in draft.actions))


def _reach(draft: AlertDraft, topics: list[Topic]) -> int:
    slugs = frozenset(t.slug for t in topics)
    reached = queries.already_alerted(db.session, draft.article_id) if draft.article_id else set()
    return sum(1 for r in queries.audience(db.session, slugs) if r.id not in reached)


def _preview(view: ArticleView, topics: list[Topic]):
    """The alert as a reader who follows every topic gets it; personal links point nowhere."""
    placeholders, settings = send_operations.preview_settings(current_app.config["MAILER"])
    audience = tuple(TopicView(t.slug, t.title) for t in topics)
    return send_operations.finish_preview(compose_alert(view, frozenset(), settings, audience), placeholders)


def new():
    """Step 1: what and to whom. A POST checks the draft and shows step 2: how many, and the preview."""
    if request.method == "GET":
        return _form_page()
    try:
        draft = _read_draft(request.form)
        topics = _audience_topics(draft)
        view = _article_view(draft)
        reach = _reach(draft, topics)
    except MailerError as exc:
        return _form_page(str(exc)), 400
    if reach == 0:
        return _form_page(f"This alert would reach nobody: no confirmed, unpaused reader of "
                          f"{operations.describe(topics)} is left who has not had it already."), 400
    response = make_response(render_template(
        "admin/alert_confirm.html", draft=draft, topics=topics, reach=reach, preview=_preview(view, topics),
        form_key=secrets.token_urlsafe(24), action_rows=range(ACTION_ROWS)))
    response.headers["Content-Security-Policy"] = PREVIEW_POLICY
    return response


def _form_page(error: str | None = None):
    return render_template("admin/alert_new.html", error=error, form=request.form, topics=topic_queries.by_title(db.session),
                           articles=_recent_articles(), action_rows=range(ACTION_ROWS),
                           kinds=[k.value for k in ActionKind])


def send():
    """Step 3: send, once per confirm form (its key is the Send's unique form_key)."""
    form_key = request.form.get("form_key", "")
    if not (20 <= len(form_key) <= 64):
        abort(400)
    existing = send_queries.send_by_form_key(db.session, form_key)
    if existing is not None:
        flash("This alert was already sent; it was not sent again.")
        return redirect(url_for("admin.alerts.sent", send_id=existing.id))
    try:
        draft = _read_draft(request.form)
        topics = _audience_topics(draft)
        article = _article_for(draft, form_key, topics)
        alert = operations.send_alert(db.session, article, topics)
        if alert is None:
            raise MailerError("This alert would reach nobody now: every reader it was for already has it.")
        alert.form_key = form_key
        alert.created_by_id = current_user.id
        audit("alert.send", alert, f"article {article.id} to {operations.describe(topics)}: "
                                   f"{alert.recipients_count} reader(s)")
        db.session.commit()
    except IntegrityError:  # the same form, submitted twice at once: the other request sent it
        db.session.rollback()
        existing = send_queries.send_by_form_key(db.session, form_key)
        if existing is None:
            raise
        return redirect(url_for("admin.alerts.sent", send_id=existing.id))
    except MailerError as exc:
        db.session.rollback()
        return _form_page(str(exc)), 400
    return redirect(url_for("admin.alerts.sent", send_id=alert.id))


def _article_for(draft: AlertDraft, form_key: str, topics: list[Topic]) -> Article:
    if draft.article_id is not None:
        return operations.article_to_alert(db.session, draft.article_id)
    stored = article_operations.upsert_article(
        db.session, guid=f"alert:{form_key}", title=draft.title, summary=draft.text, body=draft.text,
        topics=topics, actions=draft.actions)
    audit("article.create", stored.article, "written in the alert room")
    db.session.flush()
    return operations.article_to_alert(db.session, stored.article.id)


def sent(send_id: int):
    alert = db.session.get(Send, send_id)
    if alert is None or alert.kind != SendKind.alert:
        abort(404)
    return render_template("admin/alert_sent.html", alert=alert,
                           archive_url=send_operations.archive_url(current_app.config["MAILER"], alert),
                           sends_endpoint="admin.sends.index" in current_app.view_functions)


blueprint.add_url_rule("/new", "new", new, methods=["GET", "POST"])
blueprint.add_url_rule("/send", "send", send, methods=["POST"])
blueprint.add_url_rule("/<int:send_id>", "sent", sent, methods=["GET"])
