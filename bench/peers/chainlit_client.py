"""The Chainlit peer's client for bench/first_token.py, run in the peer's venv (it needs python-socketio):
connects to a running Chainlit app the way Chainlit's own frontend does and times send → first streamed token.

What the frontend does (chainlit 2.12, verified against chainlit/socket.py and the built frontend): a
socket.io connection on path `/ws/socket.io` whose `auth` is {clientType, sessionId, threadId, userEnv,
chatProfile}; on connect it emits `connection_successful` (the server answers with `task_end`); a message is
`client_message` {message: {threadId, id (uuid4), name, type: "user_message", output, createdAt, metadata},
fileReferences}; the answer's first token arrives as `stream_start` (the step, its `output` holding that
token), the following ones as `stream_token` {id, token}; `task_end` ends the turn. This client uses the
websocket transport from the start (the frontend's default starts with polling and upgrades; an
already-open socket is the upgraded one).

It speaks JSON lines with the benchmark: it prints {"event": "ready", …}; each {"cmd": "trial", "text": …}
on stdin runs one trial on a new connection (a new Chainlit session: opened, and `task_end` seen, before
the clock starts) and prints its result; {"cmd": "quit"} ends it.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import sys
import time
import uuid
from importlib.metadata import version

import socketio


def say(**fields) -> None:
    print(json.dumps(fields), flush=True)


class Trial:
    def __init__(self, url: str, timeout: float) -> None:
        self.url, self.timeout = url, timeout
        self.client = socketio.AsyncClient(reconnection=False)
        self.task_ends = 0
        self.task_end = asyncio.Event()
        self.first_token = asyncio.Event()
        self.first_token_at: tuple[float, float] | None = None  # (perf_counter, time.time())
        self.first_event = ""
        self.tokens = 0
        for name in ("stream_start", "stream_token", "task_end"):
            self.client.on(name, getattr(self, f"on_{name}"))

    def _token(self, event: str, text: str) -> None:
        if text:
            self.tokens += 1
            if self.first_token_at is None:
                self.first_token_at = (time.perf_counter(), time.time())
                self.first_event = event
                self.first_token.set()

    async def on_stream_start(self, step: dict) -> None:
        if step.get("type") == "assistant_message":
            self._token("stream_start", step.get("output") or "")

    async def on_stream_token(self, data: dict) -> None:
        if not data.get("isInput"):
            self._token("stream_token", data.get("token") or "")

    async def on_task_end(self, _data) -> None:
        self.task_ends += 1
        self.task_end.set()

    async def _wait(self, event: asyncio.Event, what: str) -> None:
        try:
            await asyncio.wait_for(event.wait(), self.timeout)
        except TimeoutError:
            raise RuntimeError(f"no {what} within {self.timeout:g} s") from None

    async def run(self, text: str) -> dict:
        auth = {"clientType": "webapp", "sessionId": str(uuid.uuid4()), "threadId": "", "userEnv": "{}",
                "chatProfile": ""}
        await self.client.connect(self.url, socketio_path="/ws/socket.io", transports=["websocket"], auth=auth,
                                  wait_timeout=self.timeout)
        try:
            await self.client.emit("connection_successful")
            await self._wait(self.task_end, "task_end after connection_successful")
            self.task_end.clear()
            message = {"threadId": "", "id": str(uuid.uuid4()), "name": "User", "type": "user_message",
                       "output": text, "createdAt": datetime.datetime.now(datetime.UTC).isoformat(),
                       "metadata": {"location": self.url + "/"}}
            sent_at = time.time()
            started = time.perf_counter()
            await self.client.emit("client_message", {"message": message, "fileReferences": []})
            await self._wait(self.first_token, "streamed token")
            await self._wait(self.task_end, "task_end after the answer")
            first_perf, first_wall = self.first_token_at
            return {"first_token_ms": round((first_perf - started) * 1000, 3), "sent_at": sent_at,
                    "first_token_at": first_wall, "first_event": self.first_event, "tokens": self.tokens}
        finally:
            await self.client.disconnect()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="the Chainlit app, http://127.0.0.1:PORT")
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()
    # The versions: the protocol above is checked against chainlit 2.12.
    say(event="ready", chainlit=version("chainlit"), socketio=version("python-socketio"))
    loop = asyncio.get_running_loop()
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        command = json.loads(line)
        if command["cmd"] == "quit":
            break
        try:
            say(event="trial", **await Trial(args.url, args.timeout).run(command["text"]))
        except Exception as exc:  # noqa: BLE001 - reported to the benchmark as this trial's failure
            say(event="trial", error=f"{type(exc).__name__}: {exc}")


if __name__ == "__main__":
    asyncio.run(main())
