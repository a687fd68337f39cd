"""Assistant answers as safe HTML, also while they stream.

Markdown is rendered by markdown-it-py (CommonMark, plus the GFM parts models use: tables, strikethrough,
task lists and bare-URL autolinks), code is highlighted by Pygments with CSS classes (static/css/highlight.css),
and every piece of HTML is sanitised by nh3 before it reaches a page. Raw HTML in the Markdown is shown as
text, never interpreted; images become links (a model must not make the browser fetch URLs it chose); links
open in a new tab with `rel="noopener noreferrer nofollow"`; `javascript:` and `data:` URLs are dropped.

`render(text)` renders a finished answer. `MarkdownStream` renders a growing one without re-rendering it all
on every delta: a Markdown block that another block follows can no longer change (bar link reference
definitions, which a finished answer's fresh render puts right), so each block is rendered once, when the next
one starts, and only the last, open block is rendered again as text arrives. An unclosed code fence renders
as code to the end of the text, which is what a reader wants mid-stream.

The JSON APIs send raw text; only the portal renders.
"""

from __future__ import annotations

import functools
import re

import nh3
import pygments
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from mdit_py_plugins.tasklists import tasklists_plugin
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

# Code colours, light and dark (static/css/highlight.css is generated from these: `highlight_css()`).
LIGHT_STYLE = "default"
DARK_STYLE = "monokai"

_FORMATTER = HtmlFormatter(nowrap=True)

# What may reach the page. Everything our renderer emits and nothing else: no id (it could collide with the
# page's own ids, which htmx swaps by), no style beyond a table cell's alignment, no event handlers.
_TAGS = {
    "p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "hr", "br", "ul", "ol", "li", "em", "strong", "del",
    "s", "code", "pre", "a", "table", "thead", "tbody", "tr", "th", "td", "span", "div", "button", "input",
}
_ATTRIBUTES = {
    "a": {"href", "title"},
    "ol": {"start"},
    "th": {"style"},
    "td": {"style"},
    "span": {"class"},  # Pygments' token classes
    "button": {"aria-label"},
    "input": {"checked", "disabled"},
}
_TAG_ATTRIBUTE_VALUES = {"button": {"type": {"button"}}, "input": {"type": {"checkbox"}}}
_ALLOWED_CLASSES = {
    "div": {"code-block", "code-head"},
    "pre": {"highlight"},
    "button": {"code-copy"},
    "ul": {"contains-task-list"},
    "li": {"task-list-item"},
    "input": {"task-list-item-checkbox"},
}


# Classes only from `_ALLOWED_CLASSES` (and any on Pygments' spans): nh3 wants class left out of `attributes`
# for the tags it filters.
_CLEANER = nh3.Cleaner(
    tags=_TAGS,
    attributes=_ATTRIBUTES,
    tag_attribute_values=_TAG_ATTRIBUTE_VALUES,
    allowed_classes=_ALLOWED_CLASSES,
    filter_style_properties={"text-align"},
    url_schemes={"http", "https", "mailto"},
    link_rel="noopener noreferrer nofollow",
    set_tag_attribute_values={"a": {"target": "_blank"}},
    strip_comments=True,
)


def sanitise(html: str) -> str:
    return _CLEANER.clean(html)


@functools.lru_cache(maxsize=256)
def _lexer(language: str):
    try:
        return get_lexer_by_name(language, stripnl=False, ensurenl=False)
    except ClassNotFound:
        return None


def code_block_html(code: str, language: str) -> str:
    """A code block with its language and a copy button (static/js/session.js copies the `<pre>`'s text)."""
    lexer = _lexer(language.lower()) if language else None
    body = pygments.highlight(code, lexer, _FORMATTER) if lexer else escapeHtml(code)
    return (
        f'<div class="code-block"><div class="code-head"><span>{escapeHtml(language)}</span>'
        f'<button type="button" class="code-copy" aria-label="Copy code">Copy</button></div>'
        f'<pre class="highlight"><code>{body}</code></pre></div>\n'
    )


