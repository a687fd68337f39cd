"""The end-to-end suite's machinery: the real one-process server (`manage.py serve`, devtools.serve) as a
subprocess, the JSON API as a second client (devtools.api), Chromium's launch options, and small page helpers.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from devtools.api import Api  # noqa: F401  (the tests' second client, imported from here)
from devtools.serve import Serve
from devtools.servers import UNLIMITED_RUNS, sandbox_reachable_dir

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1100, "height": 800}
PHONE = {"width": 390, "height": 844}

USERNAME = "alice"
PASSWORD = "alice-e2e-password-1"

# Scripts for the scripted model (see orchestrator/providers/scripted.py).
SHORT_STREAM = 'script:{"turns":[{"words":400,"delay_ms":10}]}'
LONG_STREAM = 'script:{"turns":[{"words":3000,"delay_ms":10}]}'  # ~30 s: always stopped before it ends

# Listeners the tests install in every page before its scripts run: how many times the page's WebSocket
# opened, closed (with which codes) and delivered a message. The product has no DOM hook for "connected"
# (only the "reconnecting…" mark), and tests must know the snapshot has been applied before they act.
WS_PROBE = """
window.__e2e = {opens: 0, closes: [], messages: 0};
document.addEventListener("htmx:wsOpen", () => { window.__e2e.opens += 1; });
document.addEventListener("htmx:wsClose", (e) => { window.__e2e.closes.push(e.detail.event.code); });
document.addEventListener("htmx:wsAfterMessage", () => { window.__e2e.messages += 1; });
"""


def chromium_path() -> str:
    if not os.path.exists(CHROMIUM):
        raise RuntimeError(
            f"{CHROMIUM} is missing: the end-to-end tests drive Debian's Chromium. Install it with "
            "`apt-get install chromium` (.ci/run does this on CI). Never `playwright install`."
        )
    return CHROMIUM


def launch(playwright):
    return playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)


class HarnessServer(Serve):
    """`manage.py serve 127.0.0.1:PORT` on its own SQLite database and workspace root. Restartable on the
    same port and database (start → crash → start)."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "DATABASE_URL": f"sqlite:///{self.directory / 'e2e.sqlite3'}",
            "HARNESS_WORKSPACE_ROOT": str(sandbox_reachable_dir("harness-e2e-workspaces-")),
            "HARNESS_VAR_DIR": str(self.directory / "var"),
            "HARNESS_LEASE_TTL_SECONDS": "2",
            **UNLIMITED_RUNS,
            "HARNESS_RECOVERY_INTERVAL_SECONDS": "0.5",
            "HARNESS_MODELS": "scripted:second",  # a second model to choose in the page
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("DJANGO_SETTINGS_MODULE", None)  # manage.py's default, not pytest-django's
        env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        super().__init__(env, self.directory / "serve.log", port)

    def create_user(self, username: str, password: str) -> None:
        self.manage(
            "shell", "-c",
            "from django.contrib.auth import get_user_model; "
            f"get_user_model().objects.create_user(username={username!r}, password={password!r})",
        )

    def add_messages(self, session_id: str, count: int) -> None:
        """A long history in the session, written straight to the server's database (tests.factories)."""
        self.manage(
            "shell", "-c",
            "from orchestrator.models import Session; from tests.factories import add_messages; "
            f"add_messages(Session.objects.get(pk={session_id!r}), {count})",
        )


@contextmanager
def started_server(directory: Path, **env: str) -> Iterator[HarnessServer]:
    """A HarnessServer in `directory` (with these extra environment variables), migrated, with USERNAME and
    her API token (`.token`), started; stopped at the end."""
    instance = HarnessServer(directory)
    instance.env.update(env)
    instance.migrate()
    instance.create_user(USERNAME, PASSWORD)
    instance.token = instance.create_token(USERNAME)
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


@contextmanager
def logged_in_page(browser, server: HarnessServer) -> Iterator[tuple[Any, Api]]:
    """A page of a new browser context (WS_PROBE installed) logged in to `server` (e.g. a `started_server`) as
    USERNAME through the form, and her API client; the context is closed at the end."""
    context = browser.new_context(viewport=VIEWPORT)
    context.add_init_script(WS_PROBE)
    try:
        page = context.new_page()
        login(page, server.base_url, USERNAME, PASSWORD)
        yield page, Api(server.base_url, server.token)
    finally:
        context.close()


# --- page helpers ------------------------------------------------------------------------------------------
def login(page, base_url: str, username: str, password: str) -> None:
    """Log in through the real form and land on the home page."""
    page.goto(f"{base_url}/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base_url}/")
    page.get_by_role("button", name="New session").wait_for()


def wait_connected(page, timeout: float = 15_000) -> None:
    """Until the page's WebSocket is open and its first message (the snapshot) has been swapped in."""
    page.wait_for_function("window.__e2e && window.__e2e.opens >= 1 && window.__e2e.messages >= 1", timeout=timeout)


def open_session(page, base_url: str, session_id: str) -> None:
    page.goto(f"{base_url}/sessions/{session_id}/")
    wait_connected(page)


def session_id_from_url(url: str) -> str:
    match = re.search(r"/sessions/([0-9a-f-]{36})/", url)
    assert match, url
    return match.group(1)


class HeldRoutes:
    """A route handler that holds every matching request until release(): the page sees no answer (and the
    server no request) until the test says so."""

    def __init__(self) -> None:
        self.routes = []
        self.arrived_at: list[float] = []

    def __call__(self, route) -> None:
        self.arrived_at.append(time.monotonic())
        self.routes.append(route)

    def wait(self, page, count: int = 1, timeout: float = 10.0) -> None:
        # The route callback runs when Playwright dispatches it, i.e. during any call into the driver; each
        # wait_for_timeout below is such a call (a bounded poll on a Python-side condition, not a sleep that
        # hopes something happened).
        deadline = time.monotonic() + timeout
        while len(self.routes) < count:
            assert time.monotonic() < deadline, f"{count} request(s) expected at the held route"
            page.wait_for_timeout(10)

    def release(self) -> None:
        while self.routes:
            self.routes.pop(0).continue_()
