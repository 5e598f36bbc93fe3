"""In Chromium: open the archive, open a digest's web version, press an action button, land on the sealed URL."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select

from mailer import db
from mailer.digests import operations
from mailer.sends import operations as send_operations
from mailer.links.models import Click
from tests import factories
from tests.conftest import make_config

pytestmark = pytest.mark.browser


@pytest.fixture
def live_site(database_url, tmp_path, frozen_clock):
    """The app served over HTTP on a free loopback port, with base_url pointing at it."""
    from werkzeug.serving import make_server

    from mailer.app import create_app

    apps = {}
    server = make_server("127.0.0.1", 0, lambda environ, start: apps["app"](environ, start), threaded=True)
    base_url = f"http://127.0.0.1:{server.server_port}"
    app = create_app(make_config(database_url, tmp_path, site={"base_url": base_url}))
    apps["app"] = app
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    with app.app_context():
        yield base_url
    server.shutdown()
    thread.join()
    db.session.remove()
    app.extensions["engine"].dispose()


def test_archive_page_and_tracked_button_land_on_the_petition(chromium, live_site):
    factories.fixed_articles(db.session)
    factories.subscriber(db.session, "reader@example.org")
    send = operations.compose_next(db.session)
    send_operations.queue(db.session, send)
    db.session.commit()
    subject = send.subject
    db.session.remove()  # the server's threads need the database now

    page = chromium.new_page(viewport={"width": 390, "height": 844})
    # The petition site is outside this machine: answer for it, and for remote images, locally.
    page.route("https://**/*", lambda route: route.fulfill(
        status=200, content_type="text/html", body="<title>Petition</title><h1>Russia, intervene</h1>"))
    page.goto(f"{live_site}/archive/")
    page.get_by_role("link", name=subject).click()
    page.wait_for_url(f"{live_site}/archive/{send.slug}")
    page.get_by_role("link", name="Sign the petition for Russia to intervene").click()
    page.wait_for_url(factories.PETITION_URL)
    assert page.get_by_role("heading").inner_text() == "Russia, intervene"
    page.close()

    click = db.session.scalar(select(Click))
    assert click is not None and click.subscriber_id is None  # the web version is anonymous
