"""This process's executors: at most one driving task per run, the watcher over all of them, and the
recovery scan.

The worker consumer only translates channel messages into calls here, so its handlers return at once and
a stop is never queued behind a running turn. The watcher is one task for the whole process: every
HARNESS_STOP_POLL_SECONDS it reads the stop flags of every run driven here (and every third of the lease
TTL renews their leases) in one database round, so its cost does not grow with the number of runs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid

from django.conf import settings
from django.db import DatabaseError

from ..providers.base import ModelRequest, Provider
from .checkpoints import StreamCheckpoints
from .context import model_stream
from .dbthread import engine_db
from .executor import RunExecutor
from .lease import heartbeat_beat, leases_watch, runs_without_executor
from .speculation import EARLY_CLAIM_SECONDS, Speculation

logger = logging.getLogger(__name__)


class ExecutorPool:
    def __init__(self) -> None:
        self.executor_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.channel_name = ""
        self.executors: dict[str, RunExecutor] = {}
        self.tasks: dict[str, asyncio.Task] = {}
        self._rewake: set[str] = set()
        self._background: asyncio.Task | None = None
        self._watcher: asyncio.Task | None = None
        self.checkpoints = StreamCheckpoints(self.executor_id)
        self.loop: asyncio.AbstractEventLoop | None = None  # the worker's, once it has booted in this process
        self._discarding: set[asyncio.Task] = set()
        self._offered: dict[str, tuple[Speculation, asyncio.TimerHandle]] = {}  # first requests (speculation.py)

    def booted(self, channel_name: str) -> None:
        """The worker consumer runs in this process, on this loop, and receives on `channel_name`."""
        self.channel_name = channel_name
        self.loop = asyncio.get_running_loop()

    def offer(self, run_id: str, provider: Provider, request: ModelRequest) -> bool:
        """Send a run's first model request now, for its executor here to claim (speculation.py). False when
        this is not the worker's loop (a command run outside it): nothing was sent."""
        run_id = str(run_id)
        if self.loop is not asyncio.get_running_loop() or run_id in self._offered or run_id in self.tasks:
            return False
        speculation = Speculation.start(request, model_stream(provider, request))
        expiry = self.loop.call_later(EARLY_CLAIM_SECONDS, self._unclaimed, run_id)
        self._offered[run_id] = (speculation, expiry)
        return True

    def claim(self, run_id: str) -> Speculation | None:
        """The first request offered for this run, if any: the caller owns it now."""
        offered = self._offered.pop(str(run_id), None)
        if offered is None:
            return None
        speculation, expiry = offered
        expiry.cancel()
        return speculation

    def _unclaimed(self, run_id: str) -> None:
        speculation = self.claim(run_id)
        if speculation is not None:
            logger.info("run %s: its first model request was not claimed; discarding it", run_id)
            task = self.loop.create_task(speculation.discard())
            self._discarding.add(task)
            task.add_done_callback(self._discarding.discard)

    def ensure_driving(self, run_id: str) -> None:
        run_id = str(run_id)
        task = self.tasks.get(run_id)
        if task is not None and not task.done():
            # It may be just parking or ending: look again once it has.
            self._rewake.add(run_id)
            return
        executor = RunExecutor(run_id=run_id, executor_id=self.executor_id, pool=self)
        self.executors[run_id] = executor
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.get_running_loop().create_task(self._watch_forever(), name="run watcher")
        task = asyncio.get_running_loop().create_task(executor.drive(), name=f"run {run_id}")
        self.tasks[run_id] = task
        task.add_done_callback(lambda t, run_id=run_id: self._finished(run_id, t))

    def _finished(self, run_id: str, task: asyncio.Task) -> None:
        if self.tasks.get(run_id) is task:
            del self.tasks[run_id]
            del self.executors[run_id]
        if not task.cancelled() and task.exception() is not None:
            logger.error("executor of run %s crashed", run_id, exc_info=task.exception())
        rewake = run_id in self._rewake
        self._rewake.discard(run_id)  # a cancelled executor (a shutting-down pool) leaves no request behind
        if rewake and not task.cancelled():
            self.ensure_driving(run_id)

    def signal_stop(self, run_id: str) -> bool:
        """Interrupt the local executor of a run; False if this process does not drive it."""
        executor = self.executors.get(str(run_id))
        if executor is None:
            return False
        executor.signal_stop()
        return True

    async def watch_once(self, *, renew: bool) -> None:
        """Land stops whose wake-up was lost, renew leases, and stop executors whose lease was taken over."""
        driving = {run_id: executor for run_id, executor in self.executors.items() if executor.driving}
        if not driving:
            return
        stopped, lost = await engine_db(leases_watch)(
            run_ids=list(driving), executor_id=self.executor_id, channel=self.channel_name, renew=renew
        )
        for run_id, executor in driving.items():
            if run_id in lost:
                executor.interrupt.lose_lease()
            elif run_id in stopped and not executor.interrupt.is_set:
                executor.signal_stop()

    async def _watch_forever(self) -> None:
        renew_every = settings.HARNESS_LEASE_TTL_SECONDS / 3
        last_renewal = time.monotonic()
        while True:
            await asyncio.sleep(settings.HARNESS_STOP_POLL_SECONDS)
            renew = time.monotonic() - last_renewal >= renew_every
            try:
                await self.watch_once(renew=renew)
                if renew:
                    last_renewal = time.monotonic()
            except DatabaseError:
                logger.warning("run watcher could not reach the database", exc_info=True)
            except Exception:
                # The watcher is what lands a stop whose wake-up was lost: it must never die silently.
                logger.exception("run watcher error; it keeps watching")

    def start_background(self) -> None:
        """Heartbeat and recovery, once per process."""
        if self._background is None or self._background.done():
            self._background = asyncio.get_running_loop().create_task(self._background_forever(), name="worker")

    async def recover_once(self) -> list[str]:
        """Drive every run nobody drives (new runs whose wake-up was lost, lapsed leases, resolved approvals)."""
        orphans = await engine_db(runs_without_executor)()
        for run_id in orphans:
            self.ensure_driving(run_id)
        return orphans

    async def _background_forever(self) -> None:
        while True:
            try:
                await engine_db(heartbeat_beat)(executor_id=self.executor_id, channel=self.channel_name,
                                                             runs=len(self.tasks))
                await self.recover_once()
            except DatabaseError:
                logger.warning("worker heartbeat/recovery could not reach the database", exc_info=True)
            await asyncio.sleep(settings.HARNESS_RECOVERY_INTERVAL_SECONDS)

    async def shutdown(self) -> None:
        tasks = [t for t in (self._background, self._watcher) if t is not None] + list(self.tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        offered = [self.claim(run_id) for run_id in list(self._offered)]
        await asyncio.gather(*(s.discard() for s in offered if s is not None), *self._discarding,
                             return_exceptions=True)
        from ..mcp.manager import mcp_shutdown

        await mcp_shutdown()


_pool: ExecutorPool | None = None


def get_pool() -> ExecutorPool:
    global _pool
    if _pool is None:
        _pool = ExecutorPool()
    return _pool


def local_pool() -> ExecutorPool | None:
    """This process's pool if a worker runs in this process (its consumer has booted), else None."""
    return _pool if _pool is not None and _pool.loop is not None else None


def reset_pool() -> None:
    """For tests: forget this process's executors (each test runs on a fresh event loop)."""
    global _pool
    _pool = None
