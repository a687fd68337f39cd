"""A fake model server on a real socket: HTTP/1.1 on 127.0.0.1, raw asyncio streams, its own loop and thread.

Tests (sync or async) and benchmarks point a real SDK at `server.base_url` and script the server's answers:
each incoming request takes the next queued *behaviour* (FIFO; `server.default` when the queue is empty):

- `SSEStream`: a `text/event-stream` response, one event after another (optionally paced), which then
  ends normally, stalls (the connection stays open, nothing more is sent) or hangs up mid-body.
  Items that are `bytes` are written as they are (garbage, a broken JSON line …).
- `ErrorResponse`: a status code with a JSON (or text) body and headers such as `retry-after`.
- `Hangup`: the connection is closed without any response.

Every request is recorded (`server.requests`: method, path, headers, parsed JSON body) with what became of
its response: completed, or the moment the client disconnected. While a response is being streamed (also
while pausing between events, or stalled) a concurrent read on the socket sees the client's EOF the moment
it arrives, so `disconnected_at` is when the server could have stopped generating — not its next write.

The API-specific event builders live next to this module (`openai_wire.py`, …).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Literal, TypeVar

T = TypeVar("T")

# One SSE event: (event name or None, data). Raw bytes are written to the body untouched.
SSEItem = tuple[str | None, str] | bytes

MAX_HEADER_BYTES = 64 * 1024


@dataclass(frozen=True)
class SSEStream:
    events: tuple[SSEItem, ...] | list[SSEItem] = ()
    delay: float = 0.0  # seconds before each event after the first
    headers_delay: float = 0.0  # seconds before the status line (a server slow to answer at all)
    end: Literal["complete", "stall", "hangup"] = "complete"
    # "chunked": Transfer-Encoding: chunked, keep-alive. "close": no length, the body ends when the server
    # closes the connection (what some OpenAI-compatible servers do).
    framing: Literal["chunked", "close"] = "chunked"
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ErrorResponse:
    status: int
    body: Mapping[str, Any] | str = ""
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Hangup:
    """Read the request, then close the connection without a response."""


Behaviour = SSEStream | ErrorResponse | Hangup

Outcome = Literal["pending", "completed", "disconnected", "stalled", "hung_up", "aborted"]


@dataclass
class RecordedRequest:
    index: int
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    raw_body: bytes
    body: Any  # the parsed JSON body, None when it is not JSON
    received_at: float  # time.time()
    behaviour: Behaviour
    events_sent: int = 0
    # completed: the whole response was sent. disconnected: the client closed first (see disconnected_at).
    # stalled: the response stalled as scripted and the server stopped before the client left.
    outcome: Outcome = "pending"
    disconnected_at: float | None = None  # time.time() the moment the client's EOF (or reset) was read

    @property
    def finished(self) -> bool:
        return self.outcome != "pending"


class _ClientGone(Exception):
    """The client closed the connection while we were responding."""


class WireServer:
    def __init__(self, *, default: Behaviour | None = None) -> None:
        self.default: Behaviour = default or ErrorResponse(
            500, {"error": {"message": "the fake server had no behaviour queued for this request"}}
        )
        self.requests: list[RecordedRequest] = []
        self._queue: deque[Behaviour] = deque()
        self._changed = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self.port = 0

    # -- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> WireServer:
        ready = threading.Event()
        failure: list[BaseException] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, args=(ready, failure), name="wire-server", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            raise failure[0]
        return self

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
        self._thread = self._loop = None

    def __enter__(self) -> WireServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self, ready: threading.Event, failure: list[BaseException]) -> None:
        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        try:
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._on_connection, "127.0.0.1", 0, limit=MAX_HEADER_BYTES)
            )
        except BaseException as exc:  # noqa: BLE001 - handed to start() in the caller's thread
            failure.append(exc)
            ready.set()
            return
        self.port = self._server.sockets[0].getsockname()[1]
        ready.set()
        self._loop.run_forever()

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await self._server.wait_closed()

    # -- scripting and observing (any thread) ------------------------------------------------------------

    def push(self, *behaviours: Behaviour) -> None:
        with self._changed:
            self._queue.extend(behaviours)

    def wait_for(self, predicate: Callable[[], T], timeout: float = 5.0) -> T | None:
        """Block until `predicate()` (evaluated under the server's lock) is truthy; None at the deadline."""
        with self._changed:
            result = self._changed.wait_for(predicate, timeout=timeout)
        return result or None

    async def await_for(self, predicate: Callable[[], T], timeout: float = 5.0) -> T | None:
        """`wait_for` for async callers: blocks a worker thread, never the caller's event loop."""
        return await asyncio.to_thread(self.wait_for, predicate, timeout)

    def wait_request(self, index: int = 0, timeout: float = 5.0) -> RecordedRequest | None:
        """The `index`-th request (0-based) once it has arrived."""
        return self.wait_for(lambda: len(self.requests) > index and self.requests[index], timeout)

    def wait_events_sent(self, count: int, index: int = -1, timeout: float = 5.0) -> RecordedRequest | None:
        """The request (default: the latest) once `count` events of its stream are written to the socket."""
        return self.wait_for(lambda: self._request(index) if self._sent(index) >= count else None, timeout)

    def wait_finished(self, index: int = -1, timeout: float = 5.0) -> RecordedRequest | None:
        """The request (default: the latest) once its response is over, however it ended."""
        return self.wait_for(lambda: (r := self._request(index)) is not None and r.finished and r, timeout)

    def wait_disconnect(self, index: int = -1, timeout: float = 5.0) -> float | None:
        """When (time.time()) the client disconnected from the response to request `index` (default: the
        latest); None if it did not within `timeout` (or the response completed normally)."""
        def seen() -> float | None:
            request = self._request(index)
            return request.disconnected_at if request is not None else None

        return self.wait_for(seen, timeout)

    async def await_disconnect(self, index: int = -1, timeout: float = 5.0) -> float | None:
        return await asyncio.to_thread(self.wait_disconnect, index, timeout)

    def _request(self, index: int) -> RecordedRequest | None:
        try:
            return self.requests[index]
        except IndexError:
            return None

    def _sent(self, index: int) -> int:
        request = self._request(index)
        return request.events_sent if request else 0

    def _update(self, request: RecordedRequest, **changes: Any) -> None:
        with self._changed:
            for name, value in changes.items():
                setattr(request, name, value)
            self._changed.notify_all()

    # -- the HTTP side (server thread) -------------------------------------------------------------------

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            # Keep-alive: SDK clients pool connections, so one connection may carry several requests.
            while await self._exchange(reader, writer):
                pass
            writer.close()  # flushes what is buffered (the end of a Connection: close body), then FIN
            await writer.wait_closed()
        except (ConnectionError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # a client that went away or sent something that is not HTTP: nothing to answer
        except asyncio.CancelledError:
            # Only stop() cancels these tasks; ending normally spares asyncio's start_server callback (3.11)
            # from logging the cancellation as an error.
            pass
        finally:
            self._connections.discard(task)
            writer.transport.abort()  # a no-op once closed; on server stop, drops the connection at once

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; True when the connection may carry another."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False  # the client closed an idle keep-alive connection
        request_line, *header_lines = head.decode("latin-1").split("\r\n")[:-2]
        method, path, _version = request_line.split(" ", 2)
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        raw_body = await reader.readexactly(int(headers.get("content-length", "0")))
        request = self._record(method, path, headers, raw_body)
        behaviour = request.behaviour
        if isinstance(behaviour, Hangup):
            self._update(request, outcome="hung_up")
            return False
        if isinstance(behaviour, ErrorResponse):
            await self._send_error(writer, behaviour)
            self._update(request, outcome="completed")
            return True
        return await self._stream(reader, writer, request, behaviour)

    def _record(self, method: str, path: str, headers: dict[str, str], raw_body: bytes) -> RecordedRequest:
        try:
            body = json.loads(raw_body) if raw_body else None
        except ValueError:
            body = None
        with self._changed:
            behaviour = self._queue.popleft() if self._queue else self.default
            request = RecordedRequest(
                index=len(self.requests), method=method, path=path, headers=headers, raw_body=raw_body, body=body,
                received_at=time.time(), behaviour=behaviour,
            )
            self.requests.append(request)
            self._changed.notify_all()
        return request

    async def _send_error(self, writer: asyncio.StreamWriter, error: ErrorResponse) -> None:
        if isinstance(error.body, str):
            body, content_type = error.body.encode(), "text/plain; charset=utf-8"
        else:
            body, content_type = json.dumps(error.body).encode(), "application/json"
        headers = {"content-type": content_type, "content-length": str(len(body)), **error.headers}
        writer.write(_head(error.status, headers) + body)
        await writer.drain()

    async def _stream(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: RecordedRequest,
        stream: SSEStream,
    ) -> bool:
        # The client sends nothing while it reads a response, so a pending read returns only at its EOF.
        watcher = asyncio.ensure_future(self._watch_for_eof(reader, request))
        try:
            await self._pause(watcher, stream.headers_delay)
            headers = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}
            if stream.framing == "chunked":
                headers |= {"transfer-encoding": "chunked", "connection": "keep-alive"}
            else:
                headers["connection"] = "close"
            await self._write(writer, watcher, _head(stream.status, {**headers, **stream.headers}))
            for position, item in enumerate(stream.events):
                if position:
                    await self._pause(watcher, stream.delay)
                await self._write(writer, watcher, _frame(_encode(item), stream.framing))
                self._update(request, events_sent=request.events_sent + 1)
            if stream.end == "stall":
                await watcher  # until the client leaves (or the server stops)
                raise _ClientGone
            if stream.end == "hangup":
                self._update(request, outcome="aborted")
                return False
            if stream.framing == "chunked":
                # Stop watching before the last byte: once the client has it, a keep-alive client may send
                # its next request at once, and the watcher must not be the one to read it.
                await _stop_watching(watcher)
                writer.write(b"0\r\n\r\n")
                await writer.drain()
            self._update(request, outcome="completed")
            return stream.framing == "chunked"
        except _ClientGone:
            return False  # the watcher has recorded when
        except asyncio.CancelledError:
            if request.outcome == "pending":
                self._update(request, outcome="stalled" if stream.end == "stall" else "aborted")
            raise
        finally:
            # Cancelling a read that is waiting leaves any bytes already received in the reader's buffer, so
            # a keep-alive client's next request is never lost; awaiting it frees the reader for that request.
            await _stop_watching(watcher)

    async def _watch_for_eof(self, reader: asyncio.StreamReader, request: RecordedRequest) -> None:
        try:
            while await reader.read(4096):
                pass  # nothing is expected from the client mid-response; ignore it
        except ConnectionError:
            pass  # a reset is a disconnect too
        if request.outcome == "pending":
            self._update(request, outcome="disconnected", disconnected_at=time.time())

    async def _pause(self, watcher: asyncio.Future[None], seconds: float) -> None:
        """Sleep, but end at once (raising _ClientGone) when the client disconnects meanwhile."""
        if seconds > 0:
            await asyncio.wait({watcher}, timeout=seconds)
        if watcher.done():
            raise _ClientGone

    async def _write(self, writer: asyncio.StreamWriter, watcher: asyncio.Future[None], data: bytes) -> None:
        if watcher.done():
            raise _ClientGone
        try:
            writer.write(data)
            await writer.drain()
        except ConnectionError:
            # The write noticed first (the watcher would a moment later): give it the chance to record.
            await asyncio.wait({watcher}, timeout=1.0)
            raise _ClientGone from None


async def _stop_watching(watcher: asyncio.Future[None]) -> None:
    watcher.cancel()
    await asyncio.gather(watcher, return_exceptions=True)


def _head(status: int, headers: Mapping[str, str]) -> bytes:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    lines = [f"HTTP/1.1 {status} {reason}", *(f"{name}: {value}" for name, value in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _encode(item: SSEItem) -> bytes:
    if isinstance(item, bytes):
        return item
    name, data = item
    lines = [f"event: {name}"] if name else []
    lines += [f"data: {line}" for line in data.split("\n")]
    return ("\n".join(lines) + "\n\n").encode()


def _frame(payload: bytes, framing: str) -> bytes:
    if framing == "close" or not payload:
        return payload  # an empty chunk would end a chunked body
    return f"{len(payload):x}\r\n".encode() + payload + b"\r\n"


def json_events(items: Iterable[tuple[str | None, Any]]) -> list[SSEItem]:
    """(event name, JSON-able data) pairs as SSE items."""
    return [(name, json.dumps(data, separators=(",", ":"))) for name, data in items]
