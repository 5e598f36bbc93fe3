"""Thin handlers for the subscriber pages: parse, call an operation, commit, render."""

from __future__ import annotations

import hmac
import json

from flask import Response, current_app, make_response, redirect, render_template, request, url_for
from flask_wtf.csrf import CSRFError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from werkzeug.exceptions import HTTPException

from mailer import db, ratelimits, web
from mailer.extensions import limiter
from mailer.errors import InvalidToken, SubscriberError
from mailer.topics import queries as topic_queries
from mailer.topics.models import Topic
from mailer.topics.operations import SLUG_RE
from subscribers import challenge, copy, forms, operations, queries, tokens
from subscribers.models import Subscriber, SubscriberState


def _meta(form_id: str = "") -> operations.RequestMeta:
    """Who asked, from which page (`form_id`): kept with the consent event as proof."""
    return operations.RequestMeta(
        source="web",
        form_id=form_id,
        ip_address=request.remote_addr or "",
        user_agent=request.headers.get("User-Agent", ""),
    )


def _topic_choices(subscriber: Subscriber | None = None) -> list[tuple[str, str]]:
    """Topics not hidden, plus the hidden ones `subscriber` already follows (so saving keeps them)."""
    own = subscriber.topics if subscriber is not None else []
    return [(t.slug, t.title) for t in topic_queries.public_topics(db.session, also=own)]


def _refuse_topics_not_offered(form) -> None:
    """A hidden topic posted by hand is as unknown as a made-up one (the same words: nothing to probe).
    Malformed slugs are left to the operation, which reports them safely."""
    offered = {slug for slug, _ in form.topics.choices}
    hidden = sorted(slug for slug in form.topics.data or [] if slug not in offered and SLUG_RE.fullmatch(slug))
    if hidden:
        raise SubscriberError(f"Unknown topic: {', '.join(hidden)}", field="topics")


def _topic_descriptions() -> dict[str, str]:
    return {t.slug: t.description for t in db.session.scalars(select(Topic))}


def home():
    return redirect(url_for("subscribers.subscribe"))


def _signup_rate_limit() -> str:
    return current_app.config["MAILER"]["signup"]["rate_limit"]


def _signup_unlimited() -> bool:
    return not _signup_rate_limit()


def embed_origins() -> list[str]:
    """The origins `signup.embed_origins` lets frame the signup form."""
    return current_app.config["MAILER"]["signup"]["embed_origins"].split()


def _is_embedded() -> bool:
    """`?embed=1` on a site that names origins to frame it: the form without our header, frameable."""
    return request.args.get("embed") == "1" and bool(embed_origins())


def _signup_page_policy(response: Response, *, embedded: bool, has_script: bool = False) -> Response:
    """Framed (`embedded`), this response only may be framed by `signup.embed_origins` (every other keeps
    frame-ancestors 'none'); with the proof of work, it runs our one script."""
    policy = web.PAGE_POLICY
    if embedded:
        policy = policy.replace("frame-ancestors 'none'", "frame-ancestors " + " ".join(embed_origins()))
    if has_script:
        policy = policy.replace("default-src 'none';", "default-src 'none'; script-src 'self';")
    if policy != web.PAGE_POLICY:
        response.headers["Content-Security-Policy"] = policy
    return response


def _proof_of_work_is_missing(config) -> bool:
    """With `signup.proof_of_work`, whether the form came without a fresh solution (which it uses up)."""
    if not config["signup"]["proof_of_work"]:
        return False
    return not challenge.take(db.session.connection(), current_app.config["SECRET_KEY"],
                              request.form.get("altcha", ""))


