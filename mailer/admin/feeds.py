"""Editors' room for feeds: list them with their last poll and error, add one with default topics,
poll one now, change its default topics and options (calls to act, full posts), and remove it (its articles stay). Every change is audited."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_wtf import FlaskForm
from sqlalchemy import func, select
from wtforms import SelectMultipleField, StringField
from wtforms.validators import AnyOf, DataRequired, Length

from mailer import db
from mailer.admin.access import audit, get_or_404
from mailer.articles.models import Article
from mailer.errors import FeedError
from mailer.feeds import operations, tasks
from mailer.feeds.models import Feed
from mailer.topics import queries as topic_queries
from mailer.topics.models import Topic

blueprint = Blueprint("feeds", __name__, url_prefix="/feeds")

EXPIRED = "The form had expired or was incomplete. Please try again."


class NewFeedForm(FlaskForm):
    url = StringField("Feed address (RSS or Atom, http or https)",
                      validators=[DataRequired("Give the feed's address."), Length(max=2000)])
    # Checkboxes of existing topics; an unknown one is refused by _chosen_topics with its name.
    topics = SelectMultipleField("Default topics", validate_choice=False)


class TopicsForm(FlaskForm):
    topics = SelectMultipleField("Default topics", validate_choice=False)


class OptionsForm(FlaskForm):
    """The radio buttons of the feed page (written in its template): read calls to act, summary or whole posts."""

    actions = StringField(validators=[AnyOf(["on", "off"])])
    content = StringField(validators=[AnyOf(["summary", "full"])])


class ButtonForm(FlaskForm):
    """A button that polls or removes: only its CSRF token."""


def _feed(feed_id: int) -> Feed:
    return get_or_404(Feed, feed_id)


def _chosen_topics(slugs: list[str]) -> list[Topic]:
    """The existing topics named by the checkboxes; FeedError naming any that does not exist."""
    by_slug = {topic.slug: topic for topic in topic_queries.by_title(db.session)}
    unknown = [slug for slug in slugs if slug not in by_slug]
    if unknown:
        raise FeedError("unknown topic " + ", ".join(repr(slug[:80]) for slug in unknown)
                        + ": choose among the existing topics")
    return [by_slug[slug] for slug in dict.fromkeys(slugs)]


def _first_error(form) -> str:
    if "csrf_token" in form.errors:
        return EXPIRED
    return next((errors[0] for errors in form.errors.values() if errors), EXPIRED)


def _article_counts() -> dict[int, int]:
    return dict(db.session.execute(select(Article.feed_id, func.count()).where(Article.feed_id.is_not(None))
                                   .group_by(Article.feed_id)).all())


def index():
    form = NewFeedForm()
    error = None
    if form.validate_on_submit():
        try:
            topics = _chosen_topics(form.topics.data or [])
            feed = operations.add_feed(db.session, form.url.data.strip(), [t.slug for t in topics])
            audit("feed.create", feed, " ".join([feed.url, *(t.slug for t in feed.topics)]))
        except FeedError as exc:
            db.session.rollback()
            error = str(exc)
        else:
            db.session.commit()
            flash(f"Feed {feed.url} added; it is polled with the others, or now with Poll now.")
            return redirect(url_for("admin.feeds.index"))
    elif form.is_submitted():
        error = _first_error(form)
    feeds = list(db.session.scalars(select(Feed).order_by(Feed.url)))
    return render_template("admin/feeds.html", feeds=feeds, counts=_article_counts(), form=form,
                           topics=topic_queries.by_title(db.session), chosen=set(form.topics.data or []), error=error,
                           ), (400 if error else 200)


def feed(feed_id: int):
    return _edit_page(_feed(feed_id))


def _edit_page(feed: Feed, errors: dict[str, str] | None = None, chosen: set[str] | None = None):
    """The feed's page; with `errors` (form name -> message) it is the 400 answer to a refused change."""
    return render_template("admin/feeds_edit.html", feed=feed, articles=_article_counts().get(feed.id, 0),
                           topics=topic_queries.by_title(db.session), errors=errors or {},
                           chosen=chosen if chosen is not None else {t.slug for t in feed.topics},
                           ), (400 if errors else 200)


def set_topics(feed_id: int):
    feed = _feed(feed_id)
    form = TopicsForm()
    chosen = form.topics.data or []
    if not form.validate_on_submit():
        return _edit_page(feed, {"topics": _first_error(form)}, set(chosen))
    try:
        operations.set_feed_topics(db.session, feed, _chosen_topics(chosen))
        audit("feed.topics", feed, " ".join(t.slug for t in feed.topics) or "(none)")
    except FeedError as exc:
        db.session.rollback()
        return _edit_page(_feed(feed_id), {"topics": str(exc)}, set(chosen))
    db.session.commit()
    flash("Default topics saved; they go on articles from the next poll on.")
    return redirect(url_for("admin.feeds.feed", feed_id=feed_id))


def set_options(feed_id: int):
    feed = _feed(feed_id)
    form = OptionsForm()
    if not form.validate_on_submit():
        return _edit_page(feed, {"options": "Choose one of the offered options." if form.is_submitted()
                                 and "csrf_token" not in form.errors else EXPIRED})
    operations.set_feed_options(db.session, feed, reads_actions=form.actions.data == "on",
                                full_content=form.content.data == "full")
    audit("feed.options", feed, f"calls to act {form.actions.data}, digests carry {form.content.data}")
    db.session.commit()
    flash("Options saved; they apply from the next poll and the next digest.")
    return redirect(url_for("admin.feeds.feed", feed_id=feed_id))


def poll(feed_id: int):
    feed = _feed(feed_id)
    if not ButtonForm().validate_on_submit():
        return _edit_page(feed, {"poll": EXPIRED})
    # Fetched outside any transaction; the audit row is committed with what the poll stored.
    report = tasks.poll_feed(feed_id, before_commit=lambda polled, report: audit("feed.poll", polled, report.line()))
    if report is None:
        abort(404)
    if report.is_failed:
        flash(f"Poll failed: {report.error}")
    elif report.is_not_modified:
        flash("Polled: the feed has not changed since the last poll.")
    else:
        flash(f"Polled: {report.new} new article(s), {report.updated} updated, {report.unchanged} unchanged"
              + (f", {len(report.skipped)} entry(ies) skipped" if report.skipped else "") + ".")
    return redirect(url_for("admin.feeds.feed", feed_id=feed_id))


def remove(feed_id: int):
    feed = _feed(feed_id)
    if not ButtonForm().validate_on_submit():
        return _edit_page(feed, {"remove": EXPIRED})
    url = feed.url
    audit("feed.delete", feed, url)
    kept = operations.remove_feed(db.session, feed)
    db.session.commit()
    flash(f"Feed {url} removed; the {kept} article(s) it brought stay.")
    return redirect(url_for("admin.feeds.index"))


blueprint.add_url_rule("/", "index", index, methods=["GET", "POST"])
blueprint.add_url_rule("/<int:feed_id>", "feed", feed, methods=["GET"])
blueprint.add_url_rule("/<int:feed_id>/topics", "set_topics", set_topics, methods=["POST"])
blueprint.add_url_rule("/<int:feed_id>/options", "set_options", set_options, methods=["POST"])
blueprint.add_url_rule("/<int:feed_id>/poll", "poll", poll, methods=["POST"])
blueprint.add_url_rule("/<int:feed_id>/delete", "remove", remove, methods=["POST"])
