"""Forms of the workspace's sign-in and account pages (Flask-WTF: every one carries a CSRF token)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, PasswordField, SelectChoice, SelectField, StringField
from wtforms.validators import DataRequired, Length

ROLES = [SelectChoice("editor", "Editor: content, topics, subscribers and sends"),
         SelectChoice("admin", "Admin: everything, including accounts and the audit log")]


class LoginForm(FlaskForm):
    email = EmailField("Email address", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])


class CodeForm(FlaskForm):
    code = StringField("Code", validators=[DataRequired(), Length(max=20)],
                       render_kw={"autocomplete": "one-time-code", "inputmode": "numeric"})


class PasswordForm(FlaskForm):
    current = PasswordField("Current password", validators=[DataRequired(), Length(max=1024)])
    new = PasswordField("New password (at least 12 characters)", validators=[DataRequired(), Length(max=1024)])


class EditorForm(FlaskForm):
    email = EmailField("Email address", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("First password (at least 12 characters; they can change it)",
                             validators=[DataRequired(), Length(max=1024)])
    role = SelectField("Role", choices=ROLES, default="editor")


class RoleForm(FlaskForm):
    role = SelectField("Role", choices=ROLES)


class ConfirmForm(FlaskForm):
    """A button that changes something: only its CSRF token."""


class RequireTotpForm(FlaskForm):
    required = BooleanField("Every account must use two-factor sign-in")
