"""The drive loop: one executor per run, stepping it through the state table until it ends or parks.

While it drives, the pool's watcher (pool.py) renews its lease and re-reads its stop flag, so a stop whose
wake-up message was lost still interrupts a model stream or a tool within HARNESS_STOP_POLL_SECONDS, and an
executor that lost its lease stops at once.
"""

from __future__ import annotations

import asyncio
import logging

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError

from ..models import TERMINAL_STATES, Run, RunState
from ..providers.base import ModelRequest
from ..providers.registry import provider_for
from ..tools.registry import ToolRegistry, get_registry
from .context import Interrupt, LeaseLost, StepContext
from .dbthread import engine_db
from .lease import lease_acquire, lease_release
from .speculation import first_request, fresh
from .step import CHAINED, HANDLERS, fail_write, force_fail

_CALL_STATES = (RunState.FUNCTION_PREPARE, RunState.AWAITING_APPROVAL, RunState.FUNCTION_EXECUTE)

logger = logging.getLogger(__name__)


class RunExecutor:
    def __init__(self, *, run_id: str, executor_id: str, pool=None) -> None:
        self.run_id = run_id
        self.executor_id = executor_id
        self.pool = pool  # where this process's current channel name is (it can change)
        self.interrupt = Interrupt()
        self.driving = False  # holds the lease and steps the run

    @property
    def channel(self) -> str:
        return self.pool.channel_name if self.pool is not None else ""

    def signal_stop(self) -> None:
        self.interrupt.stop()

    async def drive(self) -> None:
        tools = get_registry()
        # The first request the start command already sent, if it did (speculation.py): no need to read it.
        offered = self.pool.claim(self.run_id) if self.pool is not None else None
        try:
            taken = await engine_db(self._take)(self.channel, tools, read_ahead=offered is None)
        except BaseException:
            if offered is not None:
                await asyncio.shield(offered.discard())
            raise
        if taken is None:
            if offered is not None:
                await offered.discard()
            return
        run, first_request = taken
        ctx = StepContext(
            run_id=self.run_id, executor_id=self.executor_id, interrupt=self.interrupt, provider=None, tools=tools,
            checkpoints=self.pool.checkpoints if self.pool is not None else None, chain=CHAINED,
            speculation=offered,
        )
        self.driving = True  # the pool's watcher now renews our lease and reads our stop flag
        release = True
        try:
            if run.stop_requested:
                self.interrupt.stop()
            if run.resume_count > settings.HARNESS_MAX_RESUMES:
                run = await self._give_up(ctx, run)
            elif run.state not in TERMINAL_STATES and run.state != RunState.TEARING_DOWN:
                try:
                    ctx.provider = provider_for(run.model or settings.HARNESS_MODEL)
                except ImproperlyConfigured as exc:
                    # Configuration changed since the run started (or this worker lacks a key): say so.
                    run = await ctx.advance(fail_write(f"the model cannot be used: {exc}"))
                else:
                    if first_request is not None and not self.interrupt.is_set:
                        ctx.speculate(first_request)
            if ctx.speculation is not None and (self.interrupt.is_set or not fresh(run)):
                await ctx.discard_speculation()  # offered for a run that was stopped (or failed) meanwhile
            if run.state in _CALL_STATES and not run.stop_requested:
                await ctx.refresh_tools(run)  # resumed between a model's tool calls and their results
            while run is not None and run.state not in TERMINAL_STATES and not ctx.parked:
                run = await self._step(ctx, run)
                if ctx.speculation is not None and (run is None or run.state != RunState.ASSISTANT_STREAMING):
                    await ctx.discard_speculation()  # a stop (or the turn limit) came before the model call
            release = False  # terminal and parked transitions released the lease in their transaction
        except LeaseLost:
            release = False
            logger.warning("run %s: lease lost; this executor stops driving it", self.run_id)
        finally:
            self.driving = False
            if ctx.speculation is not None:
                await asyncio.shield(ctx.discard_speculation())
            if release:
                # Cancelled (shutdown) or broken: let another executor take over without waiting for expiry.
                await asyncio.shield(engine_db(lease_release)(run_id=self.run_id, executor_id=self.executor_id))

    def _take(self, channel: str, tools: ToolRegistry, *, read_ahead: bool) -> tuple[Run, ModelRequest | None] | None:
        """Take the run's lease and read the run, in one trip to the database thread; None when another
        executor holds it. For a fresh run and `read_ahead`, also its first model request (speculation.py)."""
        if not lease_acquire(run_id=self.run_id, executor_id=self.executor_id, channel=channel):
            return None
        try:
            run = Run.objects.get(pk=self.run_id)
            return run, first_request(run, tools) if read_ahead else None
        except Exception:
            lease_release(run_id=self.run_id, executor_id=self.executor_id)  # as drive() would: don't hold it
            raise

    async def _give_up(self, ctx: StepContext, run: Run) -> Run | None:
        error = f"the run was interrupted {run.resume_count} times (its worker kept stopping); not resuming it again"
        if run.state == RunState.TEARING_DOWN:
            await ctx.db(force_fail, run_id=self.run_id, executor_id=self.executor_id, error=error)
            return None
        return await ctx.advance(fail_write(error))

    async def _step(self, ctx: StepContext, run: Run) -> Run | None:
        handler = HANDLERS[RunState(run.state)]
        try:
            return await handler(ctx, run)
        except (LeaseLost, asyncio.CancelledError):
            raise
        except DatabaseError:
            # The store is unavailable: nothing can be recorded now. Keep the lease until it lapses and let
            # recovery resume the run from its last committed state.
            logger.exception("run %s: database error in %s", self.run_id, run.state)
            raise LeaseLost(self.run_id) from None
        except Exception as exc:
            logger.exception("run %s: handler for %s failed", self.run_id, run.state)
            if run.state == RunState.TEARING_DOWN:
                await ctx.db(force_fail, run_id=self.run_id, executor_id=self.executor_id, error=f"internal error: {exc}")
                return None
            return await ctx.advance(fail_write(f"internal error in {run.state}: {exc}"))

