"""The end-to-end suite's machinery: the real one-process server (`manage.py serve`) as a subprocess, the
JSON API as a second client, Chromium's launch options, and small page helpers.

Also used by docs/screenshots/take.py, so it imports nothing from pytest.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.servers import sandbox_reachable_dir

ROOT = Path(__file__).resolve().parents[2]
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class HarnessServer:
    """`manage.py serve 127.0.0.1:PORT` on its own SQLite database and workspace root. Restartable on the
    same port and database (start → crash → start)."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.directory / "serve.log"
        self.process: subprocess.Popen | None = None
        self._log = None
        self.env = {
            **os.environ,
            "DATABASE_URL": f"sqlite:///{self.directory / 'e2e.sqlite3'}",
            "HARNESS_WORKSPACE_ROOT": str(sandbox_reachable_dir("harness-e2e-workspaces-")),
            "HARNESS_VAR_DIR": str(self.directory / "var"),
            "HARNESS_LEASE_TTL_SECONDS": "2",
            "HARNESS_RECOVERY_INTERVAL_SECONDS": "0.5",
            "HARNESS_MODELS": "scripted:second",  # a second model to choose in the page
            "PYTHONUNBUFFERED": "1",
        }
        self.env.pop("DJANGO_SETTINGS_MODULE", None)  # manage.py's default, not pytest-django's
        self.env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)

    # --- management commands ----------------------------------------------------------------------------
    def manage(self, *args: str) -> str:
        done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True,
                              text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def migrate(self) -> None:
        self.manage("migrate", "--noinput")

    def create_user(self, username: str, password: str) -> None:
        self.manage(
            "shell", "-c",
            "from django.contrib.auth import get_user_model; "
            f"get_user_model().objects.create_user(username={username!r}, password={password!r})",
        )

    def create_token(self, username: str) -> str:
        token = self.manage("create_api_token", username).strip()
        assert token.startswith("hk_"), token
        return token

    # --- the process ---------------------------------------------------------------------------------------
    def start(self, timeout: float = 30) -> None:
        assert self.process is None or self.process.poll() is not None, "already running"
        self._log = open(self.log_path, "a", buffering=1)  # noqa: SIM115 - closed in stop()/crash()
        self._log.write(f"\n--- start {time.strftime('%H:%M:%S')} on port {self.port}\n")
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "serve", f"127.0.0.1:{self.port}"], cwd=ROOT, env=self.env,
            stdout=self._log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while True:  # start-up polling (not test synchronisation): until the portal answers
            if self.process.poll() is not None:
                raise RuntimeError(f"serve exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/login/", timeout=2) as response:
                    if response.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                self.crash()
                raise RuntimeError(f"serve did not answer within {timeout} s:\n{self.log_tail()}")
            time.sleep(0.05)

    def stop(self) -> None:
        """Graceful: SIGINT, then SIGKILL if it lingers."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._close_log()

    def crash(self) -> None:
        """SIGKILL: a crash, as far as clients and the database can tell."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class Api:
    """The JSON HTTP API with a bearer token: the "other client" of the tests."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url
        self.token = token

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        request = urllib.request.Request(
            self.base_url + path, method=method, data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=15) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")

    def ok(self, method: str, path: str, body: dict | None = None) -> dict:
        status, data = self.call(method, path, body)
        assert 200 <= status < 300, f"{method} {path} → {status} {data}"
        return data

    def new_session(self, title: str = "e2e") -> str:
        return self.ok("POST", "/api/sessions", {"title": title})["id"]

    def run_start(self, session_id: str, text: str) -> str:
        return self.ok("POST", f"/api/sessions/{session_id}/runs", {"text": text})["run_id"]

    def stop(self, session_id: str) -> dict:
        return self.ok("POST", f"/api/sessions/{session_id}/stop", {})

    def session(self, session_id: str) -> dict:
        return self.ok("GET", f"/api/sessions/{session_id}")

    def run(self, run_id: str) -> dict:
        return self.ok("GET", f"/api/runs/{run_id}")

    def messages(self, session_id: str, role: str | None = None) -> list[dict]:
        return [m for m in self.session(session_id)["messages"] if role is None or m["role"] == role]


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
