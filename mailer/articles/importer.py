"""Articles from Markdown or text files, with optional YAML front matter.

Front matter keys: title, summary, topics, actions ([{label, url, kind}]), published, image, author, url.
Without them the file speaks for itself: its first heading (or first line) is the title, `#hashtags`
become topics, and lines that start with a call to act ("Sign the petition…", "Donate…", "Support…",
"Help…") and carry a URL become action links.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timezone
from pathlib import Path

import yaml
from sqlalchemy.orm import Session

from mailer.articles.actions import CALL_TO_ACT
from mailer.articles.operations import ActionDraft, Upserted, action_draft, upsert_article
from mailer.errors import ArticleError, MailerError
from mailer.topics.operations import slug_for_hashtag, slugify

ARTICLE_SUFFIXES = (".md", ".markdown", ".txt")
MAX_FILE_BYTES = 10 * 1024 * 1024
FRONT_MATTER_KEYS = {"title", "summary", "topics", "actions", "published", "image", "author", "url"}

_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?\n)?(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.S)
_FENCE = re.compile(r"^\s{0,3}(```|~~~)")
_ATX_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$")
_SETEXT_UNDERLINE = re.compile(r"^\s{0,3}(=+|-+)\s*$")
# Not after a word character, "&" (an entity like &#39;), "/" or "#" (a URL fragment, a heading).
_HASHTAG = re.compile(r"(?<![\w&/#])#([A-Za-z][A-Za-z0-9_]*)")
# A line that starts with one of the words feeds' calls to act are read by ("Sign…", "Donate…", "Write to…").
_CALL_TO_ACT = CALL_TO_ACT
_MARKDOWN_LINK = re.compile(r"\[([^\]]*)\]\(\s*<?([^\s>]*?)>?(?:\s+\"[^\"]*\")?\s*\)")
# Any scheme a hostile file might use, so that javascript: and data: are reported, not silently ignored.
_BARE_URL = re.compile(r"(?i)\b(?:https?://|javascript:|data:|vbscript:|file:)[^\s<>]+")
_MARKDOWN_IMAGE = re.compile(r"!\[[^\]]*\]\(\s*<?(https?://[^\s>)]+)")


@dataclass
class ArticleFile:
    """What a file says about its article, before anything is stored."""

    path: Path
    title: str
    body: str
    summary: str = ""
    topics: list[str] = field(default_factory=list)
    actions: list[ActionDraft] = field(default_factory=list)
    published_at: datetime | None = None
    image_url: str = ""
    author: str = ""
    url: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def guid(self) -> str:
        """The key that makes a re-import update: the URL when given, else the title's slug."""
        return self.url or f"file:{slugify(self.title)}"


def article_files(paths: Iterable[Path]) -> Iterator[tuple[Path, str]]:
    """The files to import, each with why it must not be ("" when it may): each path as given; a folder
    stands for its Markdown and text files (sorted), but not for a link to a file outside it (a folder
    someone sent may link `post.md` to a key or a password file, whose text would go out as an article).
    """
    for path in paths:
        if not path.is_dir():
            yield path, ""
            continue
        folder = path.resolve()
        for file in sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in ARTICLE_SUFFIXES):
            inside = file.resolve().is_relative_to(folder)
            yield file, "" if inside else f"a link to a file outside {path}; import that file by its own name"