@ratelimits.counted_in_the_request
@limiter.limit(_signup_rate_limit, methods=["POST"], exempt_when=_signup_unlimited)
def subscribe():
    """The signup form. Every path commits (a refusal too): the per-IP limit's count is part of this
    request's transaction (mailer.ratelimits), so a signup is one transaction (on SQLite one turn of
    the write lock)."""
    config = current_app.config["MAILER"]
    site = config.site_name
    embedded = _is_embedded()
    if request.method == "GET":  # showing the form only reads: it need not wait for SQLite's writers
        db.reading()
    try:
        form = forms.SubscribeForm()
    except HTTPException:  # a body far too large (413), or not a form: refused, and still counted
        db.session.commit()
        raise
    notice = ""
    # The form and its token are checked before the first query of our own; topics are read only
    # when a reader posted some, or when the page is shown.
    if form.validate_on_submit():
        if form.website.data:  # the honeypot: look like success, store nothing
            db.session.commit()
            return redirect(url_for("subscribers.thanks", embed=1 if embedded else None))
        try:
            notice = _sign_up(form, _meta(form.form_id.data or "subscribe"), config)
        except SubscriberError as exc:
            field = getattr(form, exc.field or "email")
            field.errors = [*field.errors, str(exc)]
        else:
            if not notice:
                return redirect(url_for("subscribers.thanks", embed=1 if embedded else None))
    elif form.csrf_token.errors:
        refusal = getattr(form, "token_refusal", None)
        if refusal is None or refusal.forged:  # no token, or not one of ours: not our form at all
            db.session.commit()
            raise CSRFError("signup form token refused")
        notice = str(refusal)  # expired, or sent back too fast: the form again, filled in, nothing stored
    status = 400 if form.errors or notice else 200
    form.topics.choices = _topic_choices()
    descriptions = _topic_descriptions()
    db.session.commit()  # before rendering: on SQLite the transaction holds the write lock
    has_script = config["signup"]["proof_of_work"]
    proof = challenge.new(current_app.config["SECRET_KEY"], config["signup"]["proof_of_work_max_number"]) \
        if has_script else ""
    response = make_response(render_template(
        "subscribe.html", form=form, heading=copy.heading(site), consent_label=copy.consent_label(site),
        descriptions=descriptions, notice=notice, embedded=embedded, proof_of_work=proof), status)
    return _signup_page_policy(response, embedded=embedded, has_script=has_script)


def _sign_up(form: forms.SubscribeForm, meta: operations.RequestMeta, config) -> str:
    """Sign up and commit; the notice to show instead ("" when signed up). A refusal (SubscriberError)
    and a concurrent signup of the same new address (retried once, not a 500) roll back only to a
    savepoint: what the limit counted in this transaction stays."""

    def work() -> str:
        with db.session.begin_nested():
            if form.topics.data:
                form.topics.choices = _topic_choices()
                _refuse_topics_not_offered(form)
            if _proof_of_work_is_missing(config):
                return challenge.UNSOLVED
            operations.sign_up(db.session, email=form.email.data, name=form.name.data or "",
                               topic_slugs=form.topics.data or [], meta=meta)
        return ""

    try:
        notice = work()
    except IntegrityError:  # the other signup committed first: this time its row is found
        notice = work()
    db.session.commit()
    return notice


def thanks():
    embedded = _is_embedded()
    response = make_response(render_template("thanks.html", thanks=copy.THANKS, embedded=embedded))
    return _signup_page_policy(response, embedded=embedded)


def confirm(token: str):
    subscriber_id, digest, version = tokens.read_confirm(token)
    subscriber = queries.subscriber_for_token(subscriber_id)
    if not hmac.compare_digest(tokens.address_digest(subscriber.email), digest):
        raise InvalidToken(tokens.NOT_VALID)
    if subscriber.token_version != version:
        raise InvalidToken(tokens.SUPERSEDED)
    form = forms.ConfirmForm()
    if request.method == "POST":
        if not form.validate_on_submit():
            raise InvalidToken("The form had expired. Please open the link from your email again.")
        confirmed_now = operations.confirm(db.session, subscriber, _meta("confirm"))
        db.session.commit()
        # The preferences link only at the moment of confirming: a confirmation mail forwarded later,
        # or opened again, is no key to the subscription (the welcome mail carries the links).
        return render_template("confirmed.html", manage=tokens.links(subscriber) if confirmed_now else None)
    if subscriber.state == SubscriberState.confirmed:
        return render_template("confirmed.html", manage=None)
    return render_template("confirm.html", form=form, email=queries.masked(subscriber.email))


def _preferences_subscriber(token: str) -> Subscriber:
    subscriber_id, version = tokens.read_preferences(token)
    subscriber = queries.subscriber_for_token(subscriber_id)
    if subscriber.token_version != version:
        raise InvalidToken(tokens.SUPERSEDED)
    return subscriber


