"""The digest HTML in a real Chromium at a phone's and a desktop mail client's width."""

from __future__ import annotations

import os
import shutil

import pytest

from mailer.digests.compose import Placeholders, compose_digest, personalise
from mailer.links.views import PIXEL
from tests.test_digest_compose import fill, settings, views

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but Chromium is not installed: .ci/run must install it")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        yield browser
        browser.close()


@pytest.mark.parametrize("width", [320, 600])
def test_digest_fits_the_viewport_and_buttons_are_tappable(browser, frozen_clock, width):
    placeholders = Placeholders("render")
    parts = compose_digest(views(placeholders), frozenset(), settings(placeholders))
    html = personalise(parts, placeholders, fill).html
    page = browser.new_page(viewport={"width": width, "height": 900})
    # No network: every image (the lead's is remote) is answered with a local GIF the layout scales.
    page.route("**/*", lambda route: route.fulfill(status=200, body=PIXEL, content_type="image/gif"))
    page.set_content(html)
    assert page.evaluate("document.documentElement.scrollWidth") <= width, "the digest scrolls sideways"
    image = page.locator("img").first.bounding_box()
    assert 0 < image["width"] <= width - 48  # the lead image fills the column inside the padding
    buttons = page.locator("a.action")
    assert buttons.count() == 4
    for i in range(buttons.count()):
        box = buttons.nth(i).bounding_box()
        assert box["height"] >= 40 and box["x"] >= 0 and box["x"] + box["width"] <= width
    heading = page.get_by_role("heading", level=1)
    assert heading.inner_text().startswith("Two Dead And At Least 40 Detained")
    page.close()
