"""Clients of the harness's JSON API as other programs see it: HTTP with a bearer token (one request per
connection, or a keep-alive connection for timing), and a WebSocket watching one session."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from websockets.sync.client import connect as ws_connect


def call(base_url: str, token: str, method: str, path: str, body: dict | None = None,
         timeout: float = 15) -> tuple[int, dict]:
    """One JSON request on a new connection: (status, decoded body), error statuses included."""
    request = urllib.request.Request(
        base_url + path, method=method, data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def answers(url: str) -> bool:
    """Does GET `url` answer 200? (A server's readiness; OSError while it does not listen yet.)"""
    with urllib.request.urlopen(url, timeout=2) as response:
        return response.status == 200


class Api:
    """The JSON HTTP API with a bearer token: the "other client" of the tests."""

    def __init__(self, base_url: str, token: str, timeout: float = 15) -> None:
        self.base_url, self.token, self.timeout = base_url, token, timeout

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        return call(self.base_url, self.token, method, path, body, self.timeout)

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


class KeepAliveClient:
    """JSON over one persistent keep-alive connection per thread, so timings never include a TCP connect.
    With `cookie` (e.g. `sessionid=…`, and token None) it is a logged-in portal browser instead; a body that is
    not JSON (a page) comes back as `{"non_json_body": its first 200 characters}`."""

    def __init__(self, host: str, port: int, token: str | None, timeout: float = 30, *,
                 cookie: str | None = None) -> None:
        self.host, self.port, self.token, self.timeout = host, port, token, timeout
        self.cookie = cookie
        self._local = threading.local()
        self.reconnects = 0

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            conn.connect()
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._local.conn = conn
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
        self._local.conn = None

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict, float, float]:
        """Return (status, json, elapsed_ms, t_received) — elapsed from sending to the body fully read."""
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if self.cookie:
            headers["Cookie"] = self.cookie
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        for attempt in range(2):
            conn = self._connection()
            try:
                started = time.perf_counter()
                conn.request(method, path, body=payload, headers=headers)
                response = conn.getresponse()
                raw = response.read()
                received = time.perf_counter()
            except (http.client.RemoteDisconnected, http.client.BadStatusLine, ConnectionError):
                # The server closed the idle keep-alive connection; reconnect once (and count it).
                self._drop()
                self.reconnects += 1
                if attempt:
                    raise
                continue
            if response.getheader("Connection", "").lower() == "close":
                self._drop()
            try:
                data = json.loads(raw) if raw else {}
            except ValueError:
                data = {"non_json_body": raw[:200].decode(errors="replace")}
            return response.status, data, (received - started) * 1000, received
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._drop()


class SessionSocket:
    """A JSON WebSocket API client on one session (`/ws/api/sessions/<id>/`): its first frame, the snapshot,
    is in `snapshot`."""

    def __init__(self, url: str, token: str, open_timeout: float = 10) -> None:
        self._context = ws_connect(url, additional_headers={"Authorization": f"Bearer {token}"},
                                   open_timeout=open_timeout)
        self.socket = self._context.__enter__()
        self.snapshot = json.loads(self.socket.recv(timeout=10))

    def until(self, predicate: Callable[[dict], bool], *, timeout: float = 20.0) -> list[dict]:
        """Frames received until one meets `predicate` (the last); TimeoutError after `timeout`."""
        received, deadline = [], time.monotonic() + timeout
        while True:
            frame = json.loads(self.socket.recv(timeout=max(0.01, deadline - time.monotonic())))
            received.append(frame)
            if predicate(frame):
                return received

    def close(self) -> None:
        self._context.__exit__(None, None, None)
