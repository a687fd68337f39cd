"""asyncio helpers the engine and the sandbox share."""

from __future__ import annotations

import asyncio


async def complete_despite_cancel(task: asyncio.Future) -> bool:
    """Wait for `task` to end even if we are cancelled meanwhile, any number of times (a stop repeats its
    cancellation until the work ends); True if we were — the caller re-raises the cancellation once its
    cleanup is done."""
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = True
    return cancelled
