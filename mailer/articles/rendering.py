"""Article bodies: Markdown to HTML (markdown-it-py), then every HTML, ours or a feed's, through one nh3 sanitiser.

What comes out is safe to put in a mail or a page as it is: no scripts, no event handlers, and only
http, https and mailto URLs (relative ones are resolved against the article's own URL, or dropped).
"""

from __future__ import annotations

import html
import re
from urllib.parse import urljoin

import nh3
from markdown_it import MarkdownIt

from mailer.errors import ArticleError

ALLOWED_TAGS = {
    "p", "br", "hr", "a", "em", "strong", "b", "i", "u", "s", "del", "sub", "sup", "small", "mark",
    "code", "pre", "kbd", "blockquote", "q", "cite", "abbr",
    "ul", "ol", "li", "dl", "dt", "dd",
    "h2", "h3", "h4", "h5", "h6",
    "img", "figure", "figcaption",
    "table", "thead", "tbody", "tfoot", "tr", "th", "td", "caption",
}
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title", "width", "height"},
    "abbr": {"title"},
    "ol": {"start"},
    "th": {"colspan", "rowspan"},
    "td": {"colspan", "rowspan"},
}
URL_SCHEMES = {"http", "https", "mailto"}
URL_ATTRIBUTES = {"href", "src"}
# C0 and C1 control characters but tab and line ends: NUL (PostgreSQL refuses it in text), ESC (a
# terminal runs what follows it), BEL... Feeds deliver them through character references (`&#27;`)
# that feedparser's lenient parser decodes; no title, summary or body needs one. Also lone surrogates
# (YAML's "\ud800": no UTF-8 for them, so no database or mail can hold them) and U+FFFE/U+FFFF
# (not allowed in XML, so not in the Atom feed).
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
# The HTML parser behind nh3 takes time quadratic in the nesting of block elements (100,000 nested
# <div> took 47 s): a body with more tags than any article has is refused before it is parsed.
MAX_TAGS = 10_000
# Tags removed together with everything inside them (the text of a script is not prose).
DROPPED_WITH_CONTENT = {"script", "style", "iframe", "object", "embed", "noscript", "template", "svg", "math"}

# Editors and feeds may write raw HTML inside Markdown; nh3 below decides what of it survives.
_markdown = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])


def _web_urls_only(base_url: str | None):
    """An nh3 attribute filter keeping a URL only when it is (or, against `base_url`, resolves to) an
    absolute http(s) or mailto URL: relative and scheme-relative URLs mean nothing in a mail client."""

    def keep(_tag: str, attribute: str, value: str) -> str | None:
        if attribute not in URL_ATTRIBUTES:
            return value
        if not value.strip():
            return None  # an emptied href (feedparser's answer to javascript:) must not become a link to the base
        url = urljoin(base_url, value.strip()) if base_url else value.strip()
        return url if re.match(r"(?i)(https?://[^/]|mailto:)", url) else None

    return keep


def sanitise_html(fragment: str, base_url: str | None = None) -> str:
    """Sanitised HTML: allowed tags and attributes only, links get rel="noopener noreferrer".

    ArticleError when the fragment has more than MAX_TAGS tags.

    With `base_url` (the article's or feed's address) relative links are made absolute, else dropped.
    """
    fragment = fragment or ""
    if fragment.count("<") > MAX_TAGS:
        raise ArticleError(f"the body has more than {MAX_TAGS} HTML tags; refused (is it an article?)")
    # The mail or page around the body has the one <h1>; a body's own becomes a section heading.
    fragment = re.sub(r"(?i)<(/?)h1\b", r"<\1h2", fragment or "")
    return nh3.clean(
        fragment,
        tags=ALLOWED_TAGS,
        clean_content_tags=DROPPED_WITH_CONTENT,
        attributes=ALLOWED_ATTRIBUTES,
        attribute_filter=_web_urls_only(base_url),
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer",
        strip_comments=True,
    ).strip()


def markdown_to_html(source: str, base_url: str | None = None) -> str:
    """Render Markdown (CommonMark with tables and strikethrough) and sanitise the result."""
    return sanitise_html(_markdown.render(source or ""), base_url)


def plain_text(fragment: str) -> str:
    """The text of an HTML fragment on one line: tags and dropped content removed, entities decoded.

    Of a fragment with more than MAX_TAGS tags only the start is read: the text becomes a summary or
    a title, never the whole of anything.
    """
    fragment = _first_tags(fragment or "", MAX_TAGS)
    # A space for each block boundary, so "<p>a</p><p>b</p>" reads "a b", not "ab".
    spaced = re.sub(r"(?i)<(br|/p|/li|/h[1-6]|/blockquote|/div|/tr)\b[^>]*>", " \\g<0>", fragment or "")
    text = nh3.clean(spaced, tags=set(), clean_content_tags=DROPPED_WITH_CONTENT)
    return " ".join(CONTROL_CHARACTERS.sub(" ", html.unescape(text)).split())


def without_controls(text: str) -> str:
    """`text` with its control characters (see CONTROL_CHARACTERS) removed; tabs and line ends stay."""
    return CONTROL_CHARACTERS.sub("", text)


def _first_tags(fragment: str, count: int) -> str:
    """`fragment` up to (not including) its `count`+1-th "<"."""
    position = -1
    for _ in range(count + 1):
        position = fragment.find("<", position + 1)
        if position < 0:
            return fragment
    return fragment[:position]


def shorten(text: str, limit: int) -> str:
    """`text` cut at a word boundary to at most `limit` characters, with an ellipsis when cut."""
    if len(text) <= limit:
        return text
    cut = text[:limit]  # the character after the last kept one tells whether a word was cut in two
    cut = cut.rsplit(" ", 1)[0] if " " in cut else cut[:limit - 1]
    return cut.rstrip(" ,;:.-") + "…"


def first_paragraph(fragment: str) -> str:
    """The plain text of the first non-empty paragraph of sanitised HTML (a summary when none was written)."""
    for match in re.finditer(r"(?is)<p\b[^>]*>(.*?)</p>", fragment or ""):
        text = plain_text(match.group(1))
        if text:
            return text
    return plain_text(fragment)
