"""The answer renderer: Markdown to safe HTML, whole and while it streams (harness/portal/markdown.py)."""

from __future__ import annotations

import random
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from harness.portal import markdown
from harness.portal.markdown import MarkdownStream, render, sanitise

ROOT = Path(__file__).resolve().parents[3]

ANSWER = """# Plan

Some *emphasis*, **strong**, ~~struck~~ and `inline code`; see https://example.com/docs or
[the guide](https://example.com/guide "Guide").

1. first
2. second

- [x] done
- [ ] to do

| name | size |
|:-----|-----:|
| a    |    1 |
| b    |   22 |

```python
def greet(name):
    return f"hello {name}"
```

> quoted

    indented code

---
The end.
"""


class Elements(HTMLParser):
    """Every element in a piece of HTML, with its attributes, as a browser would parse it."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.found: list[tuple[str, dict]] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.found.append((tag, dict(attrs)))


def streamed(text: str, size: int) -> tuple[str, list[str], MarkdownStream]:
    """What a page holds after the text arrives in pieces of `size`: the finished blocks as appended, and the
    open tail as replaced. Also every state it showed on the way."""
    stream, finished, shown = MarkdownStream(), "", []
    tail = ""
    for start in range(0, len(text), size):
        done, tail = stream.push(text[start:start + size])
        finished += done
        shown.append(finished + tail)
    return finished + tail, shown, stream


def test_commonmark_and_gfm_render():
    html = render(ANSWER)
    assert "<h1>Plan</h1>" in html
    assert "<em>emphasis</em>" in html and "<strong>strong</strong>" in html and "<s>struck</s>" in html
    assert "<code>inline code</code>" in html
    assert "<ol>\n<li>first</li>" in html
    assert '<input class="task-list-item-checkbox" checked="checked" disabled="disabled" type="checkbox"> done' in html
    assert '<th style="text-align:left">name</th>' in html and '<td style="text-align:right">22</td>' in html
    assert "<blockquote>" in html and "<hr>" in html


def test_links_open_in_a_new_tab_without_referrer_or_opener():
    html = render(ANSWER)
    for href in ("https://example.com/docs", "https://example.com/guide"):
        link = re.search(rf'<a href="{re.escape(href)}"[^>]*>', html).group(0)
        assert 'target="_blank"' in link and 'rel="noopener noreferrer nofollow"' in link
    assert 'title="Guide"' in html


def test_code_is_highlighted_with_a_copy_button():
    html = render(ANSWER)
    block = re.search(r'<div class="code-block">.*?</div>\n', html, re.S).group(0)
    assert '<span>python</span>' in block
    assert '<button type="button" class="code-copy" aria-label="Copy code">Copy</button>' in block
    assert '<span class="k">def</span>' in block and '<span class="nf">greet</span>' in block
    # An indented block and an unknown language get the same block, unhighlighted but escaped.
    assert html.count('class="code-copy"') == 2
    unknown = render("```nosuchlanguage\n<b>x</b>\n```")
    assert "<span>nosuchlanguage</span>" in unknown and "&lt;b&gt;x&lt;/b&gt;" in unknown


@pytest.mark.parametrize(
    "source",
    [
        "<script>alert(1)</script>",
        '<img src=x onerror="alert(1)">',
        '<a href="javascript:alert(1)">x</a>',
        "[x](javascript:alert(1))",
        "[x](JaVaScRiPt:alert(1))",
        "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
        "<javascript:alert(1)>",
        "![x](javascript:alert(1))",
        '<div id="composer" hx-swap-oob="true" onclick="alert(1)">x</div>',
        "<iframe src=https://example.com></iframe>",
        '<svg onload="alert(1)"></svg>',
    ],
)
def test_nothing_a_model_writes_can_run_or_reach_the_page_as_markup(source):
    elements = Elements(render(f"before {source} after\n\n{source}\n")).found
    assert {tag for tag, _ in elements} <= {"p", "a"}  # the markup stays text; at most a link
    for tag, attrs in elements:
        # No handler, no id or hx- attribute htmx could act on, no URL but the web's.
        assert all(not name.startswith(("on", "hx-")) and name != "id" for name in attrs)
        assert tag != "a" or attrs.get("href", "https:").split(":")[0] in ("https", "http", "mailto")


@pytest.mark.parametrize(
    "dirty, clean",
    [
        ('<a href="javascript:alert(1)">x</a>', '<a target="_blank" rel="noopener noreferrer nofollow">x</a>'),
        ('<div class="code-block evil" onclick="x()">y</div>', '<div class="code-block">y</div>'),
        ('<button type="submit" class="code-copy" onclick="x()">c</button>', '<button class="code-copy">c</button>'),
        ('<input type="text" class="task-list-item-checkbox" checked>', '<input class="task-list-item-checkbox" checked="">'),
        ('<table><tr><td style="text-align:right; position: fixed">1</td></tr></table>',
         '<table><tbody><tr><td style="text-align:right">1</td></tr></tbody></table>'),
        ('<p id="composer" hx-swap-oob="true">p</p>', "<p>p</p>"),
        ('<img src="https://tracker.example/x.png">t', "t"),
    ],
)
def test_the_sanitiser_lets_only_our_own_markup_through(dirty, clean):
    """Defence in depth: even HTML our renderer never produces is cut back to what it does produce."""
    assert sanitise(dirty) == clean


def test_images_become_links_so_the_page_never_fetches_a_url_a_model_chose():
    html = render("![the chart](https://example.com/chart.png)")
    assert "<img" not in html
    assert '<a href="https://example.com/chart.png" target="_blank" rel="noopener noreferrer nofollow">the chart</a>' in html


def test_raw_html_is_shown_as_text():
    assert render("a <b>bold</b> move") == "<p>a &lt;b&gt;bold&lt;/b&gt; move</p>\n"


@pytest.mark.parametrize("size", [1, 3, 17, 200])
def test_a_streamed_answer_ends_as_the_whole_render(size):
    final, _, _ = streamed(ANSWER, size)
    assert final == render(ANSWER)


def test_mid_stream_an_unclosed_fence_shows_as_code_and_later_text_does_not_break_the_page():
    text = "Intro.\n\n```python\nimport os\nprint(os.getcwd())\n"
    final, shown, _ = streamed(text, 5)
    assert final.startswith("<p>Intro.</p>\n<div class=\"code-block\">")
    assert "<span class=\"nb\">print</span>" in final and final.rstrip().endswith("</pre></div>")
    # A table cut mid-row renders as something valid, then as the table.
    table, _, _ = streamed("| a | b |\n|---|", 4)
    assert "<table>" not in table and "<p>" in table
    assert "<table>" in streamed("| a | b |\n|---|---|\n| 1 | 2 |\n", 4)[0]
    assert all(state.count("<div") == state.count("</div>") for state in shown)  # never a half-open element


def test_finished_blocks_are_rendered_once_and_only_the_open_block_again():
    stream = MarkdownStream()
    assert stream.push("First paragraph.\n\n") == ("", "<p>First paragraph.</p>\n")
    done, tail = stream.push("Second")
    assert done == "<p>First paragraph.</p>\n" and tail == "<p>Second</p>\n"
    assert stream.tail == "Second" and stream.parsed_chars == len("First paragraph.\n\nSecond")
    assert stream.push(" one.") == ("", "<p>Second one.</p>\n")
    assert stream.parsed_chars == len("Second one.")


def test_a_200_kb_answer_costs_per_piece_what_its_open_block_costs_not_what_came_before():
    """Rendering grows with the answer's open block, never with the answer: the text each piece makes the
    renderer parse (its unit of work, counted rather than timed) stays bounded as the answer grows."""
    rng = random.Random(7)
    blocks = []
    while sum(map(len, blocks)) < 200_000:
        kind = rng.choice(["para", "list", "code", "table"])
        if kind == "para":
            blocks.append(" ".join(rng.choice(["alpha", "**beta**", "`gamma`", "delta"]) for _ in range(60)))
        elif kind == "list":
            blocks.append("\n".join(f"- item {i} with *words*" for i in range(8)))
        elif kind == "code":
            blocks.append("```python\n" + "\n".join(f"x{i} = {i} * 2" for i in range(15)) + "\n```")
        else:
            blocks.append("| a | b |\n|---|---|\n" + "\n".join(f"| {i} | {i * i} |" for i in range(8)))
    text = "\n\n".join(blocks) + "\n"
    largest_block = max(map(len, blocks))
    stream, piece, work, finished = MarkdownStream(), 40, [], ""
    for start in range(0, len(text), piece):
        done, tail = stream.push(text[start:start + piece])
        finished += done
        work.append(stream.parsed_chars)
    assert len(text) >= 200_000
    assert max(work) <= 2 * largest_block + 2 * piece  # at most the open block and the one it just closed
    assert finished + tail == render(text)


def test_the_highlight_stylesheet_is_the_generated_one():
    path = ROOT / "static" / "css" / "highlight.css"
    assert path.read_text() == markdown.highlight_css(), "regenerate: python -c 'from harness.portal.markdown import highlight_css; print(highlight_css(), end=\"\")' > static/css/highlight.css"
    assert "@media (prefers-color-scheme: dark)" in path.read_text()
