"""Server subprocesses: `manage.py` commands, and a long-running server (`manage.py serve`, Daphne, a worker)
with its output in a log file, started, waited for until it answers, and stopped the way an operator would
(SIGINT, then SIGKILL if it lingers)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from .waiting import wait_for

ROOT = Path(__file__).resolve().parent.parent
MANAGE = ROOT / "manage.py"


def run_manage(env: dict, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """A `manage.py` command, its output captured; the caller judges the exit status."""
    return subprocess.run([sys.executable, str(MANAGE), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def manage(env: dict, *args: str, timeout: float = 300) -> str:
    """A `manage.py` command's output; RuntimeError (with its output) when it fails."""
    done = run_manage(env, *args, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


def login_cookie(env: dict, username: str) -> str:
    """A logged-in portal session for `username` (no password needed) in the deployment `env` names: the
    `sessionid` cookie's value."""
    code = (
        "from django.contrib.auth import get_user_model, login; from django.test import RequestFactory; "
        "from importlib import import_module; from django.conf import settings; "
        "request = RequestFactory().get('/'); "
        "request.session = import_module(settings.SESSION_ENGINE).SessionStore(); "
        f"login(request, get_user_model().objects.get(username={username!r}), "
        "backend='django.contrib.auth.backends.ModelBackend'); request.session.save(); "
        "print(request.session.session_key)"
    )
    return manage(env, "shell", "-c", code, timeout=120).strip().splitlines()[-1]


def stop_process(process: subprocess.Popen, sig: int = signal.SIGINT, grace: float = 10.0) -> None:
    """Send `sig` (SIGINT: a clean shutdown), and SIGKILL if the process is still there after `grace`."""
    if process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class ServerProcess:
    """One server subprocess of the repository, its output appended to `log_path` (or dropped when None).

    Restartable: start() after stop() or crash() runs the same command again, with the same log.
    """

    def __init__(self, command: list[str], env: dict, log_path: Path | None = None,
                 preexec_fn: Callable[[], object] | None = None) -> None:
        self.command, self.env, self.log_path, self.preexec_fn = command, env, log_path, preexec_fn
        self.process: subprocess.Popen | None = None
        self._log: IO[str] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    def start(self) -> ServerProcess:
        assert self.process is None or self.process.poll() is not None, "already running"
        if self.log_path is not None:
            self._log = open(self.log_path, "a", buffering=1)  # noqa: SIM115 - closed in stop()/crash()
            self._log.write(f"\n--- start {time.strftime('%H:%M:%S')}: {' '.join(self.command[1:])}\n")
        output = self._log if self._log is not None else subprocess.DEVNULL
        self.process = subprocess.Popen(self.command, cwd=ROOT, env=self.env, stdout=output, stderr=subprocess.STDOUT,
                                        preexec_fn=self.preexec_fn)
        return self

    def wait_ready(self, ready: Callable[[], bool], timeout: float = 30.0) -> float:
        """Poll `ready` (start-up polling, until the server answers); the seconds it took. RuntimeError, with
        the log's tail, when the process exits first or does not answer in time (then it is killed)."""
        started = time.monotonic()

        def answering() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.command[1:3]} exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                return ready()
            except OSError:  # not listening yet (URLError and ConnectionError are OSErrors)
                return False

        try:
            wait_for(answering, timeout, what=f"{' '.join(self.command[1:3])} to answer")
        except TimeoutError as error:
            self.crash()
            raise RuntimeError(f"{error}:\n{self.log_tail()}") from None
        return time.monotonic() - started

    def stop(self, sig: int = signal.SIGINT) -> None:
        """Graceful: `sig` (SIGINT), then SIGKILL if it lingers."""
        if self.process is not None:
            stop_process(self.process, sig)
        self._close_log()

    def crash(self) -> None:
        """SIGKILL: a crash, as far as clients and the database can tell."""
        self.stop(signal.SIGKILL)

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 60) -> str:
        return tail(self.log_path, lines) if self.log_path is not None else "(no log)"
