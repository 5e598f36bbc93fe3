"""Forms for the subscriber pages (Flask-WTF: CSRF on every POST but one-click unsubscribe)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, HiddenField, SelectMultipleField, StringField
from wtforms.validators import DataRequired, Length
from wtforms.widgets import CheckboxInput, ListWidget

from subscribers.form_tokens import SignedFormToken


class TopicChoices(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()

    def pre_validate(self, form):
        # Unknown slugs are reported by the operation with a clear message; never a 500.
        pass


class SubscribeForm(FlaskForm):
    class Meta:
        # Its token is signed and time-stamped, bound to no cookie: the blog's pages post this form too.
        csrf = True
        csrf_class = SignedFormToken

    email = StringField("Email address", validators=[DataRequired("Please enter your email address.")])
    name = StringField("Name (optional)")
    topics = TopicChoices("Topics")
    consent = BooleanField(validators=[DataRequired("Please tick the box to agree, so we may email you.")])
    # A honeypot: hidden from people (CSS and aria-hidden), filled in by bots.
    website = StringField("Leave this field empty")
    form_id = HiddenField(default="subscribe", validators=[Length(max=50)])


class ConfirmForm(FlaskForm):
    pass


class PreferencesForm(FlaskForm):
    topics = TopicChoices("Topics")
    is_paused = BooleanField("Pause all emails for now")


class InboxProofForm(FlaskForm):
    pass
