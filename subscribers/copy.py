"""The signup copy from the public contract, in one place so pages, mail and consent records agree."""

from __future__ import annotations


def heading(site: str) -> str:
    return f"Sign Up to receive the latest updates from {site}"


def consent_label(site: str) -> str:
    """The consent text exactly as shown (the words "Privacy Policy" are the link) and as stored."""
    return f"I have read and agreed to the Privacy Policy and look forward to receiving email updates from {site}"


THANKS = "Thanks for signing up!"
