"""Feeds: add one, fetch it (conditional GET, size and time limits), and store its entries as articles.

Fetching is ours (urllib), parsing is feedparser's: we decide how long to wait and how much to read,
and a broken feed becomes a FeedError recorded on that feed, never a stop for the others.
"""

from __future__ import annotations

import hashlib
import html
import http.client
import io
import ipaddress
import re
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import urljoin, urlsplit

import feedparser
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from mailer import clock
from mailer.articles.models import Article
from mailer.articles.actions import actions_from_html
from mailer.articles.operations import ActionDraft, action_draft, one_line, upsert_article, web_url
from mailer.articles.rendering import plain_text, sanitise_html, shorten
from mailer.errors import ArticleError, FeedError, MailerError
from mailer.feeds.models import Feed
from mailer.topics.models import Topic
from mailer.topics.operations import ensure_topic, topic_for_label

MAX_FEED_BYTES = 10 * 1024 * 1024
# Real feeds carry tens of entries, newest first; 100,000 tiny ones would be 100,000 upserts in one poll.
MAX_ENTRIES_PER_POLL = 1000
FETCH_TIMEOUT_SECONDS = 30
USER_AGENT = "mailer-feed-poller/0.1 (self-hosted newsletter)"
ACCEPT = "application/atom+xml, application/rss+xml, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.1"
_CHUNK = 64 * 1024
# GUIDs that name themselves worldwide; any other ("42") only means something within its own feed.
_GLOBAL_GUID = re.compile(r"(?i)(https?://|urn:|tag:)")


@dataclass(frozen=True)
class Fetched:
    """A feed document as the server sent it; `content` None means 304 Not Modified."""

    url: str
    content: bytes | None
    etag: str = ""
    last_modified: str = ""
    content_type: str = ""


@dataclass
class PollReport:
    """What one poll of one feed did, for the poll output and the scheduler's log."""

    feed_id: int
    url: str
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    duplicates: int = 0
    ignored: int = 0  # entries beyond MAX_ENTRIES_PER_POLL
    is_not_modified: bool = False
    error: str = ""
    skipped: list[str] = field(default_factory=list)

    @property
    def is_failed(self) -> bool:
        return bool(self.error)

    def line(self) -> str:
        """One line for the poll output and the log: what happened to this feed."""
        where = f"feed {self.feed_id} {self.url}"
        if self.error:
            return f"{where}: failed: {self.error}"
        if self.is_not_modified:
            return f"{where}: not modified"
        text = f"{where}: {self.new} new, {self.updated} updated, {self.unchanged} unchanged"
        if self.duplicates:
            text += f", {self.duplicates} repeated GUID(s) ignored"
        if self.skipped:
            text += f", {len(self.skipped)} entry(ies) skipped"
        if self.ignored:
            text += f", {self.ignored} older entries ignored (only the first {MAX_ENTRIES_PER_POLL} are read)"
        return text


def add_feed(session: Session, url: str, topic_slugs: list[str] = (), *, reads_actions: bool = True,
             full_content: bool = False) -> Feed:
    """Register a feed to poll; `topic_slugs` are given to every article from it (created if missing).

    `reads_actions`: entries' calls to act become action links. `full_content`: digests carry whole posts.
    """
    try:
        url = web_url(url, "a feed URL")
    except ArticleError as exc:
        raise FeedError(str(exc)) from None
    existing = session.scalar(select(Feed).where(Feed.url == url))
    if existing is not None:
        raise FeedError(f"{url} is already feed {existing.id}")
    feed = Feed(url=url, created_at=clock.now(), reads_actions=reads_actions, full_content=full_content)
    feed.topics = [ensure_topic(session, slug) for slug in dict.fromkeys(topic_slugs)]
    session.add(feed)
    session.flush()
    return feed