def preferences(token: str):
    """Topics, pause, unsubscribe and "sign out all links in my old mails"; data and erasure from here
    only by a link mailed to the inbox."""
    subscriber = _preferences_subscriber(token)
    form = forms.PreferencesForm()
    form.topics.choices = _topic_choices(subscriber)
    saved = False
    if request.method == "GET":
        form.topics.data = [t.slug for t in subscriber.topics]
        form.is_paused.data = subscriber.is_paused
    elif form.validate_on_submit():
        action = request.form.get("action")
        if action == "unsubscribe":
            operations.unsubscribe(db.session, subscriber, _meta("preferences"))
            db.session.commit()
            return render_template("unsubscribed.html")
        if action == "revoke":
            operations.revoke_links(db.session, subscriber)
            db.session.commit()
            return render_template("links_revoked.html", email=queries.masked(subscriber.email))
        try:
            _refuse_topics_not_offered(form)
            operations.update_preferences(db.session, subscriber, topic_slugs=form.topics.data or [],
                                          is_paused=bool(form.is_paused.data), meta=_meta("preferences"))
        except SubscriberError as exc:
            db.session.rollback()
            form.topics.errors = [*form.topics.errors, str(exc)]
        else:
            db.session.commit()
            saved = True
    status = 400 if form.errors else 200
    return render_template("preferences.html", form=form, subscriber=subscriber, token=token, saved=saved,
                           email=queries.masked(subscriber.email), descriptions=_topic_descriptions()), status


def _ask_inbox(token: str, purpose: str):
    """GET: what happens next; POST: mail a single-use link to the subscriber's own address."""
    subscriber = _preferences_subscriber(token)
    form = forms.InboxProofForm()
    email = queries.masked(subscriber.email)
    if request.method == "POST":
        if not form.validate_on_submit():
            raise InvalidToken("The form had expired. Please open the link from your email again.")
        try:
            operations.request_inbox_proof(db.session, subscriber, purpose)
        except SubscriberError as exc:
            db.session.rollback()
            return render_template("error.html", title="Please wait", message=str(exc)), 429
        db.session.commit()
        return render_template("inbox_proof_sent.html", email=email, token=token)
    return render_template("inbox_proof_ask.html", form=form, purpose=purpose, email=email, token=token)


def export_data(token: str):
    """Ask for a link, mailed to the inbox, that downloads everything we hold (GDPR Art. 15 and 20)."""
    return _ask_inbox(token, "data")


def erase(token: str):
    """Ask for a link, mailed to the inbox, that erases everything we hold (GDPR Art. 17)."""
    return _ask_inbox(token, "erase")


def inbox_proof(nonce: str):
    """The link mailed to the inbox. GET shows a button (link scanners fetch every link: a GET must not
    spend it); POST spends it and downloads the data or erases the subscriber."""
    proof = queries.inbox_proof(nonce)
    form = forms.InboxProofForm()
    if request.method == "GET":
        subscriber = queries.subscriber_for_token(proof.subscriber_id)
        return render_template("inbox_proof.html", form=form, purpose=proof.purpose,
                               email=queries.masked(subscriber.email))
    if not form.validate_on_submit():
        raise InvalidToken("The form had expired. Please open the link from your email again.")
    proof = operations.use_inbox_proof(db.session, nonce)
    subscriber = queries.subscriber_for_token(proof.subscriber_id)
    if proof.purpose == "erase":
        email = subscriber.email
        operations.erase(db.session, subscriber)
        db.session.commit()
        config = current_app.config["MAILER"]
        if config["mail"]["backend"] == "maildir":
            operations.forget_in_maildir(config["mail"]["maildir"], email)
        return render_template("erased.html")
    body = json.dumps(queries.personal_data(subscriber), indent=2, ensure_ascii=False)
    db.session.commit()
    return Response(body, mimetype="application/json",
                    headers={"Content-Disposition": 'attachment; filename="my-subscription-data.json"'})


def unsubscribe(token: str):
    """Any link allowed to unsubscribe; an unsubscribe link of any version (RFC 8058: one click from
    any old mail)."""
    subscriber_id, version = tokens.read_unsubscribe(token)
    subscriber = queries.by_id(subscriber_id)
    if subscriber is not None and version is not None and version != subscriber.token_version:
        raise InvalidToken(tokens.SUPERSEDED)
    if subscriber is None:  # erased: there is nothing left to unsubscribe, and no mail will come
        if request.method == "POST":
            return render_template("unsubscribed.html"), 200
        raise InvalidToken("This link is no longer valid: we hold no subscription for it.")
    if request.method == "POST":
        meta = _meta("unsubscribe")
        source = "one-click" if request.form.get("List-Unsubscribe") == "One-Click" else "web"
        meta = operations.RequestMeta(source, meta.form_id, meta.ip_address, meta.user_agent)
        operations.unsubscribe(db.session, subscriber, meta)
        db.session.commit()
        return render_template("unsubscribed.html"), 200
    if subscriber.state == SubscriberState.unsubscribed:
        return render_template("unsubscribed.html")
    return render_template("unsubscribe.html", email=queries.masked(subscriber.email))
