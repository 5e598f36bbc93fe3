"""Calls to act read from an article's own words: the links at the end of a blog post that ask the reader to
sign, donate, write, call or join.

A feed delivers a post as HTML, and its calls to act are links inside it ("<a href=…>Sign the petition for
Russia to intervene</a>", "Donate here to support the work of <a href=…>the Network</a>"). A link becomes
an action link when its text, or the text of the paragraph (or list item, or line) it opens, starts with a
call to act, or when it points at a known action platform or at the site's own donation page. Markdown
files are read line by line by the importer with the same words (`CALL_TO_ACT`).

Pure: HTML in (already sanitised, so only http(s) and mailto links are left), drafts out; the caller
checks each draft (`operations.action_draft`) before storing it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urlsplit, urlunsplit

from mailer.articles.models import ActionKind
from mailer.articles.operations import ActionDraft, infer_action_kind, one_line

# The words a call to act starts with, per language the mail templates ship in (English only today: add a
# language here when the templates get one). Multi-word entries keep ordinary sentences out: "Call it what
# it is" or "Write-up below" are not calls to act; "Call your MP" and "Write to the minister" are.
CALL_TO_ACT_WORDS: dict[str, tuple[str, ...]] = {
    "en": (
        "sign", "donate", "support", "help", "give", "chip in", "contribute", "pledge", "volunteer",
        "write to", "write your", "write a letter", "email your", "email the", "contact your", "tell your",
        "call on", "call your", "call the", "call now", "call today",
        "join", "attend", "rsvp", "register", "march", "stand with", "add your name",
        "take action", "act now", "act today", "act here",
    ),
}
_WORDS = sorted({word for words in CALL_TO_ACT_WORDS.values() for word in words}, key=len, reverse=True)
# A text that starts with a call to act, after a list bullet or emphasis marks.
CALL_TO_ACT = re.compile(
    r"^\s*(?:[-*+•]\s+|\d+[.)]\s+)?(?:\*\*|__|\*|_)?\s*(?:" + "|".join(re.escape(w).replace(r"\ ", r"\s+")
                                                           for w in _WORDS) + r")\b", re.I)

# Hosts whose pages are actions (a subdomain counts: www.change.org, act.38degrees.org.uk).
ACTION_PLATFORMS = ("change.org", "actionnetwork.org", "avaaz.org", "38degrees.org.uk", "gofundme.com",
                    "donorbox.org", "givebutter.com", "allout.org", "writetothem.com", "justgiving.com")
# The site's own pages that are actions: /donate, /donations, /support-us, /give (any language prefix).
_OWN_ACTION_PATH = re.compile(r"(?i)^(?:/[a-z]{2}(?:-[a-z]{2})?)?/(?:donate|donations?|support-us|give)(?:[/?.]|$)")

# At most this many action links per article: a button row, not a link farm (an entry may carry 500 links).
MAX_ACTIONS = 10
# A paragraph longer than this is prose, not a button label; the link's own text (or the kind's) is used.
MAX_SENTENCE_LABEL = 120
# The button a platform link gets when neither it nor its paragraph says what to do.
DEFAULT_LABELS = {
    ActionKind.petition: "Sign the petition",
    ActionKind.donate: "Donate",
    ActionKind.letter: "Write the letter",
    ActionKind.call: "Make the call",
    ActionKind.event: "Join the event",
    ActionKind.other: "Take action",
}
# Boundaries between the pieces of text a call to act is read from: a paragraph, a list item, a line.
_BREAKS = {"p", "li", "br", "h2", "h3", "h4", "h5", "h6", "blockquote", "td", "th", "dd", "dt", "figcaption",
           "tr", "hr", "pre", "table", "ul", "ol", "dl"}
_URLISH = re.compile(r"(?i)^\S*[./]\S*$")


@dataclass
class _Link:
    href: str
    start: int  # where the link's text starts in its segment's text
    text: str = ""


@dataclass
class _Segment:
    """A paragraph (or list item, or line between <br>s): its text and the links in it, in order."""

    parts: list[str] = field(default_factory=list)
    links: list[_Link] = field(default_factory=list)
    length: int = 0  # characters in `parts`, kept as they come (a segment may hold thousands of links)

    def add(self, text: str) -> None:
        self.parts.append(text)
        self.length += len(text)

    @property
    def text(self) -> str:
        return " ".join("".join(self.parts).split())


class _Reader(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.segments: list[_Segment] = [_Segment()]
        self._link: _Link | None = None

    def _break(self) -> None:
        if self.segments[-1].parts or self.segments[-1].links:
            self.segments.append(_Segment())

    def handle_starttag(self, tag, attrs):
        if tag in _BREAKS:
            self._link = None
            self._break()
        elif tag == "a":
            self._link = _Link(href=dict(attrs).get("href") or "", start=self.segments[-1].length)
            self.segments[-1].links.append(self._link)
        elif tag == "img" and self._link is not None:
            alt = dict(attrs).get("alt") or ""
            self._link.text += alt
            self.segments[-1].add(alt)

    def handle_endtag(self, tag):
        if tag == "a":
            self._link = None
        elif tag in _BREAKS:
            self._link = None
            self._break()

    def handle_data(self, data):
        self.segments[-1].add(data)
        if self._link is not None:
            self._link.text += data


def _host(url: str) -> str:
    return (urlsplit(url).hostname or "").lower().removeprefix("www.")


def is_action_platform(url: str, site_hosts: frozenset[str] = frozenset()) -> bool:
    """Whether `url` is a page where readers act: a known platform, or the site's own donation page."""
    host = _host(url)
    if any(host == platform or host.endswith("." + platform) for platform in ACTION_PLATFORMS):
        return True
    return host in site_hosts and bool(_OWN_ACTION_PATH.match(urlsplit(url).path or "/"))


