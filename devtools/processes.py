"""Looking for processes in /proc, for tests and benchmarks of what a kill leaves behind. (A raw scan rather
than psutil: the sandbox benchmark polls it every 0.5 ms, and reads only the command lines.)

Tests give the commands they start a marker (`sleep 30.417263`: GNU sleep takes fractional seconds) and
look for it in every process's command line, which finds the sandbox's bubblewrap, the shell and the
sleeps alike, whatever PID namespace they are in.
"""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path

import psutil


def marker() -> str:
    """A sleep duration no other process on the machine uses: `sleep {marker()}`."""
    return f"30.{random.randrange(10**8, 10**9)}"


def _state(pid: str) -> str | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("State:"):
                return line.split()[1]
    except OSError:
        return None
    return None


def live_processes(text: str) -> list[int]:
    """The pids of processes (not zombies) whose command line contains `text`."""
    needle = text.encode()
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline and _state(pid) not in (None, "Z"):
            found.append(int(pid))
    return found


def sleeping(text: str) -> bool:
    """Is a `sleep <text>` process running right now?"""
    needle = b"sleep\0" + text.encode() + b"\0"
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if Path(f"/proc/{pid}/cmdline").read_bytes() == needle and _state(pid) not in (None, "Z"):
                    return True
            except OSError:
                continue
    return False


async def wait_sleeping(text: str, *, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not sleeping(text):
        if loop.time() > deadline:
            raise AssertionError(f"no `sleep {text}` started within {timeout} s")
        await asyncio.sleep(0.01)


async def wait_no_live_processes(text: str, *, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while pids := live_processes(text):
        if loop.time() > deadline:
            raise AssertionError(f"processes {pids} (marker {text}) are still alive: " + "; ".join(f"{p}:{Path(f'/proc/{p}/cmdline').read_bytes()[:80]!r} ppid={Path(f'/proc/{p}/stat').read_text().split()[3]}" for p in pids))
        await asyncio.sleep(0.01)


def rss_bytes() -> int:
    """This process's resident memory."""
    return psutil.Process().memory_info().rss
