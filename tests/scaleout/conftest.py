"""A real scaled-out deployment on this machine: PostgreSQL + Redis (throwaway), 2 Daphne web processes and
2 `manage.py runworker orchestrator` processes, all on 127.0.0.1, started and stopped by these fixtures.

The tests talk to it only as clients do (HTTP, WebSocket) plus read-only SQL for what clients cannot see
(which worker holds a lease).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from tests.servers import PostgresServer, RedisServer, free_port, sandbox_reachable_dir, wait_for_port

ROOT = Path(__file__).resolve().parents[2]


def _stop(process: subprocess.Popen, sig: int = signal.SIGINT) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class Cluster:
    env: dict
    database_url: str
    redis: RedisServer
    token: str
    web: dict[str, tuple[int, subprocess.Popen]] = field(default_factory=dict)
    workers: list[subprocess.Popen] = field(default_factory=list)

    # --- processes ------------------------------------------------------------------------------------------

    def start_web(self, name: str, *, module: str = "daphne") -> int:
        port = free_port()
        command = [sys.executable, "-m", module, "-b", "127.0.0.1", "-p", str(port), "--websocket_timeout", "-1",
                   "harness.asgi:application"]
        process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        wait_for_port(port, process=process)
        self.web[name] = (port, process)
        return port

    def start_worker(self) -> subprocess.Popen:
        process = subprocess.Popen([sys.executable, "manage.py", "runworker", "orchestrator"], cwd=ROOT,
                                   env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.workers.append(process)
        deadline = time.monotonic() + 30
        while not self.heartbeat_of(process.pid):  # up: it has joined (heartbeat in the database)
            assert process.poll() is None, "the worker exited at start-up"
            assert time.monotonic() < deadline, "the worker never sent a heartbeat"
            time.sleep(0.05)
        return process

    def kill_worker(self, pid: int) -> None:
        process = next(p for p in self.workers if p.pid == pid)
        process.send_signal(signal.SIGKILL)
        process.wait()
        self.workers.remove(process)

    def stop_all(self) -> None:
        for process in self.workers:
            _stop(process)
        for _, process in self.web.values():
            _stop(process)

    # --- what clients see -----------------------------------------------------------------------------------

    def url(self, web: str, path: str) -> str:
        return f"http://127.0.0.1:{self.web[web][0]}{path}"

    def ws_url(self, web: str, session_id: str) -> str:
        return f"ws://127.0.0.1:{self.web[web][0]}/ws/api/sessions/{session_id}/"

    def call(self, web: str, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        request = urllib.request.Request(
            self.url(web, path), method=method, data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=15) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

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
        deadline = time.monotonic() + timeout
        while True:
            run = self.run(run_id)
            if predicate(run):
                return run
            assert time.monotonic() < deadline, f"run {run_id}: timed out waiting for {what}; last: {run['state']}"
            time.sleep(0.05)

    def wait_terminal(self, run_id: str, *, timeout: float = 20.0) -> dict:
        return self.wait_run(run_id, lambda r: r["state"] in ("completed", "stopped", "failed"), timeout=timeout,
                             what="a terminal state")

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


@pytest.fixture(scope="session")
def backing_services():
    postgres = PostgresServer().start()
    redis = RedisServer().start()
    try:
        yield postgres, redis
    finally:
        redis.stop()
        postgres.stop()


@pytest.fixture(scope="module")
def cluster(backing_services, tmp_path_factory):
    postgres, redis = backing_services
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "harness.settings",
        "DATABASE_URL": postgres.url,
        "REDIS_URL": redis.url,
        "HARNESS_WORKSPACE_ROOT": str(sandbox_reachable_dir("harness-scaleout-workspaces-")),
        "HARNESS_EXTRA_TOOLS": "tests.tools.side_effect",
        "HARNESS_LEASE_TTL_SECONDS": "2",
        "HARNESS_RECOVERY_INTERVAL_SECONDS": "0.25",
        "PYTHONPATH": str(ROOT),
    }
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, check=True,
                   capture_output=True, timeout=120)
    token = subprocess.run([sys.executable, "manage.py", "create_api_token", "scale"], cwd=ROOT, env=env,
                           check=True, capture_output=True, text=True, timeout=60).stdout.strip()
    deployment = Cluster(env=env, database_url=postgres.url, redis=redis, token=token)
    try:
        deployment.start_web("a")
        deployment.start_web("b")
        deployment.start_worker()
        deployment.start_worker()
        yield deployment
    finally:
        deployment.stop_all()
