"""The workspace's Privacy notice room: admins publish versions (preview first if they like); /privacy shows the
latest, /privacy/<version> any published one, and consents given afterwards record the new version."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from mailer.editors.models import AuditEvent
from mailer.privacy.models import PrivacyNotice
from subscribers.models import ConsentEvent
from tests.editors import make_editor, post_form, sign_in
from tests.test_signup import sign_up

INDEX = "/admin/privacy/"
CONFIGURED = "2026-11-01"  # site.privacy_policy_version of the test config


@pytest.fixture
def admin_client(client):
    make_editor("admin@example.org", role="admin")
    sign_in(client, "admin@example.org")
    return client


def _publish(client, version: str, body: str, **extra):
    return post_form(client, INDEX, INDEX, version=version, body=body, publish="1", **extra)


def _count(session) -> int:
    session.expire_all()
    return session.scalar(select(func.count()).select_from(PrivacyNotice))


def test_before_any_version_the_config_page_is_shown(client, session):
    page = client.get("/privacy").get_data(as_text=True)
    assert f"Version {CONFIGURED}" in page and "What we keep" in page
    assert client.get(f"/privacy/{CONFIGURED}").status_code == 200
    assert client.get("/privacy/1999-01-01").status_code == 404


def test_publish_shows_it_keeps_the_old_one_and_later_consents_record_it(admin_client, session):
    page = admin_client.get(INDEX)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "<script" not in html and "style=" not in html and 'name="csrf_token"' in html

    response = _publish(admin_client, "2026-12-01", "# Our notice\n\nWe keep **only** your address.")
    assert response.status_code == 302 and response.location.endswith(INDEX)
    response = _publish(admin_client, "2026-12-15", "# Newer notice\n\nStill only your address.")
    assert response.status_code == 302

    public = admin_client.get("/privacy").get_data(as_text=True)
    assert "Version 2026-12-15" in public and "<h2>Newer notice</h2>" in public and "What we keep" not in public
    old = admin_client.get("/privacy/2026-12-01").get_data(as_text=True)
    assert "Version 2026-12-01" in old and "We keep <strong>only</strong> your address." in old
    assert "What we keep" in admin_client.get(f"/privacy/{CONFIGURED}").get_data(as_text=True)
    assert admin_client.get("/privacy/nope").status_code == 404

    listing = admin_client.get(INDEX).get_data(as_text=True)
    assert 'href="/privacy/2026-12-01"' in listing and 'href="/privacy/2026-12-15"' in listing
    assert "2026-12-15 (current)" in listing
    assert "# Newer notice" in listing  # the form starts from the current notice

    audits = session.scalars(select(AuditEvent).where(AuditEvent.action == "privacy.publish")
                             .order_by(AuditEvent.id)).all()
    assert [a.detail for a in audits] == ["2026-12-01", "2026-12-15"]
    assert audits[0].editor_email == "admin@example.org" and audits[0].object_type == "privacy_notices"
    notice = session.scalar(select(PrivacyNotice).where(PrivacyNotice.version == "2026-12-15"))
    assert notice.published_by_id is not None and notice.body_source.startswith("# Newer notice")

    assert sign_up(admin_client, "reader@example.org").status_code == 302
    event = session.scalar(select(ConsentEvent).order_by(ConsentEvent.id.desc()))
    assert event.action.value == "given" and event.privacy_policy_version == "2026-12-15"


def test_preview_renders_without_saving(admin_client, session):
    response = post_form(admin_client, INDEX, INDEX, version="2026-12-01", body="Hello *world*", preview="1")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "Preview (not published)" in html and "Hello <em>world</em>" in html
    assert _count(session) == 0
    assert session.scalar(select(func.count()).select_from(AuditEvent)
                          .where(AuditEvent.action == "privacy.publish")) == 0


def test_script_is_removed_from_the_published_notice(admin_client, session):
    assert _publish(admin_client, "v2", "Fine text.\n\n<script>alert(1)</script>\n").status_code == 302
    notice = session.scalar(select(PrivacyNotice))
    assert "<script" not in notice.body_html and "Fine text." in notice.body_html
    assert "<script" not in admin_client.get("/privacy/v2").get_data(as_text=True)


@pytest.mark.parametrize("version, body, reason", [
    ("", "Some text", "Give the new version a name"),
    ("2026 12 01", "Some text", "letters, digits, dots and hyphens"),
    ("v<1>", "Some text", "letters, digits, dots and hyphens"),
    ("x" * 51, "Some text", "at most 50"),
    ("2026-12-01", "", "cannot be empty"),
    ("2026-12-01", "   \n ", "cannot be empty"),
])
def test_bad_input_is_a_400_with_the_reason_and_saves_nothing(admin_client, session, version, body, reason):
    response = _publish(admin_client, version, body)
    assert response.status_code == 400
    assert reason in response.get_data(as_text=True)
    assert _count(session) == 0


def test_a_version_already_published_is_refused(admin_client, session):
    assert _publish(admin_client, "2026-12-01", "First").status_code == 302
    response = _publish(admin_client, "2026-12-01", "Second")
    assert response.status_code == 400
    assert "Version 2026-12-01 is already published" in response.get_data(as_text=True)
    assert _count(session) == 1
    assert session.scalar(select(PrivacyNotice)).body_source == "First"


def test_without_csrf_nothing_is_published(admin_client, session):
    response = admin_client.post(INDEX, data={"version": "2026-12-01", "body": "Text", "publish": "1"})
    assert response.status_code == 400
    assert _count(session) == 0


def test_an_editor_gets_403(client, session):
    make_editor()
    sign_in(client)
    assert client.get(INDEX).status_code == 403
    # With a valid CSRF token (read from a page an editor may see), the room still refuses.
    assert post_form(client, "/admin/account", INDEX, version="2026-12-01", body="Text",
                     publish="1").status_code == 403
    assert _count(session) == 0
    assert "Privacy notice" not in client.get("/admin/topics/").get_data(as_text=True)


def test_a_version_published_by_another_admin_at_the_same_moment_is_a_form_error(admin_client, session, monkeypatch):
    from mailer.privacy import queries

    assert _publish(admin_client, "2026-12-01", "First").status_code == 302
    # The other admin's row commits after this request looked for the version and before it inserts its own.
    monkeypatch.setattr(queries, "by_version", lambda _session, _version: None)
    response = _publish(admin_client, "2026-12-01", "Second")
    assert response.status_code == 400
    assert "Version 2026-12-01 is already published" in response.get_data(as_text=True)
    assert _count(session) == 1
    assert session.scalar(select(PrivacyNotice)).body_source == "First"
    assert admin_client.get(INDEX).status_code == 200
