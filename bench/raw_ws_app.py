"""A bare ASGI WebSocket app: the baseline for bench/stream_fanout.py (raw Daphne sends, no Django/Channels).

Serve it with `python -m daphne -b 127.0.0.1 -p PORT bench.raw_ws_app:application` (cwd: the project root).

On `websocket.connect` it accepts, then pushes `n` text frames of about `size` bytes each, read from the query
string (`ws://HOST:PORT/?n=1000&size=300&interval_ms=0`):

- every frame is JSON `{"t": <time.time() at send>, "i": <index>, "pad": "xxx…"}`, padded so that the whole
  frame is `size` bytes (never less than the bare envelope);
- `interval_ms=0` (default): as fast as possible, yielding to the event loop between frames so that all
  connections progress together; `interval_ms>0`: paced at one frame per interval (drift-compensated, with a
  random phase per connection, as independent streams would be);
- `n=0`: send nothing and keep the socket open (an idle connection).

After the last frame the socket stays open until the client closes it. Any other scope gets a bare 404.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from urllib.parse import parse_qs

_ENVELOPE = len(json.dumps({"t": time.time(), "i": 0, "pad": ""}))


def _param(query: dict, name: str, default: float) -> float:
    try:
        return float(query.get(name, [default])[0])
    except (TypeError, ValueError):
        return default


async def application(scope, receive, send):
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 404, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"not found"})
        return
    if scope["type"] != "websocket":
        return
    query = parse_qs(scope.get("query_string", b"").decode())
    count = int(_param(query, "n", 1000))
    size = int(_param(query, "size", 200))
    interval = _param(query, "interval_ms", 0) / 1000
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})

    closed = asyncio.Event()

    async def watch() -> None:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                closed.set()
                return

    watcher = asyncio.ensure_future(watch())
    pad = "x" * max(0, size - _ENVELOPE - len(str(count)))
    try:
        start = time.monotonic() + (random.uniform(0, interval) if interval else 0)
        for index in range(count):
            if closed.is_set():
                break
            if interval:
                delay = start + index * interval - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                else:
                    await asyncio.sleep(0)
            else:
                await asyncio.sleep(0)  # let the other connections (and the reactor's writes) in
            await send({"type": "websocket.send", "text": json.dumps({"t": time.time(), "i": index, "pad": pad})})
        await closed.wait()
    finally:
        watcher.cancel()
