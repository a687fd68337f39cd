"""Helpers for async tests: database access from the event loop, and waiting on conditions with deadlines
(never sleeping as synchronisation)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, TypeVar

from channels.db import database_sync_to_async

from orchestrator.models import Run
from orchestrator.services.runs import run_start

T = TypeVar("T")


async def db(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await database_sync_to_async(fn)(*args, **kwargs)


async def wait_until(predicate: Callable[[], T], *, timeout: float = 10.0, what: str = "condition") -> T:
    """Poll a (synchronous, DB-reading) predicate until it is truthy or the deadline passes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await db(predicate)
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)


def script(*turns: dict) -> str:
    return "script:" + json.dumps({"turns": list(turns)})


async def start(session, user, text: str) -> Run:
    return await db(run_start, session_id=session.id, user=user, text=text)


def run_state(run_id) -> str:
    return Run.objects.get(pk=run_id).state


async def wait_for_state(run_id, *states: str, timeout: float = 10.0) -> Run:
    def reached():
        run = Run.objects.get(pk=run_id)
        return run if run.state in states else None

    return await wait_until(reached, timeout=timeout, what=f"run {run_id} to reach {states}")


async def wait_terminal(run_id, timeout: float = 10.0) -> Run:
    return await wait_for_state(run_id, "completed", "stopped", "failed", timeout=timeout)
