"""The one check every message a test produces goes through: the contract's "Every bulk message carries"."""

from __future__ import annotations

import re
from email.message import EmailMessage


def check_message(msg: EmailMessage, *, postal_address: str) -> dict[str, str]:
    """Assert headers, both parts and footer links; return {'text', 'html', 'unsubscribe_url', 'preferences_url'}."""
    for header in ("From", "To", "Date", "Message-ID", "Subject", "List-Id", "List-Unsubscribe",
                   "List-Unsubscribe-Post"):
        assert msg[header], f"missing header {header}"
        assert "\n" not in str(msg[header]) and "\r" not in str(msg[header]), f"line break in {header}"
    assert str(msg["List-Unsubscribe-Post"]) == "List-Unsubscribe=One-Click"
    links = re.findall(r"<([^>]+)>", str(msg["List-Unsubscribe"]))
    https = [u for u in links if u.startswith("https://")]
    assert https and "/unsubscribe/" in https[0], f"List-Unsubscribe has no https unsubscribe URL: {links}"
    assert all(u.startswith(("https://", "mailto:")) for u in links)
    # As it stands on the wire: a mail client does not decode RFC 2047 words in a URL header.
    raw = {name.lower(): value for name, value in msg.raw_items()}
    assert re.fullmatch(r"<[^<>\s]+>(,\s*<[^<>\s]+>)*", raw["list-unsubscribe"]), \
        f"List-Unsubscribe is not a plain list of <URL>s on the wire: {raw['list-unsubscribe']!r}"
    assert raw["list-unsubscribe-post"] == "List-Unsubscribe=One-Click"
    assert re.fullmatch(r"<[^<>@\s]+@[^<>@\s]+>", str(msg["Message-ID"])), msg["Message-ID"]
    assert msg.get_content_type() == "multipart/alternative"
    text_part = msg.get_body(preferencelist=("plain",))
    html_part = msg.get_body(preferencelist=("html",))
    assert text_part is not None and html_part is not None, "needs a text and an HTML part"
    text, html = text_part.get_content(), html_part.get_content()
    unsubscribe_url = https[0]
    assert unsubscribe_url in text, "visible unsubscribe link missing from the text part"
    assert f'href="{unsubscribe_url}"' in html, "visible unsubscribe link missing from the HTML part"
    preferences = re.search(r"https://\S+/preferences/[\w.\-]+", text)
    assert preferences, "manage-preferences link missing from the text part"
    assert f'href="{preferences.group(0)}"' in html, "manage-preferences link missing from the HTML part"
    if postal_address:
        assert postal_address in text, "postal address missing from the text footer"
        assert postal_address in html, "postal address missing from the HTML footer"
    return {"text": text, "html": html, "unsubscribe_url": unsubscribe_url,
            "preferences_url": preferences.group(0)}
