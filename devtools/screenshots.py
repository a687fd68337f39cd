"""Retake the README's screenshots of the session page (docs/screenshots/*.png) with the real server and
Debian's Chromium.

    .venv/bin/python -m devtools.screenshots [--out docs/screenshots]

Starts `manage.py serve` (devtools.serve.Serve) on a free port with a fresh SQLite database in a temporary
directory, makes a demo user `alice` and a second user `bob`, and drives the page with Playwright:

    idle.png             a finished exchange with the demo agent (its calculator), the composer holding a draft;
                         the session is shared with bob, who has it open ("Here now")
    markdown.png         a finished answer rendered as Markdown (heading, bold, inline code, code highlighted
                         with its copy button, table), with Edit and Regenerate
    streaming.png        an answer streaming in, the red stop button
    stopping.png         the instant after clicking stop ("stopping…": the stop request is held back)
    approval.png         a shell call's approval card with Approve / Deny; a log uploaded (the Files panel)
    stopped-receipt.png  the stopped run with its receipt open
    dark.png             a run streaming, in the dark colour scheme
    phone.png            a run streaming on a 390 px wide phone (the sidebar collapsed behind its button)

Every page has the session sidebar: alice's own sessions, and two of bob's under "Shared with me".

The model is the embedded scripted one (orchestrator/providers/scripted.py), which reads its script from the
user's message (`script:{"turns": [...]}`). So that the shots show the question a person would have asked,
each shot first replaces the text of the script's user message *in the page* (the DOM only; the server keeps
the script) with that question.

Waits on conditions (Playwright's expect and locators), never on fixed sleeps. Not run by the tests. Needs
/usr/bin/chromium (never `playwright install`); imports nothing from `tests`.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

from .api import Api
from .process import ROOT
from .serve import Serve
from .servers import UNLIMITED_RUNS, sandbox_reachable_dir
from .waiting import wait_for

OUT = ROOT / "docs" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"]
VIEWPORT = {"width": 1100, "height": 800}  # the README's shots are 1100 × 800 …
PHONE = {"width": 390, "height": 844}  # … and the phone's 390 × 844

# How many times the page's WebSocket opened and delivered a message: the page has no DOM mark for
# "connected", and a shot must not be taken before the socket's snapshot has been swapped in.
WS_PROBE = """
window.__shots = {opens: 0, messages: 0};
document.addEventListener("htmx:wsOpen", () => { window.__shots.opens += 1; });
document.addEventListener("htmx:wsAfterMessage", () => { window.__shots.messages += 1; });
"""


# --- the scripted model's scripts (see tests/helpers.py `script` and `shell_script`) ---------------------------
def script(*turns: dict) -> str:
    return "script:" + json.dumps({"turns": list(turns)})


def shell_script(command: str, *then: dict, text: str = "") -> str:
    """A script whose first turn (after `text`) asks to run `command` in the shell — a call that waits on a
    person's approval — then plays the turns `then`."""
    first = {"text": text, "delay_ms": 20} if text else {}
    return script({**first, "calls": [{"name": "shell", "arguments": {"command": command}}]}, *then)


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
# The finished answer of markdown.png: short enough that the question and its Edit show above it on the screen.
SHORT_ANSWER = ANSWER.replace("\nRun `make test` again to confirm.\n", "").replace(
    "1. Scope the fixture to the function\n2. Roll back after each test\n\n", "")
# The answer, then Markdown filler for minutes: a run that is still streaming when its shot is taken.
STREAM = script({"text": ANSWER + "\n", "words": 3000, "markdown": True, "delay_ms": 30})
PLAN = """Here is the plan for the move to the new runners:

1. **Cache** the virtualenv keyed on `requirements*.txt`
2. Run the unit and end-to-end suites in parallel jobs
3. Keep the nightly PostgreSQL job as it is

"""
PLAN_STREAM = script({"text": PLAN, "words": 3000, "markdown": True, "delay_ms": 30})


# --- the server ---------------------------------------------------------------------------------------------
def demo_server(directory: Path) -> Serve:
    """`manage.py serve` on its own SQLite database and workspace root in `directory`, migrated, not started."""
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{directory / 'shots.sqlite3'}",
        "HARNESS_WORKSPACE_ROOT": str(sandbox_reachable_dir("harness-shots-workspaces-")),
        "HARNESS_VAR_DIR": str(directory / "var"),
        **UNLIMITED_RUNS,
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)  # manage.py's default
    server = Serve(env, directory / "serve.log")
    server.migrate()
    return server


def upload(api: Api, session_id: str, name: str, content: bytes) -> None:
    """Upload a file into the session's workspace (a raw body with ?name=, docs/api.md)."""
    request = urllib.request.Request(
        f"{api.base_url}/api/sessions/{session_id}/files?name={urllib.parse.quote(name)}", data=content,
        method="POST", headers={"Authorization": f"Bearer {api.token}", "Content-Type": "text/csv"},
    )
    with urllib.request.urlopen(request, timeout=api.timeout) as response:
        assert response.status in (200, 201), response.status