class _WebOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only to http or https: urllib's own handler follows ftp: as well, which would
    let a feed point the poller at an FTP (or any TCP) service on our network."""

    def http_error_302(self, req, fp, code, msg, headers):
        target = urljoin(req.full_url, headers.get("Location") or headers.get("URI") or "")
        if urlsplit(target).scheme.lower() not in ("http", "https"):
            fp.close()
            raise FeedError(f"redirected to a non-http(s) address {shorten(target, 80)!r}; refused")
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


def _connect_to_public_address(address, timeout, source_address=None):
    """socket.create_connection, refusing a peer that is not a public address. The check is on the
    address actually connected to, so a DNS name that changes its answer between checks gains nothing."""
    sock = socket.create_connection(address, timeout, source_address)
    peer = ipaddress.ip_address(sock.getpeername()[0].split("%")[0])
    if not peer.is_global:
        sock.close()
        raise FeedError(f"{address[0]} is a private address ({peer}); refused (feeds.block_private_addresses)")
    return sock


class _PublicHTTPConnection(http.client.HTTPConnection):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._create_connection = _connect_to_public_address


class _PublicHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._create_connection = _connect_to_public_address


class _PublicHTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req):
        return self.do_open(_PublicHTTPConnection, req)


class _PublicHTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req):
        return self.do_open(_PublicHTTPSConnection, req, context=self._context)


def _opener(block_private_addresses: bool) -> urllib.request.OpenerDirector:
    """urllib with http and https only: no ftp:, file: or data: handlers, redirects to http(s) only;
    with `block_private_addresses`, connections to loopback, private and link-local addresses fail."""
    web = ((_PublicHTTPHandler(), _PublicHTTPSHandler()) if block_private_addresses
           else (urllib.request.HTTPHandler(), urllib.request.HTTPSHandler()))
    opener = urllib.request.OpenerDirector()
    for handler in (urllib.request.ProxyHandler(), urllib.request.UnknownHandler(), *web,
                    urllib.request.HTTPDefaultErrorHandler(), _WebOnlyRedirects(),
                    urllib.request.HTTPErrorProcessor()):
        opener.add_handler(handler)
    return opener


def fetch(url: str, *, etag: str = "", last_modified: str = "", timeout: float = FETCH_TIMEOUT_SECONDS,
          max_bytes: int = MAX_FEED_BYTES, block_private_addresses: bool = False) -> Fetched:
    """GET the feed, sending the validators from the last poll; FeedError for anything but a usable answer.

    Only http and https, redirects included. `block_private_addresses` (the feeds.block_private_addresses
    setting) also refuses loopback, private and link-local addresses, for sites where whoever adds a
    feed should not reach services inside the network (169.254.169.254, a database port).

    Reads at most `max_bytes` (a bigger feed is refused, never held in memory whole) and gives up after
    `timeout` seconds in all, however slowly the server trickles.
    """
    headers = {"User-Agent": USER_AGENT, "Accept": ACCEPT}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    deadline = time.monotonic() + timeout
    try:
        response = _opener(block_private_addresses).open(urllib.request.Request(url, headers=headers),
                                                         timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 304:
            return Fetched(url=url, content=None, etag=etag, last_modified=last_modified)
        raise FeedError(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise FeedError(f"cannot connect: {exc.reason}") from None
    except (TimeoutError, socket.timeout):
        raise FeedError(f"no answer within {timeout:g} s") from None
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise FeedError(f"cannot fetch: {exc}") from None
    with response:
        too_big = FeedError(f"larger than {max_bytes / (1024 * 1024):g} MB; refused")
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise too_big
        chunks, size = [], 0
        try:
            # read1: whatever has arrived, so a server trickling a byte at a time meets the deadline.
            while chunk := response.read1(_CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise too_big
                if time.monotonic() > deadline:
                    raise FeedError(f"still downloading after {timeout:g} s; gave up")
                chunks.append(chunk)
        except (TimeoutError, socket.timeout):
            raise FeedError(f"no data for {timeout:g} s; gave up") from None
        except (OSError, http.client.HTTPException) as exc:
            raise FeedError(f"connection broke while reading: {exc}") from None
        return Fetched(url=response.geturl(), content=b"".join(chunks),
                       etag=response.headers.get("ETag", ""),
                       last_modified=response.headers.get("Last-Modified", ""),
                       content_type=response.headers.get("Content-Type", ""))


def parse(fetched: Fetched) -> feedparser.FeedParserDict:
    """The feed's entries (feedparser); FeedError when the document is not RSS or Atom."""
    # A stream, not bytes: feedparser treats bytes that look like a path or URL as one and opens it.
    try:
        parsed = feedparser.parse(io.BytesIO(fetched.content or b""), response_headers={
            "content-location": fetched.url, "content-type": fetched.content_type or "application/xml"})
    except Exception as exc:  # feedparser's own bugs on hostile input (`&#xD800;` raises UnicodeEncodeError)
        raise FeedError(f"not an RSS or Atom feed (the parser failed: {exc.__class__.__name__})") from None
    if not parsed.get("version"):
        reason = parsed.get("bozo_exception")
        raise FeedError("not an RSS or Atom feed" + (f" ({one_line(str(reason), 200)})" if reason else ""))
    return parsed


