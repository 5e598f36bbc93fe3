"""Editor accounts: the `mailer users` commands, signing in (throttled, two-factor), roles, sessions, audit."""

from __future__ import annotations

from datetime import timedelta

import pyotp
import pytest
from sqlalchemy import func, select

from mailer import clock, db
from mailer.editors import operations
from mailer.editors.models import AuditEvent, Editor, LoginAttempt
from tests.editors import PASSWORD, csrf_token, make_editor, post_form, sign_in

GENERIC = "That email address and password do not match an account."


# ---- the CLI ---------------------------------------------------------------------------------------

def test_users_create_list_set_role_disable_reset(runner, session):
    result = runner.invoke(["users", "create", "Alex@Example.org", "--role", "admin", "--password-stdin"],
                           input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    assert "created admin alex@example.org" in result.output
    runner.invoke(["users", "create", "sam@example.org", "--role", "editor", "--password-stdin"],
                  input=PASSWORD + "\n")
    listed = runner.invoke(["users", "list", "--json"])
    assert [(r["email"], r["role"]) for r in __import__("json").loads(listed.output)] == [
        ("alex@example.org", "admin"), ("sam@example.org", "editor")]
    assert runner.invoke(["users", "set-role", "sam@example.org", "admin"]).exit_code == 0
    assert runner.invoke(["users", "disable", "sam@example.org"]).exit_code == 0
    sam = operations.by_email(session, "sam@example.org")
    assert sam.role.value == "admin" and sam.is_disabled
    result = runner.invoke(["users", "reset-password", "sam@example.org", "--password-stdin"],
                           input="another long password\n")
    assert result.exit_code == 0, result.output
    session.expire_all()
    assert operations.by_email(session, "sam@example.org").session_version == 3  # disabled once, new password once: every session ended twice
    actions = session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all()
    assert actions == ["editor.create", "editor.create", "editor.set_role", "editor.disable", "editor.set_password"]


@pytest.mark.parametrize("args, stdin, reason", [
    (["users", "create", "a@example.org", "--role", "admin", "--password-stdin"], "short\n",
     "at least 12 characters"),
    (["users", "create", "not-an-address", "--role", "admin", "--password-stdin"], PASSWORD + "\n",
     "is not an email address"),
    (["users", "create", "a@example.org", "--role", "owner", "--password-stdin"], PASSWORD + "\n", "owner"),
    (["users", "create", "a@example.org", "--role", "admin"], "", "--password-stdin"),
    (["users", "set-role", "nobody@example.org", "admin"], "", "no editor account"),
    (["users", "disable", "nobody@example.org"], "", "no editor account"),
])
def test_users_bad_input_is_one_line_and_changes_nothing(runner, session, args, stdin, reason):
    result = runner.invoke(args, input=stdin)
    assert result.exit_code == 2
    assert reason in result.output and "Traceback" not in result.output
    assert session.scalar(select(func.count()).select_from(Editor)) == 0


def test_an_account_that_exists_is_not_made_twice(runner):
    make_editor("a@example.org")
    result = runner.invoke(["users", "create", "A@example.org", "--role", "admin", "--password-stdin"],
                           input=PASSWORD + "\n")
    assert result.exit_code == 2 and "already exists" in result.output


def test_the_last_admin_cannot_be_demoted_or_disabled(runner):
    make_editor("admin@example.org", "admin")
    assert "last active admin" in runner.invoke(["users", "set-role", "admin@example.org", "editor"]).output
    assert "last active admin" in runner.invoke(["users", "disable", "admin@example.org"]).output


def test_passwords_are_stored_as_argon2_hashes(session):
    editor = make_editor()
    assert editor.password_hash.startswith("$argon2id$") and PASSWORD not in editor.password_hash


# ---- signing in ------------------------------------------------------------------------------------

def test_admin_shows_the_sign_in_form_when_signed_out(client):
    page = client.get("/admin/")
    assert page.status_code == 200 and 'name="password"' in page.get_data(as_text=True)


@pytest.mark.parametrize("path", ["/admin/accounts/", "/admin/account", "/admin/accounts/audit"])
def test_no_session_goes_to_the_sign_in_page(client, path):
    response = client.get(path)
    assert response.status_code == 302 and response.location.startswith("/admin/login")


def test_sign_in_and_out(client, session):
    make_editor("admin@example.org", "admin")
    response = sign_in(client, "admin@example.org")
    assert response.status_code == 302
    assert client.get("/admin/accounts/").status_code == 200
    post_form(client, "/admin/account", "/admin/logout")
    assert client.get("/admin/accounts/").status_code == 302


def test_wrong_address_and_wrong_password_get_the_same_words(client):
    make_editor()
    wrong_password = sign_in(client, password="not the password at all")
    wrong_address = sign_in(client, email="nobody@example.org")
    assert wrong_password.status_code == wrong_address.status_code == 401
    assert GENERIC in wrong_password.get_data(as_text=True) and GENERIC in wrong_address.get_data(as_text=True)


def test_a_login_post_without_csrf_token_changes_nothing(client, session):
    make_editor()
    response = client.post("/admin/login", data={"email": "editor@example.org", "password": PASSWORD})
    assert response.status_code == 400
    assert client.get("/admin/account").status_code == 302


def test_sign_in_is_throttled_per_account_even_with_the_right_password(client, session):
    make_editor()
    for _ in range(operations.MAX_FAILURES_PER_ACCOUNT):
        assert sign_in(client, password="wrong wrong wrong").status_code == 401
    refused = sign_in(client)
    assert refused.status_code == 429 and "Too many failed sign-ins" in refused.get_data(as_text=True)
    clock.freeze(clock.now() + operations.THROTTLE_WINDOW + timedelta(seconds=1))
    try:
        assert sign_in(client).status_code == 302
    finally:
        clock.thaw()


def test_throttle_counts_in_the_database_so_it_holds_across_processes(app, client, session):
    """Failures recorded by one app (one process) refuse a sign-in on another app on the same database."""
    from mailer.app import create_app

    make_editor()
    for _ in range(operations.MAX_FAILURES_PER_ACCOUNT):
        sign_in(client, password="wrong wrong wrong")
    assert session.scalar(select(func.count()).select_from(LoginAttempt)) == operations.MAX_FAILURES_PER_ACCOUNT
    other = create_app(app.config["MAILER"])
    assert sign_in(other.test_client()).status_code == 429


def test_sign_in_is_throttled_per_address_across_accounts(client):
    for n in range(operations.MAX_FAILURES_PER_ADDRESS):
        sign_in(client, email=f"guess{n}@example.org")
    make_editor()
    assert sign_in(client).status_code == 429


def test_a_disabled_account_cannot_sign_in_and_its_sessions_end_at_once(app, client, session, runner):
    make_editor("admin@example.org", "admin")
    make_editor("sam@example.org", "editor")
    sign_in(client, "sam@example.org")
    assert client.get("/admin/account").status_code == 200
    assert runner.invoke(["users", "disable", "sam@example.org"]).exit_code == 0
    assert client.get("/admin/account").status_code == 302
    assert sign_in(client, "sam@example.org").status_code == 401


def test_an_editor_gets_403_on_admin_pages(client):
    make_editor()
    sign_in(client)
    for path in ("/admin/accounts/", "/admin/accounts/audit"):
        assert client.get(path).status_code == 403
    assert client.post("/admin/accounts/require-two-factor",
                       data={"csrf_token": csrf_token(client, "/admin/account"), "required": "y"}).status_code == 403


def test_a_session_ends_after_the_idle_time(app, client):
    make_editor()
    clock.freeze(clock.now())
    try:
        sign_in(client)
        clock.advance(timedelta(hours=11))
        assert client.get("/admin/account").status_code == 200  # and the idle time starts again
        clock.advance(timedelta(hours=11))
        assert client.get("/admin/account").status_code == 200
        clock.advance(timedelta(hours=12, seconds=1))
        expired = client.get("/admin/account")
        assert expired.status_code == 302 and "expired=1" in expired.location
    finally:
        clock.thaw()


def test_sign_out_everywhere_ends_other_sessions(app, client):
    make_editor()
    other = app.test_client()
    sign_in(client)
    sign_in(other)
    post_form(client, "/admin/account", "/admin/logout", everywhere="1")
    assert other.get("/admin/account").status_code == 302


def test_next_never_leads_off_the_workspace(client):
    make_editor()
    response = client.post("/admin/login?next=//evil.example/admin/", data={
        "csrf_token": csrf_token(client, "/admin/login"), "email": "editor@example.org", "password": PASSWORD})
    assert response.location == "/admin/"


# ---- two-factor ------------------------------------------------------------------------------------

def _enrol(client) -> tuple[str, list[str]]:
    import re

    page = client.get("/admin/account/two-factor").get_data(as_text=True)
    secret = re.search(r'<code id="secret" class="secret">([A-Z2-7]+)</code>', page).group(1)
    done = post_form(client, "/admin/account/two-factor", "/admin/account/two-factor",
                     code=pyotp.TOTP(secret).at(clock.now()))
    codes = re.findall(r"<li><code>([0-9a-f]{5}-[0-9a-f]{5})</code></li>", done.get_data(as_text=True))
    return secret, codes


def test_two_factor_enrolment_and_sign_in(app, client, session):
    make_editor()
    clock.freeze(clock.now())
    try:
        sign_in(client)
        secret, codes = _enrol(client)
        assert len(codes) == 10
        post_form(client, "/admin/account", "/admin/logout")
        clock.advance(timedelta(seconds=60))

        after_password = sign_in(client)
        assert after_password.location.startswith("/admin/login/code")
        assert client.get("/admin/account").status_code == 302  # a password alone is not a session
        wrong = post_form(client, "/admin/login/code", "/admin/login/code", code="000000")
        assert wrong.status_code == 401
        code = pyotp.TOTP(secret).at(clock.now())
        assert post_form(client, "/admin/login/code", "/admin/login/code", code=code).status_code == 302
        assert client.get("/admin/account").status_code == 200

        post_form(client, "/admin/account", "/admin/logout")
        sign_in(client)  # the same code again, within its 30 seconds: a replay
        assert post_form(client, "/admin/login/code", "/admin/login/code", code=code).status_code == 401
        assert post_form(client, "/admin/login/code", "/admin/login/code", code=codes[0]).status_code == 302
        post_form(client, "/admin/account", "/admin/logout")
        sign_in(client)
        assert post_form(client, "/admin/login/code", "/admin/login/code", code=codes[0]).status_code == 401
    finally:
        clock.thaw()


def test_wrong_codes_are_throttled(client):
    make_editor()
    clock.freeze(clock.now())
    try:
        sign_in(client)
        _enrol(client)
        post_form(client, "/admin/account", "/admin/logout")
        sign_in(client)
        for _ in range(operations.MAX_FAILURES_PER_ACCOUNT):
            post_form(client, "/admin/login/code", "/admin/login/code", code="123456")
        assert post_form(client, "/admin/login/code", "/admin/login/code", code="123456").status_code == 429
    finally:
        clock.thaw()


def test_an_admin_can_require_two_factor_for_everyone(app, client):
    make_editor("admin@example.org", "admin")
    make_editor("sam@example.org", "editor")
    sign_in(client, "admin@example.org")
    post_form(client, "/admin/accounts/", "/admin/accounts/require-two-factor", required="y")
    editor_client = app.test_client()
    sign_in(editor_client, "sam@example.org")
    response = editor_client.get("/admin/account")
    assert response.status_code == 302 and "/admin/account/two-factor" in response.location
    _enrol(editor_client)
    assert editor_client.get("/admin/account").status_code == 200


# ---- accounts in the browser and the audit log -----------------------------------------------------

def test_an_admin_creates_an_editor_and_the_audit_log_lists_it(client, session):
    make_editor("admin@example.org", "admin")
    sign_in(client, "admin@example.org")
    created = post_form(client, "/admin/accounts/", "/admin/accounts/", email="sam@example.org",
                        password=PASSWORD, role="editor")
    assert created.status_code == 302
    bad = post_form(client, "/admin/accounts/", "/admin/accounts/", email="sam@example.org",
                    password="short", role="editor")
    assert bad.status_code == 400 and "at least 12 characters" in bad.get_data(as_text=True)
    sam = operations.by_email(session, "sam@example.org")
    post_form(client, "/admin/accounts/", f"/admin/accounts/{sam.id}/disable")
    log = client.get("/admin/accounts/audit").get_data(as_text=True)
    for action in ("editor.create", "editor.sign_in", "editor.disable"):
        assert action in log
    event = session.scalars(select(AuditEvent).where(AuditEvent.action == "editor.disable")).one()
    assert event.editor_email == "admin@example.org" and event.object_id == str(sam.id)
    assert event.ip_address == "127.0.0.1"


def test_workspace_pages_are_never_cached(client):
    make_editor()
    sign_in(client)
    assert client.get("/admin/account").headers["Cache-Control"] == "no-store"


# ---- inputs nobody listed ----------------------------------------------------------------------------

@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_any_sign_in_input_is_refused_cleanly(client):
    """Whatever is typed into the sign-in form: a 4xx with the form again, never a 500 or a session."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    make_editor()
    token = csrf_token(client, "/admin/login")

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(email=st.text(max_size=300), password=st.text(max_size=200))
    def attempt(email, password):
        response = client.post("/admin/login", data={"csrf_token": token, "email": email, "password": password})
        assert response.status_code in (400, 401, 429), response.status_code
        assert client.get("/admin/account").status_code == 302

    attempt()


def test_sign_in_attempts_are_forgotten_after_a_day(app, client, session):
    from mailer import scheduling

    sign_in(client, email="someone@example.org")
    clock.freeze(clock.now() + timedelta(days=1, minutes=1))
    try:
        sign_in(client, email="someone-else@example.org")
        scheduling._app = app
        scheduling.run_task(scheduling.BUILTIN_JOBS["forget-sign-in-attempts"][0])
        session.expire_all()
        assert session.scalars(select(LoginAttempt.email)).all() == ["someone-else@example.org"]
    finally:
        clock.thaw()
