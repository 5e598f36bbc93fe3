"""The signup box room: editors copy the snippet `mailer signup embed` prints without a shell, see which sites
may frame the form, and a sandboxed preview of the box. (A phone in Chromium: tests/test_admin_browser.py.)"""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from mailer import db as db_module
from tests.conftest import FreshContextClient, make_config
from tests.editors import make_editor, sign_in

BLOG = "https://blog.example.org"


class _Textareas(HTMLParser):
    """Each textarea's text as a browser holds it (character references decoded), by id."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.values: dict[str, str] = {}
        self._open: str | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "textarea":
            self._open = dict(attrs)["id"]
            self.values[self._open] = ""

    def handle_endtag(self, tag):
        if tag == "textarea":
            self._open = None

    def handle_data(self, data):
        if self._open is not None:
            self.values[self._open] += data


def textareas(html: str) -> dict[str, str]:
    parser = _Textareas()
    parser.feed(html)
    return parser.values


def _cli_output(runner, *args) -> str:
    result = runner.invoke(["signup", "embed", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_an_editor_finds_the_box_in_the_menu_and_gets_what_the_cli_prints(client, runner, frozen_clock):
    make_editor()
    sign_in(client)
    dashboard = client.get("/admin/dashboard/").get_data(as_text=True)
    assert '<a href="/admin/signup-box/">Signup box</a>' in dashboard
    response = client.get("/admin/signup-box/")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert '<form class="mailer-signup"' not in page  # shown as code to copy, not as a live form
    boxes = textareas(page)
    assert list(boxes) == ["snippet"]  # no framed form until an origin is named
    assert boxes["snippet"] + "\n" == _cli_output(runner)
    assert "No site may show it yet." in page and "signup.embed_origins" in page
    assert "28 December 2027" in page  # 400 days from 23 November 2026: when to paste a fresh copy
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]  # the Copy button's own file


def test_an_admin_sees_the_same_box(client, runner, frozen_clock):
    make_editor("admin@example.org", "admin")
    sign_in(client, "admin@example.org")
    page = client.get("/admin/signup-box/").get_data(as_text=True)
    assert textareas(page)["snippet"] + "\n" == _cli_output(runner)


@pytest.mark.parametrize("path", ["/admin/signup-box/", "/admin/signup-box/preview"])
def test_a_visitor_who_is_not_signed_in_is_sent_to_sign_in(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response.location == f"/admin/login?next={path}"


def test_the_preview_is_the_box_itself_framed_only_by_the_workspace_and_posting_nowhere(client, runner,
                                                                                        frozen_clock):
    make_editor()
    sign_in(client)
    page = client.get("/admin/signup-box/").get_data(as_text=True)
    assert '<iframe class="signup-preview" title="Preview of the signup box" sandbox src="/admin/signup-box/preview">' in page
    response = client.get("/admin/signup-box/preview")
    assert response.status_code == 200
    assert _cli_output(runner).strip() in response.get_data(as_text=True)
    policy = response.headers["Content-Security-Policy"]
    assert "form-action 'none'" in policy and "frame-ancestors 'self'" in policy and "script-src" not in policy
    assert response.headers["X-Frame-Options"] == "SAMEORIGIN"


@pytest.fixture
def blog_app(database_url, tmp_path):
    """The app with the blog's origin in signup.embed_origins."""
    from mailer.app import create_app

    app = create_app(make_config(database_url, tmp_path, signup={"min_seconds": 0, "embed_origins": BLOG}))
    app.config["TESTING"] = True
    app.test_client_class = FreshContextClient
    with app.app_context():
        yield app
    db_module.session.remove()
    app.extensions["engine"].dispose()


def test_with_the_blogs_origin_set_the_framed_form_is_offered_as_the_cli_prints_it(blog_app, frozen_clock):
    from click.testing import CliRunner

    from mailer.cli import cli

    make_editor()
    client = blog_app.test_client()
    sign_in(client)
    page = client.get("/admin/signup-box/").get_data(as_text=True)
    assert f"<li><code>{BLOG}</code></li>" in page and "No site may show it yet." not in page
    boxes = textareas(page)
    for box, args in (("snippet", []), ("framed-snippet", ["--frame"])):
        result = CliRunner().invoke(cli, ["signup", "embed", *args], obj={"app": blog_app})
        assert result.exit_code == 0, result.output
        assert boxes[box] + "\n" == result.output
