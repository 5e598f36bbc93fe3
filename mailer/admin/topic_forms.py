"""Forms of the Topics room (Flask-WTF: every one carries a CSRF token)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import HiddenField, SelectField, StringField, TextAreaField
from wtforms.validators import AnyOf, DataRequired, Length

from mailer.topics.operations import MAX_SLUG, MAX_TITLE

MAX_DESCRIPTION = 1000


class NewTopicForm(FlaskForm):
    slug = StringField("Slug (lower-case letters, digits and hyphens, like lgbtiq-rights)",
                       validators=[DataRequired("Give the topic a slug."), Length(max=MAX_SLUG)])
    title = StringField("Title readers see (made from the slug when left empty)", validators=[Length(max=MAX_TITLE)])
    description = TextAreaField("One line on what it covers (optional)", validators=[Length(max=MAX_DESCRIPTION)])


class TitleForm(FlaskForm):
    title = StringField("Title readers see", validators=[DataRequired("A topic needs a title."),
                                                         Length(max=MAX_TITLE)])


class DescriptionForm(FlaskForm):
    description = TextAreaField("Description on the signup form (empty for none)",
                                validators=[Length(max=MAX_DESCRIPTION)])


class VisibilityForm(FlaskForm):
    show = HiddenField(validators=[AnyOf(["yes", "no"])])


class MergeForm(FlaskForm):
    into = SelectField("Merge into", coerce=int, validate_choice=True)


class DeleteForm(FlaskForm):
    """A button that deletes: only its CSRF token."""
