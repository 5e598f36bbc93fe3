"""The signup box room: the HTML that puts the signup form on the blog, as `mailer signup embed` prints it,
to copy into the blog's template without a shell, with a preview and which sites may frame the form."""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, Response, current_app, render_template

from mailer import clock
from mailer.web import PAGE_POLICY
from subscribers import embed, form_tokens

blueprint = Blueprint("signup_box", __name__, url_prefix="/signup-box")

# The Copy button's script (our own file) and the preview frame (our own page): nothing else loads.
PAGE_WITH_COPY_POLICY = PAGE_POLICY + "; script-src 'self'; frame-src 'self'"
# The preview is the snippet alone, as a blog would show it: the honeypot's hiding is an inline style.
# The page frames it sandboxed (no script, no form sends), and it may post nowhere.
PREVIEW_POLICY = ("default-src 'none'; style-src 'unsafe-inline'; form-action 'none'; "
                  "frame-ancestors 'self'; base-uri 'none'")


def _snippet(*, framed: bool = False) -> str:
    """The snippet the CLI prints: one function builds it for both."""
    return embed.snippet(current_app.config["MAILER"], current_app.config["SECRET_KEY"], current_app.jinja_env,
                         framed=framed)


def index():
    """The snippet to copy, what to do with it, a preview, and the framed form when origins are set."""
    config = current_app.config["MAILER"]
    origins = config["signup"]["embed_origins"].split()
    response = Response(render_template(
        "admin/signup_box.html", snippet=_snippet(), framed_snippet=_snippet(framed=True) if origins else None,
        origins=origins, proof_of_work=config["signup"]["proof_of_work"],
        renew_by=clock.now().date() + timedelta(days=form_tokens.EMBED_DAYS),
        form_id=embed.SNIPPET_FORM_ID))
    response.headers["Content-Security-Policy"] = PAGE_WITH_COPY_POLICY
    return response


def preview():
    """The snippet alone in a page of its own, for the room's sandboxed preview frame."""
    response = Response(render_template("admin/signup_box_preview.html", snippet=_snippet()))
    response.headers["Content-Security-Policy"] = PREVIEW_POLICY
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    return response


blueprint.add_url_rule("/", "index", index, methods=["GET"])
blueprint.add_url_rule("/preview", "preview", preview, methods=["GET"])