def share(owner: Api, session_id: str, username: str, role: str) -> None:
    owner.ok("PUT", f"/api/sessions/{session_id}/members/users/{username}", {"role": role})


def wait_run_ends(api: Api, run_id: str, timeout: float = 60) -> None:
    wait_for(lambda: api.run(run_id)["state"] in ("completed", "stopped", "failed"), timeout,
             what=f"run {run_id} to end")


# --- the page -----------------------------------------------------------------------------------------------
class HeldRequests:
    """A route handler holding every request it matches until release(): the page sees no answer yet."""

    def __init__(self) -> None:
        self.routes: list = []

    def __call__(self, route) -> None:
        self.routes.append(route)

    def wait(self, page, timeout: float = 15) -> None:
        # Route callbacks are dispatched during calls into the driver: a bounded poll, not a sleep.
        deadline = time.monotonic() + timeout
        while not self.routes:
            assert time.monotonic() < deadline, "the held request never came"
            page.wait_for_timeout(10)

    def release(self) -> None:
        while self.routes:
            self.routes.pop(0).continue_()


def open_session(page, base_url: str, session_id: str) -> None:
    """Open the session's page and wait until its socket's snapshot is in."""
    page.goto(f"{base_url}/sessions/{session_id}/")
    page.wait_for_function("window.__shots && window.__shots.opens >= 1 && window.__shots.messages >= 1",
                           timeout=30_000)


def show_question(page, question: str) -> None:
    """Show `question` in place of the (script) text of the transcript's last user message — in the page only."""
    text = page.locator("#transcript .msg-user .msg-text").last
    expect(text).to_be_attached()
    text.evaluate("(node, question) => { node.textContent = question; }", question)


def wait_streaming(page, chars: int) -> None:
    """Until the streaming answer has at least `chars` characters."""
    page.wait_for_function(
        "([n]) => document.querySelector('#transcript .msg-assistant[data-status=streaming] .msg-text')"
        "?.textContent.length > n",
        arg=[chars], timeout=60_000,
    )


def scroll_to(page, locator=None, top: float = 8) -> None:
    """Scroll the window so that `locator`'s top is `top` px below the screen's (None: the page's top). The
    page then stops following the newest content, as for a reader who scrolled up, and offers its "Jump to
    latest" button: hidden here, it would only cover the content the shot is for."""
    if locator is None:
        page.evaluate("() => window.scrollTo(0, 0)")
    else:
        locator.evaluate("(node, top) => window.scrollBy(0, node.getBoundingClientRect().top - top)", top)
    page.add_style_tag(content="#jump-latest { visibility: hidden !important; }")


def settle(page) -> None:
    """The mouse out of the way (no hover), and a frame for the last swap to paint."""
    page.mouse.move(0, 0)
    page.evaluate("() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")


class Shots:
    def __init__(self, browser, server: Serve, out: Path) -> None:
        self.browser, self.server, self.out = browser, server, out
        self.cookies: dict[str, str] = {}
        self.errors: list[str] = []

    def context(self, username: str, **options):
        """A browser context logged in as `username` (a `sessionid` made by manage.py, no password)."""
        if username not in self.cookies:
            self.cookies[username] = self.server.login_cookie(username)
        context = self.browser.new_context(**{"viewport": VIEWPORT, "color_scheme": "light", **options})
        context.add_cookies([{"name": "sessionid", "value": self.cookies[username], "url": self.server.base_url}])
        context.add_init_script(WS_PROBE)
        context.on("weberror", lambda error: self.errors.append(str(error.error)))
        return context

    def save(self, page, name: str) -> None:
        settle(page)
        path = self.out / f"{name}.png"
        page.screenshot(path=path)
        print(path)


