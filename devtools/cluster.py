"""A scaled-out deployment on this machine: Daphne web processes and `manage.py runworker orchestrator`
workers on a PostgreSQL database and a Redis channel layer, all on 127.0.0.1. Used by tests/scaleout and
bench/scaleout.py, which talk to it only as clients do (HTTP, WebSocket) plus read-only SQL for what clients
cannot see (which worker holds a lease).
"""

from __future__ import annotations

import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from .api import call
from .process import MANAGE, ServerProcess, stop_process
from .servers import RedisServer, free_port, port_open
from .waiting import wait_for

TERMINAL = ("completed", "stopped", "failed")


@dataclass
class Cluster:
    env: dict
    database_url: str
    redis: RedisServer
    token: str
    log_dir: Path | None = None  # each process's output in <log_dir>/<name>.log; dropped when None
    worker_command: list[str] = field(default_factory=lambda: [sys.executable, str(MANAGE), "runworker",
                                                               "orchestrator"])
    worker_timeout: float = 30.0  # until a new worker's heartbeat is in the database
    web: dict[str, tuple[int, subprocess.Popen]] = field(default_factory=dict)
    workers: list[subprocess.Popen] = field(default_factory=list)
    spawned: int = 0  # workers ever started (their log names)

    # --- processes ------------------------------------------------------------------------------------------

    def _start(self, name: str, command: list[str]) -> ServerProcess:
        log = self.log_dir / f"{name}.log" if self.log_dir is not None else None
        return ServerProcess(command, self.env, log).start()

    def start_web(self, name: str, *, module: str = "daphne") -> int:
        port = free_port()
        server = self._start(f"web-{name}", [sys.executable, "-m", module, "-b", "127.0.0.1", "-p", str(port),
                                             "--websocket_timeout", "-1", "--websocket-max-message-size", "4194304",
                                             "--websocket-max-frame-size", "4194304", "harness.asgi_server:application"])
        self.web[name] = (port, server.process)  # before waiting: stop_all() must find it even if it never listens
        server.wait_ready(lambda: port_open(port))
        return port

    def start_worker(self) -> subprocess.Popen:
        self.spawned += 1
        server = self._start(f"worker-{self.spawned}", self.worker_command)
        self.workers.append(server.process)

        def joined() -> bool:  # up: it has joined (heartbeat in the database)
            if server.process.poll() is not None:
                raise RuntimeError(f"worker {server.pid} exited at start-up ({server.process.returncode})")
            return self.heartbeat_of(server.pid)

        wait_for(joined, self.worker_timeout, what=f"worker {server.pid}'s heartbeat")
        return server.process

    def kill_worker(self, pid: int) -> None:
        process = next(p for p in self.workers if p.pid == pid)
        process.send_signal(signal.SIGKILL)
        process.wait()
        self.workers.remove(process)

    def stop_worker(self, process: subprocess.Popen) -> None:
        """Graceful (SIGINT): what a deploy does; its executors release their leases."""
        stop_process(process)
        self.workers.remove(process)

    def stop_all(self) -> None:
        for process in self.workers:
            stop_process(process)
        for _, process in self.web.values():
            stop_process(process)

    # --- what clients see -----------------------------------------------------------------------------------

    def url(self, web: str, path: str) -> str:
        return f"http://127.0.0.1:{self.web[web][0]}{path}"

    def ws_url(self, web: str, session_id: str) -> str:
        return f"ws://127.0.0.1:{self.web[web][0]}/ws/api/sessions/{session_id}/"

    def portal_ws_url(self, web: str, session_id: str) -> str:
        """The session page's own socket on web process `web` (a `sessionid` cookie and our Origin)."""
        return f"ws://127.0.0.1:{self.web[web][0]}/ws/sessions/{session_id}/"

    def call(self, web: str, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        return call(self.url(web, ""), self.token, method, path, body)

    def new_session(self, web: str = "a") -> str:
        status, body = self.call(web, "POST", "/api/sessions", {})
        assert status == 201, body
        return body["id"]

    def run_start(self, web: str, session_id: str, text: str) -> str:
        status, body = self.call(web, "POST", f"/api/sessions/{session_id}/runs", {"text": text})
        assert status == 201, body
        return body["run_id"]

    def run(self, run_id: str, web: str = "a") -> dict:
        status, body = self.call(web, "GET", f"/api/runs/{run_id}")
        assert status == 200, body
        return body

    def wait_run(self, run_id: str, predicate, *, timeout: float = 20.0, what: str = "condition") -> dict:
        def met() -> dict | None:
            run = self.run(run_id)
            return run if predicate(run) else None

        return wait_for(met, timeout, what=f"run {run_id}: {what}", error=AssertionError)

    def wait_terminal(self, run_id: str, *, timeout: float = 20.0) -> dict:
        return self.wait_run(run_id, lambda r: r["state"] in TERMINAL, timeout=timeout, what="a terminal state")

    # --- what only the database knows -------------------------------------------------------------------

    def sql(self, query: str, *params) -> list[tuple]:
        with psycopg.connect(self.database_url, autocommit=True) as connection:
            return connection.execute(query, params).fetchall()

    def heartbeat_of(self, pid: int) -> bool:
        return bool(self.sql("SELECT 1 FROM orchestrator_workerheartbeat WHERE executor_id LIKE %s", f"%:{pid}:%"))

    def executor_pid(self, run_id: str) -> int | None:
        rows = self.sql("SELECT executor_id FROM orchestrator_run WHERE id = %s", run_id)
        owner = rows[0][0] if rows else ""
        return int(owner.split(":")[1]) if owner else None