def _identity(url: str) -> str:
    """What makes two action links the same: the URL without its #fragment, scheme and host in lower case."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path or "/", parts.query, ""))


def _label(link: _Link, segment: _Segment, is_first: bool, is_platform: bool) -> str:
    """The button's words for `link`, or "" when it is no call to act."""
    link_text = " ".join(link.text.split())
    if CALL_TO_ACT.match(link_text):
        return link_text
    segment_text = segment.text if is_first else ""
    if is_first and CALL_TO_ACT.match(segment_text):
        # "Sign the petition: <a>https://…</a>" and "Call your MP: <a>find the number</a>" say it before the
        # colon; "Donate here to support the work of <a>the Network</a>" needs the link's words too.
        before = " ".join("".join(segment.parts)[:link.start].split())
        if before.rstrip(" *_").endswith(":") or _URLISH.match(link_text):
            label = before if before.rstrip(" *_").endswith(":") else segment_text.replace(link_text, "")
        else:
            label = segment_text
        label = re.sub(r"^\s*(?:[-*+•]\s+|\d+[.)]\s+)", "", label)
        label = " ".join(label.replace("**", "").replace("__", "").split()).strip(" :-–—*_(),.")
        if label and len(label) <= MAX_SENTENCE_LABEL:
            return label
        if link_text and not _URLISH.match(link_text) and len(link_text.split()) >= 3:
            return link_text
        return one_line(label, MAX_SENTENCE_LABEL)
    if is_platform:  # "<a href=change.org/…>this petition</a>": the button says what the page asks for
        return DEFAULT_LABELS[infer_action_kind("", link.href)]
    return ""


def actions_from_html(fragment: str, *, site_hosts: frozenset[str] | set[str] = frozenset(),
                      limit: int = MAX_ACTIONS) -> list[ActionDraft]:
    """The calls to act in a post's (sanitised) HTML, in the post's order, each URL once, at most `limit`.

    Only http(s) links count: a "Donate" whose address is javascript: or data: (or mailto:) is no button.
    `site_hosts` are the blog's own hosts, whose /donate page is an action whatever its link says.
    """
    reader = _Reader()
    reader.feed(fragment or "")
    reader.close()
    site_hosts = frozenset(host.lower().removeprefix("www.") for host in site_hosts)
    found: dict[str, ActionDraft] = {}
    for segment in reader.segments:
        for position, link in enumerate(segment.links):
            href = link.href.strip()
            try:
                parts = urlsplit(href)
                if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
                    continue
                key, is_platform = _identity(href), is_action_platform(href, site_hosts)
            except ValueError:  # "https://[broken": no address a reader could open
                continue
            if key in found:
                continue
            label = _label(link, segment, position == 0, is_platform)
            if label:
                found[key] = ActionDraft(label=label, url=href)
                if len(found) >= limit:
                    return list(found.values())
    return list(found.values())
