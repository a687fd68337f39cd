"""Facts a measurement is read against: the CPU time our processes, this client and the rest of the machine
used over a window, memory, the machine itself and the git state of the code measured. From psutil (the
benchmarks run on 2 shared cores, so who used the CPU decides whether a number means anything)."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from .process import ROOT

Reader = Callable[[], "float | None"]


def process_seconds(pid: int, *, children: bool = False) -> float | None:
    """CPU seconds (user + system, all threads) of a process so far; with `children`, its reaped children's
    too. None once it is gone."""
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return times.user + times.system + (times.children_user + times.children_system if children else 0.0)


def tree_seconds(pid: int | None) -> float | None:
    """CPU of a process, its live children and its reaped children (PostgreSQL: postmaster + backends)."""
    total = process_seconds(pid, children=True) if pid is not None else None
    if total is None:
        return None
    try:
        children = psutil.Process(pid).children()
    except psutil.Error:
        return None
    return total + sum(process_seconds(child.pid, children=True) or 0.0 for child in children)


def main_thread_seconds(pid: int) -> float | None:
    """CPU seconds of a process's main thread (its event loop, for Daphne)."""
    try:
        thread = next((t for t in psutil.Process(pid).threads() if t.id == pid), None)
    except psutil.Error:
        return None
    return None if thread is None else thread.user_time + thread.system_time


def thread_count(pid: int) -> int | None:
    try:
        return psutil.Process(pid).num_threads()
    except psutil.Error:
        return None


def rss_mib(pid: int) -> float | None:
    try:
        return round(psutil.Process(pid).memory_info().rss / 1024 / 1024, 1)
    except psutil.Error:
        return None


def own_seconds() -> float:
    times = os.times()
    return times.user + times.system


def machine_seconds() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine so far. Steal is time the hypervisor gave our virtual
    CPUs to someone else: contention we cannot see as processes."""
    times = psutil.cpu_times()
    return times.user + times.nice + times.system + times.irq + times.softirq, times.steal


class CpuSample:
    """CPU seconds so far of named processes (`readers`; `details` such as one thread are not added to ours),
    of this client and of the machine, at one instant."""

    def __init__(self, readers: dict[str, Reader], details: dict[str, Reader] | None = None) -> None:
        self.t = time.monotonic()
        self.readers = {name: read() for name, read in readers.items()}
        self.details = {name: read() for name, read in (details or {}).items()}
        self.client = own_seconds()
        self.machine = machine_seconds()

    def until(self, later: CpuSample) -> dict:
        """Over the window to `later`: `seconds` and `cores` of each reader and detail (None when unknown),
        `client`, and the machine's busy, others' (busy − ours − client) and steal cores."""
        wall = later.t - self.t
        seconds = {name: None if value is None or later.readers.get(name) is None else later.readers[name] - value
                   for name, value in self.readers.items()}
        seconds.update({name: None if value is None or later.details.get(name) is None
                        else later.details[name] - value for name, value in self.details.items()})
        client = later.client - self.client
        busy, steal = (later.machine[i] - self.machine[i] for i in range(2))
        ours = sum(seconds[name] or 0.0 for name in self.readers)
        per = (lambda value: None if value is None or wall <= 0 else round(value / wall, 3))  # noqa: E731
        return {"wall_s": round(wall, 3), "seconds": seconds, "cores": {k: per(v) for k, v in seconds.items()},
                "client_cores": per(client), "machine_busy_cores": per(busy),
                "others_cores": per(max(0.0, busy - ours - client)), "steal_cores": per(steal)}


def cpu_model() -> str | None:
    """The CPU's model name (psutil does not say it)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def machine_info(**extra: object) -> dict:
    return {"platform": platform.platform(), "machine": platform.machine(), "cpu_model": cpu_model(),
            "cpu_count": os.cpu_count(), "python": platform.python_version(), **extra}


def memory_mib() -> int:
    return psutil.virtual_memory().total // (1024 * 1024)


def git(*args: str) -> str | None:
    """A git command's output in the repository, or None (not a checkout, no git, an error)."""
    try:
        result = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None
