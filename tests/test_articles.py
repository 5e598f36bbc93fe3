"""Articles: stored once per GUID or canonical URL, action links checked, Markdown files imported."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import func, select

from mailer.articles.models import ActionKind, ActionLink, Article
from mailer.articles.operations import ActionDraft, infer_action_kind, upsert_article
from mailer.errors import ArticleError
from mailer.topics.models import Topic

FIXTURES = Path(__file__).parent / "fixtures"
CHECHNYA = FIXTURES / "chechnya.md"
CHECHNYA_TITLE = "Two Dead And At Least 40 Detained As Chechen LGBT Purge Resumes"


def count(session, model) -> int:
    return session.scalar(select(func.count()).select_from(model))


def store(session, **overrides):
    values = dict(guid="https://blog.example.org/p/1", canonical_url="https://blog.example.org/p/1",
                  title="Vigil on Saturday", summary="", body="We meet at noon.\n\nBring candles.",
                  image_url="", author="Alex", published_at=None, topics=["lgbtiq-rights"],
                  actions=[ActionDraft("Join the vigil", "https://blog.example.org/vigil")])
    values.update(overrides)
    return upsert_article(session, **values)


# ---- upsert ------------------------------------------------------------------------------------

def test_storing_again_updates_and_never_duplicates(session, frozen_clock):
    first = store(session)
    session.commit()
    assert first.is_new and first.article.slug == "vigil-on-saturday"
    assert first.article.summary == "We meet at noon."
    assert first.article.published_at == frozen_clock.now()
    assert [(a.label, a.kind) for a in first.article.actions] == [("Join the vigil", ActionKind.event)]

    same = store(session)
    assert not same.is_new and not same.is_changed

    frozen_clock.advance(timedelta(hours=1))
    changed = store(session, title="Vigil moved to Sunday", topics=["lgbtiq-rights", "#Ukraine"],
                    actions=[ActionDraft("Donate to the organisers", "https://example.org/donate")])
    session.commit()
    assert changed.article.id == first.article.id and changed.is_changed
    assert count(session, Article) == 1 and count(session, ActionLink) == 1
    article = session.get(Article, first.article.id)
    assert article.title == "Vigil moved to Sunday"
    assert article.slug == "vigil-on-saturday"  # archive links keep working after a title fix
    assert [t.slug for t in article.topics] == ["lgbtiq-rights", "ukraine"]
    assert article.actions[0].kind == ActionKind.donate
    # No date given again: the article keeps its first publication time, so it is not "new" twice.
    assert article.published_at == frozen_clock.now() - timedelta(hours=1)


def test_without_guid_the_canonical_url_identifies_the_article(session):
    store(session, guid=None, canonical_url="https://blog.example.org/p/2")
    again = store(session, guid=None, canonical_url="https://blog.example.org/p/2", title="Edited")
    session.commit()
    assert not again.is_new and count(session, Article) == 1
    assert session.scalar(select(Article.guid)) == "https://blog.example.org/p/2"


def test_a_feed_guid_finds_the_article_imported_with_the_same_url(session):
    store(session, guid=None, canonical_url="https://blog.example.org/p/3")
    again = store(session, guid="tag:blog.example.org,2026:3", canonical_url="https://blog.example.org/p/3")
    assert not again.is_new and count(session, Article) == 1


def test_an_article_stored_meanwhile_by_another_process_is_updated_not_duplicated(session, monkeypatch):
    # Two pollers fetch the same entry: ours misses the other's row on look-up, its insert hits the
    # unique GUID, and it must update that row instead of failing or duplicating.
    from mailer.articles import operations

    theirs = store(session).article
    session.commit()
    real_find = operations._find
    calls = []

    def find_after_race(*args):
        calls.append(args)
        return None if len(calls) == 1 else real_find(*args)

    monkeypatch.setattr(operations, "_find", find_after_race)
    ours = store(session, title="Vigil (edited)")
    session.commit()
    assert (ours.is_new, ours.article.id) == (False, theirs.id)
    assert count(session, Article) == 1 and session.scalar(select(Article.title)) == "Vigil (edited)"


def test_same_title_gets_a_unique_slug(session):
    slugs = [store(session, guid=f"urn:x:{i}", canonical_url=None).article.slug for i in range(3)]
    session.commit()
    assert slugs == ["vigil-on-saturday", "vigil-on-saturday-2", "vigil-on-saturday-3"]


def test_future_article_is_stored_with_its_date(session, frozen_clock):
    tomorrow = frozen_clock.now() + timedelta(days=1)
    upserted = store(session, published_at=tomorrow)
    session.commit()
    assert session.get(Article, upserted.article.id).published_at == tomorrow


def test_naive_time_is_read_as_utc(session):
    upserted = store(session, published_at=datetime(2026, 11, 20, 8, 30))
    session.commit()
    assert session.get(Article, upserted.article.id).published_at == datetime(2026, 11, 20, 8, 30,
                                                                               tzinfo=timezone.utc)


@pytest.mark.parametrize("url", ["javascript:alert(1)", "JavaScript:alert(document.cookie)",
                                 "data:text/html;base64,PHNjcmlwdD4=", "file:///etc/passwd", "//evil.example/x",
                                 "https://", "https://exa mple.org/x", "/relative/path", ""])
def test_action_link_needs_an_http_url(session, url):
    with pytest.raises(ArticleError, match="http or https|spaces"):
        store(session, actions=[ActionDraft("Sign the petition", url)])
    session.rollback()
    assert count(session, Article) == 0 and count(session, Topic) == 0


def test_action_link_from_a_mapping_and_its_errors(session):
    upserted = store(session, actions=[{"label": "Call your MP", "url": "https://example.org/mp"},
                                       {"label": "Vigil", "url": "https://example.org/v", "kind": "EVENT"}])
    assert [a.kind for a in upserted.article.actions] == [ActionKind.call, ActionKind.event]
    with pytest.raises(ArticleError, match="unknown kind 'tweet'"):
        store(session, actions=[{"label": "Tweet", "url": "https://example.org", "kind": "tweet"}])
    with pytest.raises(ArticleError, match="needs a label"):
        store(session, actions=[{"label": " ", "url": "https://example.org"}])
    with pytest.raises(ArticleError, match="label, url and kind"):
        store(session, actions=[{"label": "x", "url": "https://example.org", "onclick": "x"}])


def test_article_needs_a_title_and_an_identity(session):
    with pytest.raises(ArticleError, match="title"):
        store(session, title=" \n ")
    with pytest.raises(ArticleError, match="GUID or a canonical URL"):
        store(session, guid=None, canonical_url=None)
    with pytest.raises(ArticleError, match="article's URL"):
        store(session, canonical_url="javascript:alert(1)")


def test_title_with_line_breaks_is_one_line(session):
    assert store(session, title="Vigil\r\nBcc: everyone@example.org").article.title == \
        "Vigil Bcc: everyone@example.org"


@pytest.mark.parametrize("label, url, kind", [
    ("Sign the petition for Russia to intervene", "https://www.change.org/p/x", ActionKind.petition),
    ("Donate to The Russian LGBT Network", "https://lgbtnet.org/en/donate", ActionKind.donate),
    ("Write to your MP", "https://www.writetothem.com/", ActionKind.letter),
    ("Call your senator", "https://example.org", ActionKind.call),
    ("Join the march", "https://example.org", ActionKind.event),
    ("Support the shelter", "https://example.org/support", ActionKind.other),
    ("Help here", "https://example.org/donate", ActionKind.donate),
])
def test_action_kind_is_inferred(label, url, kind):
    assert infer_action_kind(label, url) == kind


# ---- `mailer articles import` ------------------------------------------------------------------

def test_import_chechnya_post_twice_stores_one_article(runner, session, frozen_clock):
    first = runner.invoke(["articles", "import", str(CHECHNYA)])
    assert first.exit_code == 0, first.output
    assert first.output.startswith("new")
    second = runner.invoke(["articles", "import", str(CHECHNYA)])
    assert second.exit_code == 0 and second.output.startswith("unchanged")

    article = session.scalar(select(Article))
    assert count(session, Article) == 1
    assert article.title == CHECHNYA_TITLE
    assert article.slug == "two-dead-and-at-least-40-detained-as-chechen-lgbt-purge-resumes"
    assert article.summary.startswith("The Russian LGBT Network says a new wave of detentions")
    assert [(t.slug, t.title) for t in article.topics] == [
        ("chechen-anti-gay-purge", "Chechen Anti Gay Purge"), ("lgbtiq-rights", "LGBTIQ Rights")]
    assert [(a.label, a.url, a.kind) for a in article.actions] == [
        ("Sign the petition for Russia to intervene",
         "https://www.change.org/p/vladimir-putin-stop-the-chechen-anti-gay-purge", ActionKind.petition),
        ("Donate to The Russian LGBT Network", "https://lgbtnet.org/en/donate", ActionKind.donate),
    ]
    # The calls to act become buttons and the hashtags topics: neither is repeated in the body.
    assert "change.org" not in article.body_html and "#ChechenAntiGayPurge" not in article.body_html
    assert article.body_html.count("<p>") == 3
    assert article.title not in article.body_html


def test_import_front_matter(runner, session):
    result = runner.invoke(["articles", "import", str(FIXTURES / "front-matter.md")])
    assert result.exit_code == 0, result.output
    article = session.scalar(select(Article))
    assert article.title == "Write to your MP about safe routes for refugees"
    assert article.summary == "MPs vote next week on the asylum bill."
    assert article.canonical_url == article.guid == "https://blog.example.org/2026/11/safe-routes"
    assert article.published_at == datetime(2026, 11, 20, 8, 30, tzinfo=timezone.utc)
    assert (article.image_url, article.author) == ("https://blog.example.org/images/vote.jpg", "Alex")
    assert [t.slug for t in article.topics] == ["human-rights", "refugees"]
    assert [(a.label, a.kind) for a in article.actions] == [("Write to your MP", ActionKind.letter),
                                                            ("Join the vigil on Saturday", ActionKind.event)]
    # Front matter lists the actions, so a "Donate…" line in the text stays text.
    assert "https://example.org/donate" in article.body_source


def test_import_reports_bad_files_and_imports_the_rest(runner, session, tmp_path):
    undecodable = tmp_path / "latin1.md"
    undecodable.write_bytes("Caf\xe9 news\n\nS\xe9ance".encode("latin-1"))
    missing = tmp_path / "missing.md"
    result = runner.invoke(["articles", "import", str(missing), str(undecodable), str(CHECHNYA)])
    assert result.exit_code == 2
    assert f"mailer: {missing}: no such file\n" in result.output
    assert f"mailer: {undecodable}: not UTF-8 text" in result.output
    assert "Traceback" not in result.output
    assert session.scalar(select(Article.title)) == CHECHNYA_TITLE and count(session, Article) == 1


def test_javascript_action_line_is_skipped_with_a_warning(runner, session, tmp_path):
    post = tmp_path / "post.md"
    post.write_text("# Act now\n\nIt matters.\n\nSign the petition: javascript:alert(document.cookie)\n"
                    "Donate: [here](data:text/html;base64,PHNjcmlwdD4=)\n"
                    "Help the shelter: <https://example.org/help>.\n")
    result = runner.invoke(["articles", "import", str(post)])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2 and all("http or https" in w for w in warnings)
    article = session.scalar(select(Article))
    assert [(a.label, a.url) for a in article.actions] == [("Help the shelter", "https://example.org/help")]
    assert "javascript" not in article.body_html and "data:" not in article.body_html


def test_hostile_markdown_body_is_sanitised(runner, session, tmp_path):
    post = tmp_path / "post.md"
    post.write_text('# Hi\n\n<img src="https://example.org/x.png" onerror="alert(1)">\n\n<script>alert(2)</script>\n'
                    '[x](javascript:alert(3)) <a href="javascript:alert(4)">y</a>\n')
    assert runner.invoke(["articles", "import", str(post)]).exit_code == 0
    html = session.scalar(select(Article.body_html))
    assert "onerror" not in html and "<script" not in html and "alert(2)" not in html
    # The Markdown link stays inert text; the HTML link loses its href.
    assert "href=\"javascript" not in html.lower() and "<a rel=\"noopener noreferrer\">y</a>" in html


@pytest.mark.parametrize("front_matter, message", [
    ("title: [unclosed\n", "front matter is not valid YAML"),
    ("- just\n- a list\n", "front matter must be key: value lines"),
    ("title: T\npublished: next tuesday\n", "published: 'next tuesday' is not a date"),
    ("title: T\nactions: donate\n", "actions must be a list"),
    ("title: T\ntopics: {a: 1}\n", "topics must be a list"),
])
def test_bad_front_matter_is_one_line_naming_the_file(runner, session, tmp_path, front_matter, message):
    post = tmp_path / "bad.md"
    post.write_text(f"---\n{front_matter}---\nBody\n")
    result = runner.invoke(["articles", "import", str(post)])
    assert result.exit_code == 2
    assert result.output.startswith(f"mailer: {post}: {message}") and result.output.count("\n") == 1
    assert count(session, Article) == 0


def test_unclosed_front_matter_and_empty_file_are_errors(runner, session, tmp_path):
    unclosed = tmp_path / "unclosed.md"
    unclosed.write_text("---\ntitle: T\n\nBody\n")
    empty = tmp_path / "empty.md"
    empty.write_text("\n\n")
    result = runner.invoke(["articles", "import", str(unclosed), str(empty)])
    assert result.exit_code == 2
    assert "has no closing --- line" in result.output and f"{empty}: no title" in result.output
    assert count(session, Article) == 0


def test_unknown_front_matter_key_is_a_warning(runner, session, tmp_path):
    post = tmp_path / "post.md"
    post.write_text("---\ntitle: Hello\nlayout: post\n---\nText\n")
    result = runner.invoke(["articles", "import", str(post)])
    assert result.exit_code == 0
    assert "warning: " in result.output and "unknown front matter key 'layout'" in result.output


def test_import_a_folder_and_list(runner, session, tmp_path):
    folder = tmp_path / "posts"
    (folder / "2026").mkdir(parents=True)
    shutil.copy(CHECHNYA, folder / "chechnya.md")
    shutil.copy(FIXTURES / "front-matter.md", folder / "2026" / "refugees.markdown")
    (folder / "notes.pdf").write_bytes(b"%PDF-1.4")
    result = runner.invoke(["articles", "import", str(folder)])
    assert result.exit_code == 0, result.output
    assert count(session, Article) == 2

    listing = runner.invoke(["articles", "list"])
    assert listing.exit_code == 0
    assert len(listing.output.splitlines()) == 2
    assert "[chechen-anti-gay-purge, lgbtiq-rights]" in listing.output
    rows = json.loads(runner.invoke(["articles", "list", "--json"]).output)
    assert {r["title"] for r in rows} == {CHECHNYA_TITLE, "Write to your MP about safe routes for refugees"}
    chechnya = next(r for r in rows if r["title"] == CHECHNYA_TITLE)
    assert [a["kind"] for a in chechnya["actions"]] == ["petition", "donate"]


def test_import_an_empty_folder_is_an_error(runner, session, tmp_path):
    result = runner.invoke(["articles", "import", str(tmp_path)])
    assert result.exit_code == 2 and result.output.startswith("mailer: no .md, .markdown, .txt files in")


def test_setext_title_and_code_blocks_are_left_alone(runner, session, tmp_path):
    post = tmp_path / "post.txt"
    post.write_text("Release notes\n=============\n\n```\n#include <stdio.h>\nDonate: https://example.org/d\n```\n")
    assert runner.invoke(["articles", "import", str(post)]).exit_code == 0
    article = session.scalar(select(Article))
    assert article.title == "Release notes"
    assert article.topics == [] and article.actions == []
    assert "#include" in article.body_html
