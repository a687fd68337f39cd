"""`manage.py serve`, the one-process server (Daphne with the worker inside), on 127.0.0.1 and a free port."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from .api import answers
from .process import MANAGE, ServerProcess, login_cookie, manage
from .servers import free_port


class Serve(ServerProcess):
    """`manage.py serve 127.0.0.1:PORT` with the environment given (its database, workspace root, models).
    Restartable on the same port (start → crash → start)."""

    def __init__(self, env: dict, log_path: Path | None, port: int | None = None,
                 preexec_fn: Callable[[], object] | None = None) -> None:
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        super().__init__([sys.executable, str(MANAGE), "serve", f"127.0.0.1:{self.port}"], env, log_path, preexec_fn)

    def manage(self, *args: str) -> str:
        return manage(self.env, *args, timeout=120)

    def migrate(self) -> None:
        self.manage("migrate", "--noinput", "-v", "0")

    def create_token(self, username: str) -> str:
        token = self.manage("create_api_token", username).strip().splitlines()[-1].strip()
        assert token.startswith("hk_"), token
        return token

    def login_cookie(self, username: str) -> str:
        """A logged-in portal session for `username` (no password needed): the `sessionid` cookie's value."""
        return login_cookie(self.env, username)

    def start(self, timeout: float = 30) -> float:  # type: ignore[override]
        """Start and wait until the portal answers; the seconds that took."""
        super().start()
        return self.wait_ready(lambda: answers(f"{self.base_url}/login/"), timeout)

    def ws_url(self, session_id: str) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/api/sessions/{session_id}/"

    def portal_ws_url(self, session_id: str) -> str:
        """The session page's own socket (HTML fragments; a `sessionid` cookie and our Origin)."""
        return f"ws://127.0.0.1:{self.port}/ws/sessions/{session_id}/"