def entry_guid(feed: Feed, entry: dict) -> str:
    """What identifies an entry: its GUID (scoped to the feed unless it is a URL/URN/tag), else its
    link, else a hash of the feed and its title (or text), so re-polling finds the same article."""
    guid = (entry.get("id") or "").strip()
    if guid:
        return guid if _GLOBAL_GUID.match(guid) else f"{feed.url}#{guid}"
    link = _http_or_empty(entry.get("link"))
    if link:
        return link
    words = entry.get("title") or entry.get("summary") or ""
    return f"{feed.url}#sha256:{hashlib.sha256(words.encode()).hexdigest()}"


def _http_or_empty(url) -> str:
    try:
        return web_url(url, "a link") if url else ""
    except ArticleError:
        return ""


def _published_at(entry: dict) -> datetime | None:
    parsed = entry.get("published_parsed") or entry.get("updated_parsed")  # feedparser gives UTC
    return datetime(*parsed[:6], tzinfo=timezone.utc) if parsed else None


def _body(entry: dict) -> tuple[str, str]:
    """The entry's HTML body and a separate summary (plain text, empty when it only repeats the body)."""
    summary = entry.get("summary") or ""
    for content in entry.get("content") or []:
        value = content.get("value") or ""
        if value:
            if content.get("type") == "text/plain":
                value = "<p>" + html.escape(value) + "</p>"
            return value, ("" if summary == content.get("value") else plain_text(summary))
    if (entry.get("summary_detail") or {}).get("type") == "text/plain":
        return "<p>" + html.escape(summary) + "</p>", ""
    return summary, ""


_IMG = re.compile(r"(?is)<img\b[^>]*>")
_ATTRIBUTE = re.compile(r'(?is)\b(src|alt)="([^"]*)"')


def _body_images(body_html: str) -> list[tuple[str, str]]:
    """(src, alt) of each image in sanitised HTML (nh3 writes every attribute in double quotes)."""
    images = []
    for tag in _IMG.findall(body_html):
        attributes = {name.lower(): html.unescape(value) for name, value in _ATTRIBUTE.findall(tag)}
        images.append((attributes.get("src", ""), attributes.get("alt", "")))
    return images


def _image(entry: dict, body_html: str) -> tuple[str, str]:
    """The entry's picture and its words: Media RSS or an image enclosure, else the body's first image.

    The words (alt) come from the feed: Media RSS's description, or the body's <img alt> for that image.
    """
    described = entry.get("media_description") or ""  # Media RSS: the words that go with its pictures
    candidates = [(m.get("url"), described) for m in entry.get("media_thumbnail") or []]
    candidates += [(m.get("url"), described) for m in entry.get("media_content") or []
                   if m.get("medium") == "image" or (m.get("type") or "").startswith("image/")]
    candidates += [(link.get("href"), link.get("title") or "") for link in entry.get("links") or []
                   if link.get("rel") == "enclosure" and (link.get("type") or "").startswith("image/")]
    in_body = _body_images(body_html)
    candidates += in_body
    alt_in_body = {src: alt for src, alt in reversed(in_body)}
    for url, alt in candidates:
        url = _http_or_empty(url)
        if url:
            return url, plain_text(alt) or plain_text(alt_in_body.get(url, ""))
    return "", ""


def _site_hosts(feed: Feed, parsed: feedparser.FeedParserDict, entry: dict) -> frozenset[str]:
    """The blog's own hosts (the feed's, its home page's, the entry's), whose /donate is a call to act."""
    urls = (feed.url, parsed.feed.get("link") or "", entry.get("link") or "")
    return frozenset(host for host in (urlsplit(url).hostname for url in urls) if host)


def _actions(feed: Feed, parsed: feedparser.FeedParserDict, entry: dict, body_html: str) -> list[ActionDraft] | None:
    """The entry's calls to act as checked drafts; None when the feed is not read for them (the article's
    action links are left as they are). A link that is no usable action (an address with spaces, over
    2,000 characters) is left out: the post is still worth sending with the others."""
    if not feed.reads_actions:
        return None
    drafts = []
    for draft in actions_from_html(body_html, site_hosts=_site_hosts(feed, parsed, entry)):
        try:
            drafts.append(action_draft(draft))
        except ArticleError:
            continue
    return drafts


