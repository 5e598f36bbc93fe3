"""Editors' room for articles: find them, write and edit them in Markdown, unpublish and publish them again."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from sqlalchemy import select

from mailer import db
from mailer.admin import article_forms as forms
from mailer.admin.access import audit, get_or_404
from mailer.admin.forms import ConfirmForm
from mailer.articles import operations, queries
from mailer.articles.models import Article
from mailer.articles.rendering import markdown_to_html
from mailer.errors import ArticleError
from mailer.topics import queries as topic_queries
from mailer.topics.models import Topic

blueprint = Blueprint("articles", __name__, url_prefix="/articles")

PAGE = 50


def _article(article_id: int) -> Article:
    return get_or_404(Article, article_id)


def _chosen_topics(values: list[str]) -> list[Topic]:
    """The topics ticked in the form; ArticleError for one that is not (or no longer) stored."""
    ids = {int(value) for value in values if value.isdigit()}
    found = {topic.id: topic for topic in db.session.scalars(select(Topic).where(Topic.id.in_(ids)))} if ids else {}
    unknown = [value for value in values if not value.isdigit() or int(value) not in found]
    if unknown:
        raise ArticleError(f"no topic {', '.join(repr(v[:40]) for v in unknown)}: tick topics from the list "
                           "(the Topics room adds new ones)")
    return list(found.values())


def index():
    text = request.args.get("q", "").strip()[:200]
    topic = request.args.get("topic", "").strip()[:80]
    page = max(request.args.get("page", 1, type=int) or 1, 1)
    articles = queries.search(db.session, text=text, topic_slug=topic, limit=PAGE + 1, offset=(page - 1) * PAGE)
    return render_template("admin/articles.html", articles=articles[:PAGE], has_more=len(articles) > PAGE,
                           page=page, q=text, topic=topic, topics=topic_queries.by_title(db.session), source_of=queries.source_of)


def new():
    return _edit_page(None)


def edit(article_id: int):
    return _edit_page(_article(article_id))


def _edit_page(article: Article | None):
    """The article form: GET shows it; POST previews the body (saving nothing) or saves through operations."""
    if request.method == "GET":
        form = forms.ArticleForm(data={} if article is None else {
            "title": article.title, "summary": article.summary, "body": article.body_source,
            "canonical_url": article.canonical_url or "", "image_url": article.image_url,
            "published_at": forms.datetime_local(article.published_at)})
        return _render(form, article, forms.rows_for(article), {t.id for t in article.topics} if article else set())

    form = forms.ArticleForm()
    rows = forms.rows_from(request.form)
    ticked = request.form.getlist("topics")
    chosen = {int(v) for v in ticked if v.isdigit()}
    if not form.validate_on_submit():
        problems = [f"{getattr(form, name).label.text}: {'; '.join(errors)}" if name != "csrf_token"
                    else "The form has expired; reload the page and try again."
                    for name, errors in form.errors.items()]
        return _render(form, article, rows, chosen, error=" ".join(problems))
    try:
        topics = _chosen_topics(ticked)
        published_at = forms.publish_time(form.published_at.data)
        actions = forms.action_drafts(rows)
        if "preview" in request.form:
            return _render(form, article, rows, chosen, preview=markdown_to_html(form.body.data, _base_url(form)))
        fields = dict(title=form.title.data, summary=form.summary.data, body=form.body.data,
                      # A field left out of the POST (a script, not the form) is an empty one, not a 500.
                      canonical_url=(form.canonical_url.data or "").strip() or None,
                      image_url=(form.image_url.data or "").strip(),
                      published_at=published_at, topics=topics, actions=actions)
        if article is None:
            result = operations.create_in_workspace(db.session, **fields)
            audit("article.create", result.article, result.article.title)
        else:
            result = operations.edit(db.session, article, **fields)
            if result.is_changed:
                audit("article.update", result.article, result.article.title)
            if request.form.get("feed_actions") == "yes" and article.actions_edited:
                operations.return_actions_to_feed(db.session, article)
                audit("article.actions_to_feed", article, article.title)
    except ArticleError as exc:
        db.session.rollback()
        return _render(form, article, rows, chosen, error=str(exc))
    db.session.commit()
    flash(f"Saved “{result.article.title}”." if result.is_changed else "Nothing changed.")
    return redirect(url_for("admin.articles.edit", article_id=result.article.id))


def _base_url(form: forms.ArticleForm) -> str | None:
    # The preview resolves relative links as saving will: against the canonical URL when it is usable.
    try:
        return operations.web_url(form.canonical_url.data, "the article's URL") if form.canonical_url.data else None
    except ArticleError:
        return None


def _render(form, article, rows, chosen, *, error=None, preview=None):
    return render_template("admin/articles_edit.html", form=form, article=article, rows=rows, chosen=chosen,
                           topics=topic_queries.by_title(db.session), kinds=forms.KIND_CHOICES, error=error, preview=preview,
                           confirm=ConfirmForm(), source=queries.source_of(article) if article else "workspace",
                           ), (400 if error else 200)


def unpublish(article_id: int):
    article = _article(article_id)
    if ConfirmForm().validate_on_submit() and article.unpublished_at is None:
        operations.unpublish(db.session, article)
        audit("article.unpublish", article, article.title)
        db.session.commit()
        flash(f"“{article.title}” is unpublished: no digest or alert will carry it.")
    return redirect(url_for("admin.articles.edit", article_id=article.id))


def publish(article_id: int):
    article = _article(article_id)
    if ConfirmForm().validate_on_submit() and article.unpublished_at is not None:
        operations.publish_again(db.session, article)
        audit("article.publish", article, article.title)
        db.session.commit()
        flash(f"“{article.title}” is published again.")
    return redirect(url_for("admin.articles.edit", article_id=article.id))


blueprint.add_url_rule("/", "index", index, methods=["GET"])
blueprint.add_url_rule("/new", "new", new, methods=["GET", "POST"])
blueprint.add_url_rule("/<int:article_id>", "edit", edit, methods=["GET", "POST"])
blueprint.add_url_rule("/<int:article_id>/unpublish", "unpublish", unpublish, methods=["POST"])
blueprint.add_url_rule("/<int:article_id>/publish", "publish", publish, methods=["POST"])
