"""`manage.py serve` as users run it: one real Daphne process with the worker inside, over real sockets."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.servers import sandbox_reachable_dir

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def manage(env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120, check=check)


@pytest.fixture
def served(tmp_path):
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'serve.sqlite3'}",
           "HARNESS_WORKSPACE_ROOT": str(sandbox_reachable_dir("harness-serve-ws-"))}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    manage(env, "migrate", "--noinput")
    token = manage(env, "create_api_token", "carol").stdout.strip()
    port = free_port()
    process = subprocess.Popen([sys.executable, "manage.py", "serve", f"127.0.0.1:{port}"], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"serve did not start: {process.stdout.read()}") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}", token
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def call(base: str, token: str, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(
        base + path, method=method, data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def poll(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while (value := predicate()) is None or value is False:
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
    return value


def test_a_run_started_and_stopped_over_http_on_the_one_process_server(served):
    base, token = served
    status, session = call(base, token, "POST", "/api/sessions", {"title": "over the wire"})
    assert status == 201
    sid = session["id"]
    long_answer = 'script:{"turns": [{"words": 5000, "delay_ms": 5}]}'
    status, started = call(base, token, "POST", f"/api/sessions/{sid}/runs", {"text": long_answer})
    assert status == 201 and started["state"] == "provisioning"
    assert call(base, token, "POST", f"/api/sessions/{sid}/runs", {"text": "again"})[0] == 409

    def streaming_text():
        messages = call(base, token, "GET", f"/api/sessions/{sid}")[1]["messages"]
        return len(messages) > 1 and messages[-1]["text"]

    poll(streaming_text)
    status, stopped = call(base, token, "POST", f"/api/sessions/{sid}/stop", {"run_id": started["run_id"]})
    assert status == 200 and stopped["accepted"] is True and stopped["reason"] is None
    run = poll(lambda: (r := call(base, token, "GET", f"/api/runs/{started['run_id']}")[1])["state"] == "stopped" and r,
               timeout=5)
    assert run["outcome"] == "stopped" and run["stop"]["latency_ms"] is not None
    final = call(base, token, "GET", f"/api/sessions/{sid}")[1]["messages"][-1]
    assert final["status"] == "stopped" and 0 < len(final["text"].split()) < 5000
    again = call(base, token, "POST", f"/api/sessions/{sid}/stop", {})[1]
    assert (again["accepted"], again["reason"]) == (False, "already_stopped")

    # The same session goes on with a fresh run (the demo agent and its calculator tool).
    status, second = call(base, token, "POST", f"/api/sessions/{sid}/runs", {"text": "what is 6 * 7?"})
    assert status == 201
    done = poll(lambda: (r := call(base, token, "GET", f"/api/runs/{second['run_id']}")[1])["state"] == "completed" and r)
    assert done["function_calls"][0]["result"] == "42"


def test_serve_rejects_a_bad_address_and_an_unknown_model_clearly(tmp_path):
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'x.sqlite3'}"}
    bad_address = manage(env, "serve", "nowhere", check=False)
    assert bad_address.returncode != 0 and "is not ADDR:PORT" in bad_address.stderr
    bad_model = manage({**env, "HARNESS_MODEL": "gpt-nine"}, "serve", f"127.0.0.1:{free_port()}", check=False)
    assert bad_model.returncode != 0 and "'gpt-nine' is not a known model kind" in bad_model.stderr
