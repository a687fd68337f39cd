"""StepContext.preemptible: a stop ends the running work even when one cancellation is lost on the way."""

from __future__ import annotations

import asyncio

from orchestrator.engine import context as context_module
from orchestrator.engine.context import Interrupt, StepContext, cancel_until_done


def make_context() -> StepContext:
    return StepContext(run_id="run", executor_id="owner", interrupt=Interrupt(), provider=None, tools=None)


async def test_a_cancellation_swallowed_by_wait_for_is_repeated_until_the_work_ends():
    """Python 3.11's asyncio.wait_for returns its inner result when a cancel arrives as that result does
    (CPython gh-86296). redis-py wraps channels-redis' socket writes in wait_for, so a stop's one cancel()
    could be lost mid-publish and the stream ran on to its natural end."""
    ctx = make_context()
    write_done = asyncio.get_running_loop().create_future()  # stands in for a socket write completing
    after_write = []

    async def streaming():
        await asyncio.wait_for(write_done, timeout=10)
        after_write.append("resumed")  # the cancel was swallowed: the work goes on …
        try:
            await asyncio.sleep(30)  # … to the rest of a long stream
        except asyncio.CancelledError:
            after_write.append("cancelled again")
            raise

    job = asyncio.ensure_future(ctx.preemptible(streaming()))
    await asyncio.sleep(0)  # the work is now inside wait_for
    write_done.set_result(None)  # the write completes …
    ctx.interrupt.stop()  # … in the same loop iteration as the stop
    interrupted, result = await asyncio.wait_for(job, timeout=context_module.CANCEL_GRACE_SECONDS / 2)
    assert (interrupted, result) == (True, None)
    # The race really happened (the first cancel was swallowed), and the repeated cancel ended the work.
    assert after_write == ["resumed", "cancelled again"]


async def test_work_that_ignores_every_cancellation_is_left_behind_after_the_grace(monkeypatch):
    monkeypatch.setattr(context_module, "CANCEL_GRACE_SECONDS", 0.05)
    ctx = make_context()
    cancels, released = 0, asyncio.Event()

    async def stubborn():
        nonlocal cancels
        while not released.is_set():
            try:
                await released.wait()
            except asyncio.CancelledError:
                cancels += 1  # a badly behaved library

    work = asyncio.ensure_future(stubborn())
    job = asyncio.ensure_future(ctx.preemptible(work))
    await asyncio.sleep(0)
    ctx.interrupt.stop()
    assert await asyncio.wait_for(job, timeout=5) == (True, None)  # the stop went ahead without it
    assert cancels > 1 and not work.done()  # it was asked again and again
    released.set()  # (the test's own clean-up: let it end)
    await work


async def test_cancel_until_done_returns_at_once_for_work_that_honours_cancellation():
    task = asyncio.ensure_future(asyncio.sleep(30))
    await asyncio.sleep(0)
    assert await cancel_until_done(task, grace=5) is True
    assert task.cancelled()


async def test_work_that_finishes_first_is_not_cancelled():
    ctx = make_context()

    async def quick():
        return 42

    assert await ctx.preemptible(quick()) == (False, 42)
