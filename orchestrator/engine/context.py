"""What a state handler works with: the run's lease, its stop signal, and one way to persist a transition.

A handler does its I/O (model stream, tool) with `await ctx.preemptible(...)`, then persists everything it
learned *and* the next state in one transaction with `await ctx.advance(write)`. `write(tx)` runs on the
database thread inside `transaction.atomic()` with the run row locked, and returns the next state (or
`PARK`). Events it emits are published only after the commit, so no client ever sees a state the database
does not hold.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from .. import events, metrics
from ..models import TERMINAL_STATES, Message, MessageRole, MessageStatus, Run
from ..providers.base import ModelRequest, Provider, ProviderEvent
from ..providers.retry import stream_with_retries
from ..tools.registry import ToolRegistry
from .checkpoints import StreamCheckpoints
from .dbthread import engine_db
from .speculation import Speculation

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Returned by a write function: release the lease and stop driving (the run waits on approvals).
PARK = "__park__"

# How long preempted work may take to honour its cancellation before the stop goes ahead without it.
CANCEL_GRACE_SECONDS = 1.0


# How often a cancellation is repeated while the cancelled work is still running (see cancel_until_done).
RECANCEL_EVERY_SECONDS = 0.005

# Instrumentation for a benchmark's diagnosis (bench/scaleout_probe.py), None otherwise: called with the run
# id and the preempted task just before it is cancelled, it returns what to call with cancel_until_done's
# answer once that is known. Only a preemption looks at it, so it costs nothing when unset.
preemption_hook: Callable[[Any, asyncio.Task], Callable[[bool], None]] | None = None


async def cancel_until_done(task: asyncio.Future, *, grace: float) -> bool:
    """Cancel `task` and wait for it to end, repeating the cancellation until it does; False after `grace`.

    One cancel() is not enough: on Python 3.11 `asyncio.wait_for` swallows a cancellation that arrives as
    its inner future completes (CPython gh-86296; redis-py wraps every socket write of channels-redis in
    wait_for), and the work then carries on to its natural end — 25 s of streaming in the scale-out
    benchmark. A repeated cancel lands at the work's next await. Bounded, so work that ignores every
    cancellation never holds a stop up for longer than `grace`.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    task.cancel()
    while True:
        remaining = deadline - loop.time()
        done, _ = await asyncio.wait({task}, timeout=max(0.0, min(RECANCEL_EVERY_SECONDS, remaining)))
        if done:
            return True
        if remaining <= RECANCEL_EVERY_SECONDS:
            return False
        task.cancel()


def model_stream(provider: Provider, request: ModelRequest) -> AsyncGenerator[ProviderEvent, None]:
    """The model's answer to `request`, retried as configured while nothing has been streamed yet."""
    return stream_with_retries(
        provider, request, retries=settings.HARNESS_MODEL_RETRIES,
        base_delay=settings.HARNESS_MODEL_RETRY_BASE_SECONDS, max_wait=settings.HARNESS_MODEL_RETRY_MAX_WAIT_SECONDS,
    )


class LeaseLost(Exception):
    """Another executor owns the run now (or it vanished); stop driving it at once, write nothing."""


class Interrupt:
    """Why preemptible work must end now: the run was stopped, or this executor lost its lease.

    Set by the worker when a stop wake-up arrives, and by the executor's watcher when it sees the stop
    flag in the database (so a lost wake-up still lands within HARNESS_STOP_POLL_SECONDS).
    """

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.stop_seen_at = None
        self.lease_lost = False

    def stop(self) -> None:
        if self.stop_seen_at is None:
            self.stop_seen_at = timezone.now()
        self._event.set()

    def lose_lease(self) -> None:
        self.lease_lost = True
        self._event.set()

    @property
    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait(self) -> None:
        await self._event.wait()


@dataclass
class Tx:
    """The transaction a write function runs in: the locked run, the time, and events to publish."""

    run: Run
    now: Any
    emitted: list[events.Event] = field(default_factory=list)
    answer: Message | None = None  # the answer message a write opened (assistant_streaming's entry)

    def emit(self, *new: events.Event) -> None:
        self.emitted.extend(new)

    def add_message(self, *, role: str, text: str, status: str = MessageStatus.COMPLETE, **fields: Any) -> Message:
        message = Message.objects.create(
            session_id=self.run.session_id, run=self.run, role=role, text=text, status=status,
            created_at=self.now, updated_at=self.now, **fields,
        )
        if status != MessageStatus.STREAMING:
            self.emit(events.message_completed(message=message))
        return message

    def add_notice(self, text: str) -> Message:
        """A system message the user sees in the transcript (never sent to the model)."""
        return self.add_message(role=MessageRole.SYSTEM, text=text)

    @property
    def stopped_by(self) -> str:
        user = self.run.stop_requested_by
        return user.get_username() if user else "the system"


