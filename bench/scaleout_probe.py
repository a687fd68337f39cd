"""A diagnostic orchestrator worker for `bench/scaleout.py --probe`: `manage.py runworker orchestrator` with the
stop path instrumented, to time its pieces. Never used by the tests or in production.

It wraps, in this process only (production code is unchanged):
  RunExecutor.signal_stop     logs the `run.stop` wake-up's arrival (web → Redis → this worker);
  pool.leases_watch           logs when the pool watcher's database poll sees a stop flag (the fallback path);
  DatabaseSyncToAsync.thread_handler, DatabaseWrapper.is_usable
                              time spent in the one database thread (every `database_sync_to_async` call
                              runs there) and the connection health checks (`SELECT 1`) among it;
and installs the engine's preemption hook (orchestrator/engine/context.py: preemption_hook) to log when a
cancel is issued, the await chain it lands in, when the cancelled work really ends — whether it ended with
CancelledError, *returned* (the cancellation was swallowed somewhere below; Task.cancelling() counts the
cancels) or was left behind, and when such an orphan finally ended;
and it starts a monitor task (with the pool's background task) that logs, every second, the cumulative
database-thread busy time, main-thread CPU (`time.thread_time()`) and event-loop lag.
Each log line is `PROBE {json}` on stdout, with `t` = time.time() (same clock as the other processes).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "harness.settings")

import django  # noqa: E402

django.setup()

from channels.db import DatabaseSyncToAsync  # noqa: E402
from django.db.backends.postgresql.base import DatabaseWrapper  # noqa: E402

from orchestrator.engine import context as context_module  # noqa: E402
from orchestrator.engine import executor as executor_module  # noqa: E402
from orchestrator.engine import pool as pool_module  # noqa: E402


def probe(event: str, run_id, **fields) -> None:
    print("PROBE " + json.dumps({"event": event, "run": str(run_id), "t": time.time(), **fields}), flush=True)


def await_chain(task: asyncio.Task) -> list[str]:
    """Where a task is suspended: file:function:line for each coroutine/generator in its await chain."""
    chain, current = [], task.get_coro()
    while current is not None:
        frame = getattr(current, "cr_frame", None) or getattr(current, "ag_frame", None) or getattr(
            current, "gi_frame", None)
        if frame is not None:
            name = frame.f_code.co_filename
            name = name.split("site-packages/")[-1].split("/lib/python3")[-1].replace(str(ROOT) + "/", "")
            chain.append(f"{name}:{frame.f_code.co_name}:{frame.f_lineno}")
        current = getattr(current, "cr_await", None) or getattr(current, "ag_await", None) or getattr(
            current, "gi_yieldfrom", None)
    return chain


_signal_stop = executor_module.RunExecutor.signal_stop


def signal_stop(self) -> None:
    probe("wakeup", self.run_id, interrupt_already_set=self.interrupt.is_set)
    _signal_stop(self)


_leases_watch = pool_module.leases_watch


def leases_watch(**kwargs) -> tuple[set[str], set[str]]:
    stopped, lost = _leases_watch(**kwargs)
    for run_id in stopped:
        probe("poll_sees_flag", run_id)
    return stopped, lost


def observe_preemption(run_id, task: asyncio.Task):
    """The engine's preemption hook: logs when the cancel is issued and where it lands, then how the work ended."""
    chain = await_chain(task)
    issued = time.time()
    probe("cancel_issued", run_id, await_chain=chain)

    def ended(done: bool) -> None:
        cancels = task.cancelling()  # the cancel() calls it got: more than one means a cancellation was swallowed
        if not done:  # left behind, as the engine does: log when (and how) the orphaned work finally ends
            def orphan_ended(finished: asyncio.Task) -> None:
                how = "cancelled" if finished.cancelled() else (
                    type(finished.exception()).__name__ if finished.exception() is not None else "returned")
                probe("orphan_ended", run_id, seconds_after_cancel=round(time.time() - issued, 3), how=how)

            task.add_done_callback(orphan_ended)
        # Still running, or it returned normally although it was cancelled.
        swallowed = cancels > 1 or not done or (not task.cancelled() and task.exception() is None)
        probe("cancel_done", run_id, seconds=round(time.time() - issued, 4), swallowed=swallowed,
              cancels=cancels, abandoned=not done, await_chain=chain)

    return ended


COUNTERS = {"db_calls": 0, "db_busy_s": 0.0, "health_checks": 0, "health_check_s": 0.0}
BY_FUNCTION: dict[str, list] = {}  # the sync function's name → [calls, busy seconds]
_thread_handler = DatabaseSyncToAsync.thread_handler


def thread_handler(self, loop, *args, **kwargs):
    started = time.perf_counter()
    try:
        return _thread_handler(self, loop, *args, **kwargs)
    finally:
        elapsed = time.perf_counter() - started
        COUNTERS["db_calls"] += 1
        COUNTERS["db_busy_s"] += elapsed
        name = getattr(self.func, "__qualname__", None) or getattr(self.func, "__name__", None) or repr(self.func)
        entry = BY_FUNCTION.setdefault(name, [0, 0.0])
        entry[0] += 1
        entry[1] += elapsed


_is_usable = DatabaseWrapper.is_usable


def is_usable(self):
    started = time.perf_counter()
    try:
        return _is_usable(self)
    finally:
        COUNTERS["health_checks"] += 1
        COUNTERS["health_check_s"] += time.perf_counter() - started


async def monitor() -> None:
    """Every second: cumulative counters, main-thread CPU and the worst event-loop lag of the last second."""
    lag_max, last_report = 0.0, time.monotonic()
    while True:
        started = time.perf_counter()
        await asyncio.sleep(0.05)
        lag_max = max(lag_max, time.perf_counter() - started - 0.05)
        if time.monotonic() - last_report >= 1.0:
            print("PROBE " + json.dumps({
                "event": "monitor", "run": "", "t": time.time(), "pid": os.getpid(),
                "main_thread_cpu_s": time.thread_time(), "process_cpu_s": sum(os.times()[:2]),
                "loop_lag_max_ms": round(lag_max * 1000, 2),
                "executors": len(pool_module.get_pool().tasks), **COUNTERS,
                "by_function": {name: [calls, round(busy, 4)] for name, (calls, busy) in BY_FUNCTION.items()},
            }), flush=True)
            lag_max, last_report = 0.0, time.monotonic()


_start_background = pool_module.ExecutorPool.start_background
_monitor: list = []


def start_background(self) -> None:
    _start_background(self)
    if not _monitor:
        _monitor.append(asyncio.get_running_loop().create_task(monitor(), name="probe monitor"))


DatabaseSyncToAsync.thread_handler = thread_handler
DatabaseWrapper.is_usable = is_usable
pool_module.ExecutorPool.start_background = start_background
executor_module.RunExecutor.signal_stop = signal_stop
pool_module.leases_watch = leases_watch
context_module.preemption_hook = observe_preemption

if __name__ == "__main__":
    from django.core.management import call_command

    call_command("runworker", "orchestrator")
