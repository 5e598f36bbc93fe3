"""The digest HTML in a real Chromium at a phone's and a desktop mail client's width."""

from __future__ import annotations

import pytest

from mailer.digests.compose import Placeholders, compose_digest, personalise
from mailer.links.views import PIXEL
from tests.test_digest_compose import fill, settings, views

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("width", [320, 600])
def test_digest_fits_the_viewport_and_buttons_are_tappable(chromium, frozen_clock, width):
    placeholders = Placeholders("render")
    parts = compose_digest(views(placeholders), frozenset(), settings(placeholders))
    html = personalise(parts, placeholders, fill).html
    page = chromium.new_page(viewport={"width": width, "height": 900})
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