@dataclass
class StepContext:
    run_id: Any
    executor_id: str
    interrupt: Interrupt
    provider: Provider | None  # set by the executor from the run's model before the first step
    tools: ToolRegistry
    # Where streaming text is checkpointed: the pool's, shared by all its runs (a context of its own in tests).
    checkpoints: StreamCheckpoints | None = None
    parked: bool = False
    base_tools: ToolRegistry | None = None  # the registry's tools, without MCP's (refresh_tools)
    # The entry writes of states a transition runs straight into, in its own transaction (step.CHAINED; the
    # executor's context has them, a state test's has none): fewer transactions before a model call.
    chain: Mapping[str, Callable[[Tx], str]] = field(default_factory=dict)
    opened_answer: Message | None = None  # opened by the last committed transition, for assistant_streaming
    speculation: Speculation | None = None  # the run's first model request, already sent (speculation.py)

    def __post_init__(self) -> None:
        if self.checkpoints is None:
            self.checkpoints = StreamCheckpoints(self.executor_id)

    async def advance(self, write: Callable[[Tx], str]) -> Run:
        """Run `write` in one transaction with the run locked; persist the state it returns; publish."""
        run, emitted = await engine_db(self._advance_sync)(write)
        await self._advanced(run, emitted)
        return run

    async def advance_then_read(self, write: Callable[[Tx], str], read: Callable[[Run], T]) -> tuple[Run, T]:
        """`advance(write)`, then `read(run)` once that has committed, in the same trip to the database thread
        (one hop fewer; the read holds no lock). The transition counts and is published even if `read` fails."""
        run, emitted, result, error = await engine_db(self._advance_then_read_sync)(write, read)
        await self._advanced(run, emitted)
        if error is not None:
            raise error
        return run, result

    def _advance_then_read_sync(self, write: Callable[[Tx], str], read: Callable[[Run], T]):
        run, emitted = self._advance_sync(write)
        try:
            return run, emitted, read(run), None
        except Exception as exc:
            return run, emitted, None, exc

    async def _advanced(self, run: Run, emitted: list[events.Event]) -> None:
        """After a transition committed: its metrics, the stop it saw, its events."""
        metrics.record_transition(run, emitted, acknowledged_stop=getattr(run, "stop_acknowledged_now", False))
        if run.stop_requested_at:
            self.interrupt.stop()
        if emitted:
            await events.publish(run.session_id, *emitted)

    def _advance_sync(self, write: Callable[[Tx], str]) -> tuple[Run, list[events.Event]]:
        with transaction.atomic():
            run = (
                # of=("self",): PostgreSQL cannot lock the nullable side of the outer join to the stopper.
                Run.objects.select_for_update(of=("self",))
                .select_related("stop_requested_by")
                .filter(pk=self.run_id, executor_id=self.executor_id)
                .first()
            )
            if run is None:
                raise LeaseLost(self.run_id)
            tx = Tx(run=run, now=timezone.now())
            if run.stop_requested_at and not run.stop_acknowledged_at:
                # The first step this executor persists after the stop: the stop's "accepted" timing.
                run.stop_acknowledged_at = tx.now
                run.stop_acknowledged_now = True  # (not a field: for the metric, once committed)
            next_state = write(tx)
            while next_state != PARK and next_state != run.state:
                run.prev_state, run.state = run.state, next_state
                tx.emit(
                    events.run_state(
                        run_id=run.id, state=run.state, prev_state=run.prev_state, turn_count=run.turn_count,
                        stop_requested=run.stop_requested,
                    )
                )
                entry = self.chain.get(next_state)
                if entry is not None:
                    next_state = entry(tx)  # the next state's own write, in this transaction
            if next_state == PARK:
                run.executor_id, run.lease_channel, run.lease_expires_at = "", "", None
                self.parked = True
            if run.state in TERMINAL_STATES:
                run.executor_id, run.lease_channel, run.lease_expires_at = "", "", None
            run.save()
            # Events are ordered as emitted; the terminal `run.finished` (emitted by tearing_down) goes last.
            tx.emitted.sort(key=lambda event: event["type"] == "run.finished")
            emitted = events.with_activity(run.session_id, tx.emitted)  # session lists: last
        self.opened_answer = tx.answer  # committed
        return run, emitted

    def speculate(self, request: ModelRequest) -> None:
        """Send the run's first model request now (speculation.py); assistant_streaming takes it over."""
        self.speculation = Speculation.start(request, model_stream(self.provider, request))

    def take_speculation(self, turn: int) -> Speculation | None:
        """The speculated request if it is this turn's (the caller then owns it), else None."""
        speculation, self.speculation = self.speculation, None
        if speculation is not None and speculation.request.turn != turn:
            self.speculation = speculation  # not ours: whoever discards it will
            return None
        return speculation

    async def discard_speculation(self) -> None:
        speculation, self.speculation = self.speculation, None
        if speculation is not None:
            await speculation.discard()

    async def db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await engine_db(fn)(*args, **kwargs)

    async def refresh_tools(self, run: Run) -> None:
        """The run's tools: the registry's and its session's MCP servers' (connected on first use; a server
        that cannot be reached adds none). A stop meanwhile leaves the tools as they were."""
        from ..mcp.manager import tools_for_run

        if not settings.HARNESS_MCP_CONFIG:
            return
        if self.base_tools is None:
            self.base_tools = self.tools
        interrupted, tools = await self.preemptible(tools_for_run(self.base_tools, run.session_id))
        if not interrupted:
            self.tools = tools

    async def preemptible(self, work: Awaitable[T]) -> tuple[bool, T | None]:
        """Run `work` until it finishes or the run is interrupted; on interruption cancel it and wait for it.

        Returns (interrupted, result). Exceptions from `work` propagate. A lost lease raises LeaseLost.
        """
        task = asyncio.ensure_future(work)
        waiter = asyncio.ensure_future(self.interrupt.wait())
        try:
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            raise
        finally:
            waiter.cancel()
        if task.done():
            return False, task.result()
        observe = preemption_hook(self.run_id, task) if preemption_hook is not None else None
        ended = await cancel_until_done(task, grace=CANCEL_GRACE_SECONDS)
        if observe is not None:
            observe(ended)
        if not ended:
            logger.error("run %s: preempted work ignored cancellation for %.1f s; leaving it behind",
                         self.run_id, CANCEL_GRACE_SECONDS)
        elif not task.cancelled() and task.exception() is not None:
            logger.info("preempted work of run %s raised while cancelling", self.run_id, exc_info=task.exception())
        if self.interrupt.lease_lost:
            raise LeaseLost(self.run_id)
        return True, None
