"""Helpers for workspace tests: make an account, read a form's CSRF token, sign in through the real form."""

from __future__ import annotations

import re

import pyotp

from mailer import clock, db
from mailer.editors import operations
from mailer.editors.models import Editor

PASSWORD = "correct horse battery staple"


def make_editor(email: str = "editor@example.org", role: str = "editor", password: str = PASSWORD) -> Editor:
    editor = operations.create(db.session, email, password, role, operations.Actor(None))
    db.session.commit()
    return editor


def csrf_token(client, url: str) -> str:
    page = client.get(url).get_data(as_text=True)
    return re.search(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"', page).group(1)


def sign_in(client, email: str = "editor@example.org", password: str = PASSWORD, *, totp_secret: str | None = None):
    """Sign in through /admin/login (and the code page when `totp_secret` is given); the last response."""
    response = client.post("/admin/login", data={"csrf_token": csrf_token(client, "/admin/login"),
                                                 "email": email, "password": password})
    if totp_secret is not None and response.status_code == 302 and "/admin/login/code" in response.location:
        response = client.post("/admin/login/code", data={
            "csrf_token": csrf_token(client, "/admin/login/code"),
            "code": pyotp.TOTP(totp_secret).at(clock.now())})
    return response


def post_form(client, page: str, url: str, **data):
    """POST `data` to `url` with the CSRF token read from `page`, as a browser would."""
    return client.post(url, data={"csrf_token": csrf_token(client, page), **data})
