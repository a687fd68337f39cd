"""Answers read as rendered Markdown in the page, while they stream and after, and nothing a model writes runs."""

from __future__ import annotations

import json

from playwright.sync_api import expect

from .support import open_session

ANSWER = """# Release plan

Steps, in order:

1. Freeze the branch
2. Run the **full** suite

| step | owner |
|------|------:|
| freeze | alice |

```python
def release(version):
    return f"v{version}"
```

Read [the runbook](https://example.com/runbook) first.
"""

HOSTILE = """Harmless words.

<script>window.__xss = "script"</script>

<img src="x" onerror="window.__xss = 'img'">

[click me](javascript:window.__xss='link')

<a href="javascript:window.__xss='a'">raw link</a>
"""


def script(text: str, delay_ms: int = 5) -> str:
    return "script:" + json.dumps({"turns": [{"text": text, "delay_ms": delay_ms}]})


def answer(page):
    return page.locator("#transcript .msg-assistant").last


def test_an_answer_shows_as_headings_lists_tables_highlighted_code_and_safe_links(page, context, server, api,
                                                                                   session_id):
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    open_session(page, server.base_url, session_id)
    api.run_start(session_id, script(ANSWER))
    expect(page.locator("#run-status .state")).to_have_text("Completed", timeout=30_000)
    body = answer(page)
    expect(body.get_by_role("heading", name="Release plan", level=1)).to_be_visible()
    expect(body.get_by_role("listitem")).to_have_text(["Freeze the branch", "Run the full suite"])
    expect(body.get_by_role("table")).to_be_visible()
    expect(body.get_by_role("cell", name="alice")).to_have_css("text-align", "right")
    expect(body.locator("pre .k", has_text="def")).to_have_count(1)  # highlighted: the keyword has its class
    assert body.locator("pre .k").first.evaluate("e => getComputedStyle(e).color") != body.locator(
        "pre").evaluate("e => getComputedStyle(e).color")  # … and its colour
    link = body.get_by_role("link", name="the runbook")
    expect(link).to_have_attribute("href", "https://example.com/runbook")
    expect(link).to_have_attribute("target", "_blank")
    expect(link).to_have_attribute("rel", "noopener noreferrer nofollow")

    copy = body.get_by_role("button", name="Copy code")
    copy.click()
    expect(copy).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == 'def release(version):\n    return f"v{version}"\n'

    # A long line scrolls inside its block; the page itself does not get wider.
    api.run_start(session_id, script("```\n" + "x" * 2000 + "\n```\n"))
    expect(page.locator("#transcript .msg-assistant")).to_have_count(2)
    expect(page.locator("#run-status .state")).to_have_text("Completed", timeout=30_000)
    pre = answer(page).locator("pre")
    assert pre.evaluate("e => e.scrollWidth > e.clientWidth")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")

    # The user's own message stays plain text, line breaks kept.
    api.run_start(session_id, "# not a heading\nsecond line")
    user = page.locator("#transcript .msg-user .msg-text").last
    expect(user).to_have_text("# not a heading\nsecond line")
    expect(page.locator("#transcript .msg-user h1")).to_have_count(0)


def test_script_handlers_and_javascript_links_from_a_model_never_run(page, server, api, session_id):
    open_session(page, server.base_url, session_id)
    # Could happen: this very text, given to the page as HTML, runs its handler.
    page.evaluate("html => { document.createElement('div').innerHTML = html; }", HOSTILE)
    page.wait_for_function("window.__xss === 'img'")
    page.evaluate("delete window.__xss")

    api.run_start(session_id, script(HOSTILE, delay_ms=20))
    expect(answer(page)).to_have_attribute("data-status", "streaming")  # hostile text shown mid-stream …
    expect(page.locator("#run-status .state")).to_have_text("Completed", timeout=30_000)  # … and finished
    body = answer(page)
    expect(body).to_contain_text('<script>window.__xss = "script"</script>')  # shown as text
    expect(body.locator("script, img")).to_have_count(0)
    expect(body.get_by_role("link")).to_have_count(0)  # a javascript: URL is no link at all
    body.get_by_text("click me").click()
    body.get_by_text("raw link").click()
    assert page.evaluate("window.__xss") is None


def test_markdown_shows_while_the_answer_streams_and_ends_as_a_fresh_load_renders_it(page, context, server, api,
                                                                                    session_id):
    code = "\n".join(f"value_{i} = {i}" for i in range(60))
    text = f"Intro **bold**.\n\n```python\n{code}\n```\n\nAfter the code.\n"
    open_session(page, server.base_url, session_id)
    api.run_start(session_id, script(text, delay_ms=40))
    body = answer(page)
    # Mid-stream, inside the still-open fence: the intro is rendered, the code shows as a code block.
    expect(body.locator("pre", has_text="value_3 = 3")).to_be_visible()
    expect(body).to_have_attribute("data-status", "streaming")
    expect(body.locator("strong")).to_have_text("bold")
    assert "After the code" not in body.inner_text()
    assert "```" not in body.inner_text()

    expect(body).to_have_attribute("data-status", "complete", timeout=30_000)
    expect(body.locator("p").last).to_have_text("After the code.")
    streamed_html = body.locator(".msg-text").inner_html()
    fresh = context.new_page()
    open_session(fresh, server.base_url, session_id)
    assert answer(fresh).locator(".msg-text").inner_html() == streamed_html
