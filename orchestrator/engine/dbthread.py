"""The engine's own database thread.

`database_sync_to_async` runs everything on Django's one thread-sensitive thread — the thread that also
serves every HTTP request of an ASGI process (request signals, the view, `response.close()`). Sharing it
made a stop request queue behind the engine's checkpoints, transitions and watcher rounds: in the embedded
`serve` process the tail of stop→response was the length of that queue. The engine's database work runs on
a thread of its own instead: still one at a time, in order (a run's transitions are ordered, and SQLite
takes one writer anyway), with its own connection, managed like channels' (closed when old or broken).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from channels.db import DatabaseSyncToAsync

P = ParamSpec("P")
T = TypeVar("T")

_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine-db")


def engine_db(fn: Callable[P, T]) -> Callable[P, Awaitable[T]]:
    """Like channels' `database_sync_to_async(fn)`, on the engine's database thread."""
    return DatabaseSyncToAsync(fn, thread_sensitive=False, executor=_executor)