def _fence(self, tokens, idx, options, env) -> str:
    info = tokens[idx].info.strip()
    return code_block_html(tokens[idx].content, info.split(maxsplit=1)[0] if info else "")


def _indented_code(self, tokens, idx, options, env) -> str:
    return code_block_html(tokens[idx].content, "")


def _image(self, tokens, idx, options, env) -> str:
    """An image as a link to it, named by its alt text: the page never loads a URL a model chose."""
    token = tokens[idx]
    alt = self.renderInlineAsText(token.children or [], options, env) or token.attrGet("src")
    return f'<a href="{escapeHtml(str(token.attrGet("src")))}">{escapeHtml(alt)}</a>'


def _parser() -> MarkdownIt:
    md = (
        MarkdownIt("commonmark", {"html": False, "linkify": True})
        .enable(["table", "strikethrough", "linkify"])
        .use(tasklists_plugin)
    )
    md.add_render_rule("fence", _fence)
    md.add_render_rule("code_block", _indented_code)
    md.add_render_rule("image", _image)
    return md


_MD = _parser()


# Finished answers do not change and pages show them often: the recent ones are kept rendered. Bounded in
# count and in size (a long answer is rendered each time rather than held), so the cache stays a few MiB.
CACHE_ANSWERS = 128
CACHE_MAX_CHARS = 32_000


def render(text: str) -> str:
    """A finished answer as safe HTML."""
    return _render_cached(text) if len(text) <= CACHE_MAX_CHARS else _render(text)


def _render(text: str) -> str:
    return sanitise(_MD.render(text))


_render_cached = functools.lru_cache(maxsize=CACHE_ANSWERS)(_render)


# markdown-it's own line breaks (it reads "\r\n" and a lone "\r" as one each).
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


class MarkdownStream:
    """The rendered HTML of a growing text, in two parts: the finished blocks (each rendered once, to be
    appended to what the reader has) and the open tail (rendered again on each `push`, replacing the last)."""

    def __init__(self) -> None:
        self.tail = ""  # raw text from the start of the first block that may still change
        self.parsed_chars = 0  # how much text the last push parsed (the renderer's unit of work; tests read it)

    def push(self, text: str) -> tuple[str, str]:
        """Adds text; returns (HTML of blocks finished by it, HTML of the open tail)."""
        self.tail += text
        self.parsed_chars = len(self.tail)
        env: dict = {}
        tokens = _MD.parse(self.tail, env)
        starts = [i for i, t in enumerate(tokens) if t.level == 0 and t.nesting >= 0 and t.map is not None]
        finished = ""
        if len(starts) > 1:
            last = starts[-1]
            finished = sanitise(_MD.renderer.render(tokens[:last], _MD.options, env))
            self.tail = self.tail[_line_offset(self.tail, tokens[last].map[0]):]
            tokens = tokens[last:]
        return finished, sanitise(_MD.renderer.render(tokens, _MD.options, env))


def _line_offset(text: str, line: int) -> int:
    """Where line number `line` (0-based, as markdown-it counts) starts in `text`."""
    if line == 0:
        return 0
    for number, match in enumerate(_LINE_BREAK.finditer(text), start=1):
        if number == line:
            return match.end()
    return len(text)


def highlight_css() -> str:
    """static/css/highlight.css: Pygments' classes in the light style, and the dark one for dark screens (only
    the `.highlight` rules: Pygments also styles every `pre` and line-number tables, which we do not use)."""

    def rules(style: str, indent: str = "") -> str:
        lines = HtmlFormatter(style=style).get_style_defs(".highlight").splitlines()
        return "\n".join(indent + line for line in lines if line.startswith(".highlight"))

    return (
        "/* Generated by harness.portal.markdown.highlight_css(); do not edit "
        "(tests/harness/portal/test_markdown.py checks it). */\n"
        f"{rules(LIGHT_STYLE)}\n@media (prefers-color-scheme: dark) {{\n{rules(DARK_STYLE, '  ')}\n}}\n"
    )
