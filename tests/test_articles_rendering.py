"""Article bodies: Markdown rendered with markdown-it-py, every HTML sanitised with nh3 (no database)."""

from __future__ import annotations

import pytest

from mailer.articles.rendering import first_paragraph, markdown_to_html, plain_text, sanitise_html, shorten

HOSTILE = [
    '<script>alert("x")</script>',
    '<img src="https://example.org/a.png" onerror="alert(1)">',
    '<a href="javascript:alert(1)">click</a>',
    '<a href="JaVaScRiPt:alert(1)">click</a>',
    '<a href=" javascript:alert(1)">click</a>',
    '<a href="data:text/html;base64,PHNjcmlwdD4=">click</a>',
    '<iframe src="https://evil.example"></iframe>',
    '<p style="background:url(javascript:alert(1))" onclick="alert(1)">text</p>',
    '<svg><script>alert(1)</script></svg>',
    '<form action="https://evil.example"><input name="password"></form>',
]


@pytest.mark.parametrize("hostile", HOSTILE)
@pytest.mark.parametrize("render", [sanitise_html, markdown_to_html], ids=["feed-html", "markdown"])
def test_hostile_html_is_defused(render, hostile):
    out = render(f"<p>Before</p>\n\n{hostile}\n\n<p>After</p>").lower()
    for bad in ("<script", "onerror", "onclick", "javascript:", "data:", "<iframe", "style=", "<form", "<input"):
        assert bad not in out
    assert "before" in out and "after" in out


def test_markdown_renders_and_links_get_rel():
    html = markdown_to_html("## Why\n\nRead *this* and [sign](https://change.org/p/x).\n\n"
                            "- one\n- two\n\n> quoted\n\n![Vigil](https://example.org/v.jpg)")
    assert "<h2>Why</h2>" in html and "<em>this</em>" in html
    assert '<a href="https://change.org/p/x" rel="noopener noreferrer">sign</a>' in html
    assert "<li>one</li>" in html and "<blockquote>" in html
    assert '<img src="https://example.org/v.jpg" alt="Vigil">' in html


def test_a_body_heading_one_becomes_a_section_heading():
    assert markdown_to_html("# Inside") == "<h2>Inside</h2>"


def test_relative_urls_resolve_against_the_article_or_are_dropped():
    source = '[more](/2026/11/more) <img src="pic.jpg" alt="p"> <a href="//evil.example/x">x</a>'
    with_base = markdown_to_html(source, base_url="https://blog.example.org/2026/11/post")
    assert 'href="https://blog.example.org/2026/11/more"' in with_base
    assert 'src="https://blog.example.org/2026/11/pic.jpg"' in with_base
    without = markdown_to_html(source)
    assert "href=" not in without and "src=" not in without
    assert "evil.example" not in without


def test_an_empty_href_does_not_become_a_link_to_the_base():
    assert sanitise_html('<a href="">x</a>', base_url="https://blog.example.org/p") == \
        '<a rel="noopener noreferrer">x</a>'


def test_mailto_links_survive():
    assert 'href="mailto:mp@parliament.example"' in sanitise_html('<a href="mailto:mp@parliament.example">MP</a>')


def test_plain_text_and_summary():
    assert plain_text("<p>Fish &amp; chips</p><p>two<script>x()</script></p>") == "Fish & chips two"
    assert first_paragraph("<h2>Head</h2><p></p><p>First <em>real</em> one.</p><p>Second</p>") == "First real one."
    assert shorten("Two dead and at least forty detained", 20) == "Two dead and at…"
    assert shorten("short", 20) == "short"
