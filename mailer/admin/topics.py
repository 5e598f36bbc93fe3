"""Editors' room for topics: list them with their followers, add, rename, describe, show or hide on the
public form, merge one into another, and delete one nobody follows. Every change is audited."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, url_for
from wtforms import SelectChoice

from mailer import db
from mailer.admin import topic_forms
from mailer.admin.access import audit, get_or_404
from mailer.errors import TopicError
from mailer.topics import operations, queries
from mailer.topics.models import Topic

blueprint = Blueprint("topics", __name__, url_prefix="/topics")

EXPIRED = "The form had expired or was incomplete. Please try again."


def _topic(topic_id: int) -> Topic:
    return get_or_404(Topic, topic_id)


def _first_error(form) -> str:
    """The message of a form that did not validate: a missing or stale CSRF token, else a field's own."""
    if "csrf_token" in form.errors:
        return EXPIRED
    return next((errors[0] for errors in form.errors.values() if errors), EXPIRED)


def _merge_form(topic: Topic, **kwargs) -> topic_forms.MergeForm:
    form = topic_forms.MergeForm(**kwargs)
    form.into.choices = [SelectChoice(other.id, f"{other.title} ({other.slug})")
                         for other in queries.all_topics(db.session) if other.id != topic.id]
    return form


def index():
    form = topic_forms.NewTopicForm()
    error = None
    if form.validate_on_submit():
        try:
            topic = operations.add_topic(db.session, form.slug.data, form.title.data, form.description.data)
            audit("topic.create", topic, topic.slug)
        except TopicError as exc:
            db.session.rollback()
            error = str(exc)
        else:
            db.session.commit()
            flash(f"Topic {topic.title} added; it is shown on the signup form.")
            return redirect(url_for("admin.topics.index"))
    elif form.is_submitted():
        error = _first_error(form)
    return render_template("admin/topics.html", topics=queries.with_follower_counts(db.session), form=form,
                           error=error), (400 if error else 200)


def topic(topic_id: int):
    return _edit_page(_topic(topic_id))


def _edit_page(topic: Topic, errors: dict[str, str] | None = None, **forms):
    """The topic's page; with `errors` (form name -> message) it is the 400 answer to a refused change."""
    forms = {"title_form": topic_forms.TitleForm(formdata=None, title=topic.title),
             "description_form": topic_forms.DescriptionForm(formdata=None, description=topic.description),
             "visibility_form": topic_forms.VisibilityForm(formdata=None),
             "merge_form": _merge_form(topic, formdata=None),
             "delete_form": topic_forms.DeleteForm(formdata=None), **forms}
    return render_template("admin/topics_edit.html", topic=topic, followers=operations.follower_count(
        db.session, topic), errors=errors or {}, **forms), (400 if errors else 200)


def _change(topic: Topic, form, form_name: str, change, done: str):
    """Validate `form`, run `change` (which audits) and commit; or the topic's page with the error, unchanged."""
    if not form.validate_on_submit():
        return _edit_page(topic, {form_name: _first_error(form)}, **{form_name: form})
    try:
        change()
    except TopicError as exc:
        db.session.rollback()
        return _edit_page(topic, {form_name: str(exc)}, **{form_name: form})
    db.session.commit()
    flash(done)
    return None


def rename(topic_id: int):
    topic = _topic(topic_id)
    form = topic_forms.TitleForm()
    before = topic.title

    def change():
        operations.rename_topic(db.session, topic, form.title.data)
        audit("topic.rename", topic, f"{before} -> {topic.title}")

    return _change(topic, form, "title_form", change, "Title saved.") or redirect(
        url_for("admin.topics.topic", topic_id=topic_id))


def describe(topic_id: int):
    topic = _topic(topic_id)
    form = topic_forms.DescriptionForm()

    def change():
        operations.describe_topic(db.session, topic, form.description.data)
        audit("topic.describe", topic, topic.description)

    return _change(topic, form, "description_form", change, "Description saved.") or redirect(
        url_for("admin.topics.topic", topic_id=topic_id))


def visibility(topic_id: int):
    topic = _topic(topic_id)
    form = topic_forms.VisibilityForm()

    def change():
        operations.set_hidden(db.session, topic, form.show.data == "no")
        audit("topic.hide" if topic.is_hidden else "topic.show", topic, topic.slug)

    return _change(topic, form, "visibility_form", change, "Saved: the signup form now "
                   + ("offers" if form.show.data == "yes" else "no longer offers") + f" {topic.title}."
                   ) or redirect(url_for("admin.topics.index"))


def merge(topic_id: int):
    topic = _topic(topic_id)
    form = _merge_form(topic)
    source_slug = topic.slug
    if form.is_submitted() and form.into.data == topic.id:
        return _edit_page(topic, {"merge_form": f"cannot merge topic {topic.slug} into itself: "
                                                "choose another topic"}, merge_form=form)

    def change():
        target = _topic(form.into.data)
        audit("topic.merge", topic, f"{source_slug} -> {target.slug}")
        operations.merge_topics(db.session, topic, target)

    return _change(topic, form, "merge_form", change, f"Merged {source_slug}: its followers, articles and "
                   "alerts now have the other topic.") or redirect(url_for("admin.topics.topic",
                                                                          topic_id=form.into.data))


def delete(topic_id: int):
    topic = _topic(topic_id)
    form = topic_forms.DeleteForm()
    slug = topic.slug

    def change():
        audit("topic.delete", topic, slug)
        operations.delete_topic(db.session, topic)

    return _change(topic, form, "delete_form", change, f"Topic {slug} deleted.") or redirect(
        url_for("admin.topics.index"))


blueprint.add_url_rule("/", "index", index, methods=["GET", "POST"])
blueprint.add_url_rule("/<int:topic_id>", "topic", topic, methods=["GET"])
blueprint.add_url_rule("/<int:topic_id>/title", "rename", rename, methods=["POST"])
blueprint.add_url_rule("/<int:topic_id>/description", "describe", describe, methods=["POST"])
blueprint.add_url_rule("/<int:topic_id>/visibility", "visibility", visibility, methods=["POST"])
blueprint.add_url_rule("/<int:topic_id>/merge", "merge", merge, methods=["POST"])
blueprint.add_url_rule("/<int:topic_id>/delete", "delete", delete, methods=["POST"])
