"""Forms of the Articles room: an article in Markdown with its topics and rows of action links."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from flask_wtf import FlaskForm
from werkzeug.datastructures import MultiDict
from wtforms import StringField, TextAreaField
from wtforms.validators import Length

from mailer.articles.models import ActionKind, Article
from mailer.articles.operations import ActionDraft
from mailer.errors import ArticleError

# Empty rows offered below the stored action links (no script adds rows on demand).
EMPTY_ACTION_ROWS = 3
MAX_ACTION_ROWS = 50
DATETIME_LOCAL = "%Y-%m-%dT%H:%M"
# "" asks the importer's rule to guess the kind from the label and URL.
KIND_CHOICES = [("", "guess")] + [(kind.value, kind.value) for kind in ActionKind]


class ArticleForm(FlaskForm):
    title = StringField("Title", validators=[Length(max=500)])
    summary = TextAreaField("Summary (optional: the body's first paragraph otherwise)", validators=[Length(max=2000)])
    body = TextAreaField("Body (Markdown)", validators=[Length(max=500_000)])
    canonical_url = StringField("Canonical URL (optional)", validators=[Length(max=2000)])
    image_url = StringField("Image URL (optional)", validators=[Length(max=2000)])
    published_at = StringField("Publish time (UTC; empty: now, or unchanged when editing)", validators=[Length(max=40)])


@dataclass(frozen=True)
class ActionRow:
    """An action-link row as the form shows it (strings, so a bad entry is shown back as typed)."""

    label: str = ""
    url: str = ""
    kind: str = ""
    position: str = ""

    @property
    def is_empty(self) -> bool:
        return not (self.label.strip() or self.url.strip())


def rows_for(article: Article | None) -> list[ActionRow]:
    """The article's action links, then empty rows to fill."""
    stored = [ActionRow(a.label, a.url, a.kind.value, str(a.position + 1))
              for a in (article.actions if article else [])]
    start = len(stored) + 1
    return stored + [ActionRow(position=str(start + n)) for n in range(EMPTY_ACTION_ROWS)]


def rows_from(formdata: MultiDict) -> list[ActionRow]:
    """The action-link rows as posted (fields action-N-label, -url, -kind, -position)."""
    rows = []
    for n in range(MAX_ACTION_ROWS):
        if f"action-{n}-label" not in formdata and f"action-{n}-url" not in formdata:
            break
        rows.append(ActionRow(*(formdata.get(f"action-{n}-{name}", "")[:2000]
                                for name in ("label", "url", "kind", "position"))))
    return rows


def action_drafts(rows: list[ActionRow]) -> list[ActionDraft]:
    """Drafts of the filled rows, ordered by their position numbers (ties keep the form's order).

    ArticleError for a position that is not a whole number; labels, URLs and kinds are checked when stored.
    """
    numbered = []
    for index, row in enumerate(rows):
        if row.is_empty:
            continue
        try:
            position = int(row.position.strip() or index + 1)
        except ValueError:
            raise ArticleError(f"the position of action link {row.label.strip()[:80]!r} must be a whole number, "
                               f"not {row.position[:20]!r}") from None
        numbered.append((position, index, ActionDraft(label=row.label, url=row.url, kind=row.kind)))
    return [draft for _, _, draft in sorted(numbered, key=lambda item: item[:2])]


def publish_time(text: str) -> datetime | None:
    """The publish time of a datetime-local input, read as UTC; None when empty; ArticleError when unreadable."""
    text = (text or "").strip()
    if not text:
        return None
    for pattern in (DATETIME_LOCAL, DATETIME_LOCAL + ":%S"):
        try:
            return datetime.strptime(text, pattern).replace(tzinfo=timezone.utc)
        except ValueError:
            continue
    raise ArticleError(f"the publish time must be a date and time like 2026-11-23T09:00 (UTC), not {text[:40]!r}")


def datetime_local(moment: datetime | None) -> str:
    """`moment` in UTC as a datetime-local input's value."""
    return moment.astimezone(timezone.utc).strftime(DATETIME_LOCAL) if moment else ""