def _entry_topics(session: Session, feed: Feed, entry: dict) -> list[Topic]:
    topics = list(feed.topics)
    for tag in entry.get("tags") or []:
        label = tag.get("label") or tag.get("term") or ""
        try:
            topics.append(topic_for_label(session, label))
        except MailerError:
            continue  # a category like "???" names no topic; the entry is still worth storing
    return topics


def store_entries(session: Session, feed: Feed, fetched: Fetched, parsed: feedparser.FeedParserDict | None,
                  ) -> PollReport:
    """Record a successful poll on `feed` and store its entries as articles (no commit).

    An entry repeated with the same GUID in one document counts once (the first, usually newest).
    An entry that cannot be stored (no title, say) is skipped and named in the report.
    """
    report = PollReport(feed_id=feed.id, url=feed.url)
    feed.last_polled_at = clock.now()
    feed.last_error = ""
    if fetched.content is None:
        report.is_not_modified = True
        return report
    feed.etag = fetched.etag[:500]
    feed.last_modified = fetched.last_modified[:100]
    feed.title = feed.title or one_line(parsed.feed.get("title"), 500)
    seen: set[str] = set()
    report.ignored = max(0, len(parsed.entries) - MAX_ENTRIES_PER_POLL)
    for position, entry in enumerate(parsed.entries[:MAX_ENTRIES_PER_POLL], start=1):
        guid = entry_guid(feed, entry)
        if guid in seen:
            report.duplicates += 1
            continue
        seen.add(guid)
        body, summary = _body(entry)
        title = plain_text(entry.get("title") or "") or one_line(plain_text(body), 80)
        canonical_url = _http_or_empty(entry.get("link")) or None
        try:
            # Read once here, sanitised as the article will store it: links resolved, javascript: gone.
            body = sanitise_html(body, canonical_url or feed.url)
            image_url, image_alt = _image(entry, body)
            actions = _actions(feed, parsed, entry, body)
            with session.begin_nested():
                upserted = upsert_article(
                    session,
                    guid=guid,
                    canonical_url=canonical_url,
                    title=title,
                    summary=summary,
                    body=body,
                    body_is_html=True,
                    image_url=image_url,
                    image_alt=image_alt,
                    actions=actions,
                    author=entry.get("author") or "",
                    published_at=_published_at(entry),
                    topics=_entry_topics(session, feed, entry),
                    feed=feed,
                )
        except MailerError as exc:
            report.skipped.append(f"entry {position} ({one_line(title, 60) or 'untitled'}): {exc}")
            continue
        if upserted.is_new:
            report.new += 1
        elif upserted.is_changed:
            report.updated += 1
        else:
            report.unchanged += 1
    return report


def record_failure(session: Session, feed: Feed, error: str) -> PollReport:
    """Note on the feed that this poll failed and why (no commit); its validators stay as they were."""
    feed.last_polled_at = clock.now()
    # The error may quote the server (an HTTP reason phrase): one line, no escape sequences for a terminal.
    feed.last_error = one_line(error, 1000)
    return PollReport(feed_id=feed.id, url=feed.url, error=feed.last_error)


def set_feed_topics(session: Session, feed: Feed, topics: list[Topic]) -> None:
    """Give `feed` these default topics (existing ones; no commit). Articles already stored keep theirs."""
    feed.topics = list(dict.fromkeys(topics))
    session.flush()


def set_feed_options(session: Session, feed: Feed, *, reads_actions: bool, full_content: bool) -> None:
    """Whether `feed`'s entries are read for calls to act, and whether digests carry its posts whole (no commit).

    From the next poll on: turning calls to act off leaves the action links already stored as they are.
    """
    feed.reads_actions = reads_actions
    feed.full_content = full_content
    session.flush()


def remove_feed(session: Session, feed: Feed) -> int:
    """Stop polling `feed` (no commit); the articles it brought stay, without a feed. Returns how many."""
    kept = session.execute(update(Article).where(Article.feed_id == feed.id).values(feed_id=None)).rowcount
    session.delete(feed)
    session.flush()
    return kept