def read_text(path: Path) -> str:
    """The file's text (UTF-8, with or without BOM, any line endings); ArticleError naming it otherwise."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ArticleError(f"{path}: larger than {MAX_FILE_BYTES // (1024 * 1024)} MB; is it an article?")
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ArticleError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ArticleError(f"{path}: is a directory") from None
    except OSError as exc:
        raise ArticleError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ArticleError(f"{path}: not UTF-8 text (undecodable byte at offset {exc.start})") from None
    if "\x00" in text:
        raise ArticleError(f"{path}: looks like a binary file, not Markdown or text")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _front_matter(path: Path, text: str) -> tuple[dict, str]:
    match = _FRONT_MATTER.match(text)
    if match is None:
        if text.startswith("---\n"):
            raise ArticleError(f"{path}: front matter starts with --- but has no closing --- line")
        return {}, text
    try:
        data = yaml.safe_load(match.group(1) or "") or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" on line {mark.line + 2}" if mark else ""
        raise ArticleError(f"{path}: front matter is not valid YAML{where}: "
                           f"{getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(data, dict):
        raise ArticleError(f"{path}: front matter must be key: value lines")
    return data, text[match.end():]


def _published(path: Path, value) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime.combine(value, time())
    else:
        try:
            moment = datetime.fromisoformat(str(value).strip())
        except ValueError:
            raise ArticleError(f"{path}: published: {value!r} is not a date like 2026-11-20 or "
                               f"2026-11-20T09:30:00+00:00") from None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


def _string_list(path: Path, key: str, value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list) and all(isinstance(v, (str, int)) for v in value):
        return [str(v).strip() for v in value if str(v).strip()]
    raise ArticleError(f"{path}: {key} must be a list of names or a comma-separated line")


def _title_from_body(lines: list[str]) -> tuple[str, list[str]]:
    """The first heading or first non-blank line, and the lines left once it is taken out."""
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        heading = _ATX_HEADING.match(line)
        if heading:
            return heading.group(1).strip(), lines[:i] + lines[i + 1:]
        if i + 1 < len(lines) and _SETEXT_UNDERLINE.match(lines[i + 1]):
            return line.strip(), lines[:i] + lines[i + 2:]
        return line.strip().strip("*_").strip(), lines[:i] + lines[i + 1:]
    return "", lines


def _action_from_line(line: str) -> ActionDraft | None:
    """An action link from a line that starts with a call to act and carries a URL, else None."""
    if not _CALL_TO_ACT.match(line):
        return None
    link = _MARKDOWN_LINK.search(line)
    bare = _BARE_URL.search(line)
    if link and (bare is None or link.start() <= bare.start()):
        url = link.group(2)
        text = link.group(1).strip()
        # Link text that is itself an address ("change.org/p/…") makes a poor button label.
        replacement = "" if re.fullmatch(r"\S*[./]\S*", text) else text
        label = line[:link.start()] + replacement + line[link.end():]
    elif bare:
        url = bare.group(0).rstrip(".,;:!?'\"")
        if url.endswith(")") and url.count("(") < url.count(")"):
            url = url[:-1]
        # "<>" is what is left of a Markdown autolink <https://…> once the URL is taken out.
        label = (line[:bare.start()] + line[bare.start() + len(url):]).replace("<>", "")
    else:
        return None
    label = re.sub(r"^\s*(?:[-*+]\s+|\d+[.)]\s+)", "", label)
    label = re.sub(r"(\*\*|__)", "", label)
    label = " ".join(label.split()).strip(" :-–—*_(),.")
    return ActionDraft(label=label, url=url)


def _hashtags(line: str) -> list[str]:
    return [f"#{tag}" for tag in _HASHTAG.findall(line)]


def _is_hashtag_line(line: str) -> bool:
    words = line.split()
    return bool(words) and all(_HASHTAG.fullmatch(word.rstrip(".,;")) for word in words)


def parse_article_file(path: Path, text: str) -> ArticleFile:
    """Read an article from a file's text (no database). ArticleError naming the file when it has none."""
    meta, body = _front_matter(path, text)
    warnings = [f"{path}: ignoring unknown front matter key {key!r}" for key in sorted(map(str, meta))
                if key not in FRONT_MATTER_KEYS]
    lines = body.split("\n")
    title = " ".join(str(meta.get("title") or "").split())
    if not title:
        title, lines = _title_from_body(lines)
    if not title:
        raise ArticleError(f"{path}: no title (no front matter title, heading or text line)")

    topics = _string_list(path, "topics", meta.get("topics"))
    actions: list[ActionDraft] = []
    raw_actions = meta.get("actions") or []
    if not isinstance(raw_actions, list):
        raise ArticleError(f"{path}: actions must be a list of {{label, url, kind}}")
    for raw in raw_actions:
        if not isinstance(raw, dict):
            raise ArticleError(f"{path}: each action needs label and url, like - {{label: Donate, url: https://…}}")
        try:
            actions.append(action_draft(raw))
        except ArticleError as exc:
            warnings.append(f"{path}: skipped an action: {exc}")
    take_action_lines = "actions" not in meta  # the front matter, when it lists actions, is the whole list

    kept: list[str] = []
    in_fence = False
    for line in lines:
        if _FENCE.match(line):
            in_fence = not in_fence
        if in_fence:
            kept.append(line)
            continue
        topics.extend(tag for tag in _hashtags(line) if slug_for_hashtag(tag))
        if _is_hashtag_line(line):
            continue
        candidate = _action_from_line(line) if take_action_lines else None
        if candidate is not None:
            try:
                actions.append(action_draft(candidate))
            except ArticleError as exc:
                warnings.append(f"{path}: skipped an action: {exc}")
            continue
        kept.append(line)
    body = "\n".join(kept).strip() + "\n"

    image = str(meta.get("image") or "").strip()
    if not image:
        first_image = _MARKDOWN_IMAGE.search(body)
        image = first_image.group(1) if first_image else ""
    return ArticleFile(
        path=path,
        title=title,
        body=body,
        summary=str(meta.get("summary") or "").strip(),
        topics=list(dict.fromkeys(topics)),
        actions=actions,
        published_at=_published(path, meta.get("published")),
        image_url=image,
        author=str(meta.get("author") or "").strip(),
        url=str(meta.get("url") or "").strip(),
        warnings=warnings,
    )


def import_file(session: Session, path: Path) -> tuple[Upserted, list[str]]:
    """Store (or update) the article in `path`; returns it with warnings about what was skipped.

    Raises ArticleError naming the file when it cannot be read or holds no usable article; nothing is
    stored then (the caller rolls back).
    """
    article_file = parse_article_file(path, read_text(path))
    try:
        upserted = upsert_article(
            session,
            guid=article_file.guid,
            canonical_url=article_file.url or None,
            title=article_file.title,
            summary=article_file.summary,
            body=article_file.body,
            image_url=article_file.image_url,
            author=article_file.author,
            published_at=article_file.published_at,
            topics=article_file.topics,
            actions=article_file.actions,
            actions_by_editor=True,  # a file is an editor's word: a feed's later poll keeps its actions
        )
    except MailerError as exc:
        raise ArticleError(f"{path}: {exc}") from None
    return upserted, article_file.warnings
