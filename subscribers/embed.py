"""The signup box on the blog: the HTML snippet `mailer signup embed` prints."""

from __future__ import annotations

from jinja2 import Environment

from mailer import clock, emails
from mailer.config import Config
from subscribers import copy, form_tokens

SNIPPET_FORM_ID = "blog"


def snippet(config: Config, secret: str, templates: Environment, *, form_id: str = SNIPPET_FORM_ID,
            framed: bool = False) -> str:
    """A plain HTML form that posts to /subscribe with a signed EMBED token (or, `framed`, an iframe of
    /subscribe?embed=1). `form_id` is kept with each consent, to tell the blog's signups apart."""
    site = config.site_name
    context = {"site_name": site, "heading": copy.heading(site), "issued": clock.now().date().isoformat()}
    if framed:
        origins = " ".join(config["signup"]["embed_origins"].split())
        return templates.get_template("embed/frame.html").render(
            src=emails.absolute_url(config, "/subscribe?embed=1"), origins=origins, **context)
    before, after = copy.consent_label(site).split("Privacy Policy", 1)
    return templates.get_template("embed/form.html").render(
        action=emails.absolute_url(config, "/subscribe"), form_id=form_id,
        token=form_tokens.issue(secret, form_tokens.EMBED), days=form_tokens.EMBED_DAYS,
        privacy_url=emails.absolute_url(config, config["site"]["privacy_policy_url"]),
        consent_before=before, consent_after=after, proof_of_work=config["signup"]["proof_of_work"], **context)