def take(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    expect.set_options(timeout=30_000)
    with tempfile.TemporaryDirectory(prefix="harness-shots-") as tmp:
        server = demo_server(Path(tmp))
        alice = Api(server.base_url, server.create_token("alice"))  # (creates the user)
        bob = Api(server.base_url, server.create_token("bob"))
        server.start(timeout=60)
        try:
            with sync_playwright() as driver:
                browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                try:
                    _take_all(Shots(browser, server, out), server.base_url, alice, bob)
                finally:
                    browser.close()
        except Exception:
            print(server.log_tail())
            raise
        finally:
            server.stop()


def _take_all(shots: Shots, base: str, alice: Api, bob: Api) -> None:
    # Bob's sessions, shared with alice: the sidebar's "Shared with me".
    checklist = bob.new_session("Release checklist 2.4")
    wait_run_ends(bob, bob.run_start(checklist, script({"text": "Tagged, changelog written, images pushed."})))
    share(bob, checklist, "alice", "collaborator")
    incident = bob.new_session("Incident review: queue backlog")
    share(bob, incident, "alice", "viewer")

    # Alice's own, oldest first (the sidebar lists the newest first).
    phone_sid = alice.new_session("New CI runners")
    dark_sid = alice.new_session("Migrate the CI pipeline")
    approval_sid = alice.new_session("Clean the build")
    stream_sid = alice.new_session("Fix the failing tests")
    markdown_sid = alice.new_session("Why do the tests fail?")
    idle_sid = alice.new_session("Invoice totals")

    context = shots.context("alice")
    page = context.new_page()
    composer = page.locator("#composer")
    send = composer.locator(".composer-send")

    # idle: an exchange with the demo agent's calculator, a draft; bob is here too.
    share(alice, idle_sid, "bob", "collaborator")
    open_session(page, base, idle_sid)
    page.get_by_label("Message").fill("What is 1280 * 12 + 350?")
    page.get_by_label("Message").press("Enter")
    expect(page.locator("#run-status .state")).to_have_text("Completed")
    expect(page.locator("#transcript .msg-assistant").last).to_contain_text("The answer is")
    bob_context = shots.context("bob")
    bob_page = bob_context.new_page()
    open_session(bob_page, base, idle_sid)
    expect(page.locator("#presence")).to_contain_text("bob")
    page.get_by_label("Message").fill("And what time is it now?")
    scroll_to(page, page.locator(".session-head"))  # the head: title, model, "Here now", Share, exports, Tools
    shots.save(page, "idle")
    bob_context.close()

    # markdown: a finished answer, rendered.
    open_session(page, base, markdown_sid)
    page.get_by_label("Message").fill(script({"text": SHORT_ANSWER, "delay_ms": 2}))
    page.get_by_label("Message").press("Enter")
    expect(page.locator("#run-status .state")).to_have_text("Completed")
    expect(page.get_by_role("button", name="Regenerate")).to_be_visible()
    show_question(page, "Why do test_create and test_list pass alone but fail when run together?")
    page.get_by_label("Message").blur()
    scroll_to(page, page.locator("#transcript .msg-user .msg-text").last)
    shots.save(page, "markdown")

    # streaming, then stopping (the stop request held back at the route), then stopped with the receipt.
    open_session(page, base, stream_sid)
    page.get_by_label("Message").fill(STREAM)
    page.get_by_label("Message").press("Enter")
    wait_streaming(page, 420)
    question = "The CI run of tests/test_db.py fails but it passes locally. Can you find out why and fix it?"
    show_question(page, question)
    expect(send).to_have_text("stop")
    shots.save(page, "streaming")
    held = HeldRequests()
    page.route("**/stop", held)
    send.click()
    expect(send).to_have_text("stopping…")
    held.wait(page)
    shots.save(page, "stopping")
    held.release()
    page.unroute("**/stop")
    expect(composer).to_have_attribute("data-mode", "idle")
    expect(page.locator("#run-status .state")).to_have_text("Stopped")
    show_question(page, question)
    page.locator("#run-status").get_by_role("button", name="receipt").click()
    expect(page.locator("#receipt .receipt")).to_be_visible()
    shots.save(page, "stopped-receipt")

    # approval: a log uploaded (the Files panel), then the model asks to run a shell command.
    upload(alice, approval_sid, "build-errors.log", b"".join(
        f"ld: warning: object file build/obj/module{n:03d}.o was built for an older toolchain\n".encode()
        for n in range(120)))
    open_session(page, base, approval_sid)
    expect(page.locator("#files").get_by_role("link", name="build-errors.log")).to_be_visible()
    run_id = alice.run_start(approval_sid, shell_script(
        "rm -rf build/ && make -j4", {"text": "Done: the build is clean."},
        text="The build directory has stale objects from the old toolchain; I will remove it and rebuild."))
    expect(page.locator("#approvals .approval").get_by_role("button", name="Approve")).to_be_visible()
    show_question(page, "The build picks up stale objects after the toolchain upgrade. Clean it and rebuild.")
    shots.save(page, "approval")
    alice.stop(approval_sid)
    wait_run_ends(alice, run_id)
    context.close()

    # dark and phone: a run streaming.
    for name, sid, options, question in (
        ("dark", dark_sid, {"color_scheme": "dark"}, "Plan the move of our CI to the new runners."),
        ("phone", phone_sid, {"viewport": PHONE, "is_mobile": True, "has_touch": True},
         "How do we move our CI to the new runners?"),
    ):
        themed = shots.context("alice", **options)
        shot = themed.new_page()
        open_session(shot, base, sid)
        shot.get_by_label("Message").fill(PLAN_STREAM)
        shot.get_by_label("Message").press("Enter")
        wait_streaming(shot, 300)
        show_question(shot, question)
        scroll_to(shot)  # the head (on the phone, the collapsed sidebar's button too)
        shots.save(shot, name)
        alice.stop(sid)
        themed.close()

    if shots.errors:
        print("uncaught errors in the pages:", *shots.errors, sep="\n  ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"where the PNGs go (default: {OUT})")
    take(parser.parse_args().out)


if __name__ == "__main__":
    main()
