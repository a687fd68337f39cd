#!/usr/bin/env python3
"""Take the README's screenshots of the session page with the real server and Debian's Chromium.

    .venv/bin/python docs/screenshots/take.py [--out docs/screenshots]

Starts `manage.py serve` on a free port with a fresh SQLite database in a temporary directory (the same
way the end-to-end tests do, tests/e2e/support.py), drives the page with Playwright and writes:

    idle.png             a finished exchange, the composer idle with a draft
    markdown.png         a finished answer rendered as Markdown (heading, list, code with its copy button,
                         table), with Edit and Regenerate
    streaming.png        an answer streaming in, the red stop button
    stopping.png         the instant after clicking stop ("stopping…"; the stop request is held back)
    approval.png         an approval card with Approve / Deny
    stopped-receipt.png  a stopped run with its receipt open
    dark.png             a run streaming, in the dark colour scheme
    phone.png            a run streaming on a 390 px wide phone

Not run by the tests. Needs /usr/bin/chromium (never `playwright install`).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from playwright.sync_api import expect, sync_playwright  # noqa: E402

from tests.e2e.support import (  # noqa: E402
    PASSWORD,
    PHONE,
    USERNAME,
    VIEWPORT,
    WS_PROBE,
    Api,
    HarnessServer,
    HeldRoutes,
    launch,
    login,
    open_session,
)

def script(*turns: dict) -> str:
    return "script:" + json.dumps({"turns": list(turns)})


# What a model answers: Markdown. The scripted model streams it word by word (then filler, to keep a run
# streaming for the shots that need one); the user message is the script itself.
ANSWER = """## Why the tests fail

The `db_session` fixture is opened **once per module**, so the second test sees the rows of the first.

1. Scope the fixture to the function
2. Roll back after each test

```python
@pytest.fixture
def db_session(engine):
    with engine.begin() as conn:
        yield conn
        conn.rollback()
```

| test | before | after |
|------|--------|-------|
| test_create | pass | pass |
| test_list | **fail** | pass |

Run `make test` again to confirm.
"""
STREAM = script({"text": ANSWER + "\n", "words": 3000, "markdown": True, "delay_ms": 30})


def wait_streaming(page, chars: int) -> None:
    page.wait_for_function(
        "([n]) => document.querySelector('#transcript .msg-assistant[data-status=streaming] .msg-text')"
        "?.textContent.length > n",
        arg=[chars], timeout=30_000,
    )


def take(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="harness-shots-") as tmp:
        server = HarnessServer(Path(tmp))
        server.migrate()
        server.create_user(USERNAME, PASSWORD)
        api = Api(server.base_url, server.create_token(USERNAME))
        server.start()
        try:
            with sync_playwright() as driver:
                browser = launch(driver)
                context = browser.new_context(viewport=VIEWPORT)
                context.add_init_script(WS_PROBE)
                page = context.new_page()
                login(page, server.base_url, USERNAME, PASSWORD)
                state = context.storage_state()

                # idle: a finished exchange with the demo agent's calculator, a draft in the composer.
                sid = api.new_session("Quick arithmetic")
                open_session(page, server.base_url, sid)
                page.get_by_label("Message").fill("what is (12 + 30) * 2?")
                page.get_by_label("Message").press("Enter")
                expect(page.locator("#run-status .state")).to_have_text("Completed", timeout=30_000)
                page.get_by_label("Message").fill("and what time is it?")
                page.mouse.move(0, 0)
                page.screenshot(path=out / "idle.png")

                # markdown: a finished answer, rendered.
                sid = api.new_session("Why do the tests fail?")
                open_session(page, server.base_url, sid)
                api.run_start(sid, script({"text": ANSWER, "delay_ms": 2}))
                expect(page.locator("#run-status .state")).to_have_text("Completed", timeout=30_000)
                page.mouse.move(0, 0)
                page.screenshot(path=out / "markdown.png")

                # streaming, then stopping (the stop request held at the route), then stopped + receipt.
                sid = api.new_session("Fix the failing tests")
                open_session(page, server.base_url, sid)
                page.get_by_label("Message").fill(STREAM)
                page.get_by_label("Message").press("Enter")
                wait_streaming(page, 420)
                page.screenshot(path=out / "streaming.png")
                held = HeldRoutes()
                page.route("**/stop", held)
                page.locator("#composer .composer-send").click()
                expect(page.locator("#composer .composer-send")).to_have_text("stopping…")
                held.wait(page)
                page.mouse.move(0, 0)
                page.screenshot(path=out / "stopping.png")
                held.release()
                page.unroute("**/stop")
                expect(page.locator("#composer")).to_have_attribute("data-mode", "idle")
                page.locator("#run-status").get_by_role("button", name="receipt").click()
                expect(page.locator("#receipt .receipt")).to_be_visible()
                page.mouse.move(0, 0)
                page.screenshot(path=out / "stopped-receipt.png")

                # approval: the model asks to run a shell command.
                sid = api.new_session("Clean the build")
                open_session(page, server.base_url, sid)
                api.run_start(sid, script(
                    {"text": "I will remove the stale build output first.", "delay_ms": 20,
                     "calls": [{"name": "shell", "arguments": {"command": "rm -rf build/ && make -j4"}}]},
                    {"text": "done"},
                ))
                expect(page.locator("#approvals .approval").get_by_role("button", name="Approve")).to_be_visible()
                page.screenshot(path=out / "approval.png")
                api.stop(sid)

                # dark and phone: a run streaming.
                for name, options in (
                    ("dark", {"viewport": VIEWPORT, "color_scheme": "dark"}),
                    ("phone", {"viewport": PHONE, "is_mobile": True, "has_touch": True}),
                ):
                    themed = browser.new_context(storage_state=state, **options)
                    themed.add_init_script(WS_PROBE)
                    shot = themed.new_page()
                    sid = api.new_session("Fix the failing tests")
                    open_session(shot, server.base_url, sid)
                    shot.get_by_label("Message").fill(STREAM)
                    shot.get_by_label("Message").press("Enter")
                    wait_streaming(shot, 300)
                    shot.screenshot(path=out / f"{name}.png")
                    api.stop(sid)
                    themed.close()
                browser.close()
        finally:
            server.stop()
    for name in ("idle", "markdown", "streaming", "stopping", "approval", "stopped-receipt", "dark", "phone"):
        print(out / f"{name}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    take(parser.parse_args().out)


if __name__ == "__main__":
    main()
