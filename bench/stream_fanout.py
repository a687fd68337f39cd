#!/usr/bin/env python3
"""Streaming fan-out benchmark: what does it cost to stream model text to WebSocket clients, and how many
streaming runs, and idle sockets, does one `manage.py serve` process carry?

Run with `make bench` (or `.venv/bin/python bench/stream_fanout.py [--quick] [--clients K] [--steps 25,50,...]
[--json PATH]`). Never run by the tests. Needs the `websockets` client library (in the venv).

What it runs, measures and judges is described in bench/README.md (`stream_fanout.py`).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import websockets
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

sys.path[:0] = [str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent)]

from common import (  # noqa: E402
    PERCENTILE_METHOD, RESULTS, finish, fmt, nearest_rank, script_text, serve_env, table,
)
from devtools.api import KeepAliveClient  # noqa: E402
from devtools.facts import (  # noqa: E402
    CpuSample, git, machine_info, main_thread_seconds, memory_mib, process_seconds, rss_mib, thread_count,
)
from devtools.process import ServerProcess  # noqa: E402
from devtools.serve import Serve  # noqa: E402
from devtools.servers import free_port, port_open  # noqa: E402

DEFAULT_JSON = RESULTS / "stream_fanout.json"

TARGET_CAPACITY_RUNS = 200
TARGET_CAPACITY_P99_MS = 100.0
CAPACITY_PACE_FRACTION = 0.9
TARGET_IDLE_SOCKETS = 2000

READY_DEADLINE_S = 30.0
FIRST_DELTA_DEADLINE_S = 60.0
STOP_DEADLINE_S = 60.0
OPEN_CONCURRENCY = 50

FANOUT_WORDS = 20000
RAW_FAST_MAX_BYTES = 1_000_000_000
CAPACITY_SCRIPT = {"turns": [{"words": 3000, "delay_ms": 20}]}
# The same words shaped as Markdown (paragraphs, bold, code), for the capacity ramp with portal tabs open.
MARKDOWN_SCRIPT = {"turns": [{"words": 3000, "delay_ms": 20, "markdown": True}]}
LATENCY_BUCKETS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)

def fanout_script(delay_ms: float) -> dict:
    return {"turns": [{"words": FANOUT_WORDS, "delay_ms": delay_ms}]}


# --- statistics ----------------------------------------------------------------------------------------


def summary(values: list[float]) -> dict:
    if not values:
        return {"n": 0, "p50": None, "p90": None, "p99": None, "max": None, "min": None, "mean": None}
    return {
        "n": len(values), **{f"p{pct}": round(nearest_rank(values, pct), 3) for pct in (50, 90, 99)},
        "max": round(max(values), 3), "min": round(min(values), 3), "mean": round(statistics.fmean(values), 3),
    }


def histogram(values: list[float]) -> dict:
    counts = Counter()
    for value in values:
        for edge in LATENCY_BUCKETS_MS:
            if value < edge:
                counts[f"<{edge}"] += 1
                break
        else:
            counts[f">={LATENCY_BUCKETS_MS[-1]}"] += 1
    return {key: counts[key] for key in [f"<{e}" for e in LATENCY_BUCKETS_MS] + [f">={LATENCY_BUCKETS_MS[-1]}"]}


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 2)


def fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}×"


def human_rate(value: float | None) -> str:
    if value is None:
        return "-"
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:.1f}{unit}"
    return f"{value:.0f}"


# --- processes, CPU and memory -------------------------------------------------------------------------


def cpu_sample(pid: int) -> CpuSample:
    """CPU seconds so far of a server process and of its main thread (the event loop)."""
    return CpuSample({"server": lambda: process_seconds(pid)}, {"main": lambda: main_thread_seconds(pid)})


def cpu_window(before: CpuSample, after: CpuSample, pid: int) -> dict:
    """The server's cores (its event-loop thread and the others), the client's and everyone else's."""
    usage = before.until(after)
    wall, seconds = usage["wall_s"], usage["seconds"]
    out: dict = {"wall_s": wall}
    if wall <= 0:
        return out
    if seconds["server"] is not None:
        out["server_cpu_s"] = round(seconds["server"], 3)
        out["server_cores"] = usage["cores"]["server"]
        if seconds["main"] is not None:
            out["server_main_thread_cores"] = usage["cores"]["main"]
            out["server_other_threads_cores"] = round((seconds["server"] - seconds["main"]) / wall, 3)
        out["server_threads"] = thread_count(pid)
    out["client_cores"] = usage["client_cores"]
    for key in ("machine_busy_cores", "others_cores", "steal_cores"):
        out[key] = usage[key]
    return out


def git_state() -> dict:
    status = git("status", "--porcelain")
    return {"head": git("rev-parse", "HEAD"), "dirty_files": status.splitlines() if status else []}


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# --- servers -------------------------------------------------------------------------------------------


def create_sessions(api: KeepAliveClient, count: int, title: str) -> list[str]:
    ids = []
    for index in range(count):
        status, data, _, _ = api.request("POST", "/api/sessions", {"title": f"{title} {index}"})
        if status != 201:
            raise RuntimeError(f"POST /api/sessions answered {status}: {data}")
        ids.append(data["id"])
    return ids


# --- clients -------------------------------------------------------------------------------------------

WS_OPTIONS = dict(compression=None, proxy=None, max_size=None, ping_interval=None, open_timeout=120,
                  close_timeout=5)


class Phase:
    """What the clients of one scenario received: every delta as (received_at, latency_ms, words, bytes, client)."""

    def __init__(self) -> None:
        self.deltas: list[tuple[float, float, int, int, int]] = []
        self.errors: list[dict] = []
        self.outcomes: Counter = Counter()
        self.runs_started = 0
        self.noncontiguous = 0
        self.closed_early = 0

    def window(self, t0: float, t1: float) -> list[tuple[float, float, int, int, int]]:
        return [d for d in self.deltas if t0 <= d[0] <= t1]


class Watcher:
    """One JSON API socket on one session: reads the snapshot, then every event; starts and stops runs."""

    def __init__(self, index: int, url: str, token: str, phase: Phase) -> None:
        self.index, self.url, self.token, self.phase = index, url, token, phase
        self.ws = None
        self.reader: asyncio.Task | None = None
        self.run_text: str | None = None  # set: start a run now and a new one whenever one finishes
        self.run_id: str | None = None
        self.finished = asyncio.Event()
        self.finished.set()
        self.first_delta = asyncio.Event()
        self.held: dict[int, int] = {}
        self.closed_code: int | None = None

    async def open(self) -> None:
        self.ws = await connect(self.url, additional_headers={"Authorization": f"Bearer {self.token}"},
                                **WS_OPTIONS)
        first = json.loads(await self.ws.recv())
        if first.get("type") != "session.snapshot":
            raise RuntimeError(f"expected the snapshot first, got {first.get('type')}")
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        phase = self.phase
        try:
            async for raw in self.ws:
                now = time.time()
                event = json.loads(raw)
                kind = event.get("type")
                if kind == "message.delta":
                    text = event["text"]
                    phase.deltas.append(
                        (now, (now - event["produced_at"]) * 1000, len(text.split()), len(raw), self.index)
                    )
                    message_id, offset = event["message_id"], event["offset"]
                    if offset != self.held.get(message_id, 0):
                        phase.noncontiguous += 1
                    self.held[message_id] = offset + len(text)
                    self.first_delta.set()
                elif kind == "run.start.result":
                    self.run_id = event["run_id"]
                    phase.runs_started += 1
                elif kind == "run.finished":
                    phase.outcomes[event["outcome"]] += 1
                    if event["run_id"] == self.run_id:
                        self.finished.set()
                        if self.run_text is not None:
                            await self._send_start()
                elif kind == "error":
                    phase.errors.append(event)
                    if event.get("command") == "run.start":
                        self.finished.set()
        except ConnectionClosed as exc:
            self.closed_code = exc.rcvd.code if exc.rcvd else None
        if self.run_text is not None or not self.finished.is_set():
            phase.closed_early += 1
        self.finished.set()

    async def _send_start(self) -> None:
        self.finished.clear()
        await self.ws.send(json.dumps({"type": "run.start", "text": self.run_text}))

    async def keep_streaming(self, text: str) -> None:
        self.run_text = text
        await self._send_start()

    async def stop(self) -> bool:
        """Stop restarting, stop the live run, and wait for its run.finished."""
        self.run_text = None
        if not self.finished.is_set():
            try:
                await self.ws.send(json.dumps({"type": "run.stop"}))
            except ConnectionClosed:
                return False
        try:
            await asyncio.wait_for(self.finished.wait(), STOP_DEADLINE_S)
            return True
        except asyncio.TimeoutError:
            return False

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.reader is not None:
            try:
                await asyncio.wait_for(self.reader, 10)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                self.reader.cancel()


class PortalTab:
    """The session page's socket on one session, as a browser tab holds it: the server renders each answer's
    Markdown for it. Counts the rendered fragments it receives."""

    def __init__(self, url: str, cookie: str, origin: str) -> None:
        self.url, self.headers = url, {"Cookie": f"sessionid={cookie}", "Origin": origin}
        self.ws = None
        self.reader: asyncio.Task | None = None
        self.rendered = 0

    async def open(self) -> None:
        self.ws = await connect(self.url, additional_headers=self.headers, **WS_OPTIONS)
        await self.ws.recv()  # the snapshot
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                self.rendered += '-tail" hx-swap-oob="innerHTML"' in raw
        except ConnectionClosed:
            pass

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.reader is not None:
            self.reader.cancel()


async def bounded(coros, limit: int = OPEN_CONCURRENCY) -> list:
    semaphore = asyncio.Semaphore(limit)

    async def one(coro):
        async with semaphore:
            return await coro

    return await asyncio.gather(*(one(c) for c in coros))


async def close_all(clients) -> None:
    await bounded([c.close() for c in clients], limit=200)


class Server(Serve):
    """`manage.py serve` on a temporary database; one bench user and token."""

    def __init__(self, tmpdir: Path, args) -> None:
        env = serve_env(tmpdir, **dict(item.partition("=")[::2] for item in args.server_env))
        if args.log_level:
            env["HARNESS_LOG_LEVEL"] = args.log_level
        super().__init__(env, tmpdir / "serve.log", preexec_fn=raise_nofile)
        self.token = self.cookie = ""
        self.api: KeepAliveClient | None = None

    def start(self) -> float:  # type: ignore[override]
        self.migrate()
        self.token = self.create_token("bench")
        self.cookie = self.login_cookie("bench")
        self.api = KeepAliveClient("127.0.0.1", self.port, self.token, timeout=60)
        return super().start(READY_DEADLINE_S)

    def watcher_cookies(self, session_ids: list[str]) -> list[str]:
        """For each session, a new user made its viewer and logged in: their `sessionid` cookies, in order. A
        portal tab per run is then one person watching their run (as a team would), not one user holding every
        tab, who would hear every run's start in every tab (N² sidebar badges)."""
        code = (
            "import json; from importlib import import_module; from django.conf import settings; "
            "from django.contrib.auth import get_user_model, login; from django.test import RequestFactory; "
            "from orchestrator.models import SessionMember; "
            "Store = import_module(settings.SESSION_ENGINE).SessionStore; keys = []\n"
            f"for sid in {json.dumps(session_ids)}:\n"
            "    user, _ = get_user_model().objects.get_or_create(username='watcher-' + sid)\n"
            "    SessionMember.objects.get_or_create(session_id=sid, user=user, defaults={'role': 'viewer'})\n"
            "    request = RequestFactory().get('/'); request.session = Store()\n"
            "    login(request, user, backend='django.contrib.auth.backends.ModelBackend'); request.session.save()\n"
            "    keys.append(request.session.session_key)\n"
            "print(json.dumps(keys))"
        )
        keys = json.loads(self.manage("shell", "-c", code).strip().splitlines()[-1])
        assert len(keys) == len(session_ids)
        return keys

    def stop(self) -> None:  # type: ignore[override]
        if self.api is not None:
            self.api.close()
        super().stop()


# --- the real thing: fan-out and capacity ----------------------------------------------------------------


def start_profiler(pid: int, path: Path | None, window_s: float) -> tuple | None:
    """py-spy (if installed) on the server for the window: collapsed stacks of every thread, idle included."""
    if path is None:
        return None
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(exe).exists():
        print("  (py-spy not found: pip install py-spy to profile)", flush=True)
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    argv = [exe, "record", "-p", str(pid), "-d", str(int(math.ceil(window_s))), "-r", "50", "--format", "raw",
            "--threads", "--idle", "-o", str(path)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE), path


def finish_profiler(profiler: tuple) -> str:
    proc, path = profiler
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return "py-spy did not finish"
    return str(path) if proc.returncode == 0 else f"py-spy failed: {err.decode(errors='replace')[-300:]}"


async def streaming_window(server: Server, *, runs: int, text: str, warmup_s: float, window_s: float,
                           stagger_s: float, label: str, profile: Path | None = None, tabs: bool = False) -> dict:
    """`runs` sessions, one watching client each, each keeping a run streaming `text`; measure one window.
    With `tabs`, each session is also open in a portal tab (Markdown rendered for it) of a user of its own, a
    viewer of that session (`watcher_cookies`)."""
    phase = Phase()
    sessions = await asyncio.to_thread(create_sessions, server.api, runs, label)
    watchers = [Watcher(i, server.ws_url(sid), server.token, phase) for i, sid in enumerate(sessions)]
    cookies = await asyncio.to_thread(server.watcher_cookies, sessions) if tabs else []
    portal = [PortalTab(server.portal_ws_url(sid), cookie, server.base_url) for sid, cookie in zip(sessions, cookies)]
    result: dict = {"runs": runs, "script": text, "warmup_s": warmup_s, "window_s": window_s,
                    "portal_tabs": len(portal)}
    try:
        await bounded([w.open() for w in watchers] + [t.open() for t in portal])
        for watcher in watchers:
            await watcher.keep_streaming(text)
            if stagger_s:
                await asyncio.sleep(stagger_s / runs)
        started = time.monotonic()
        waiting = [asyncio.ensure_future(w.first_delta.wait()) for w in watchers]
        done, pending = await asyncio.wait(waiting, timeout=FIRST_DELTA_DEADLINE_S)
        for task in pending:
            task.cancel()
        result["streaming_after_s"] = round(time.monotonic() - started, 3)
        result["runs_without_delta"] = len(pending)
        await asyncio.sleep(warmup_s)
        profiler = start_profiler(server.pid, profile, window_s)
        before = cpu_sample(server.pid)
        rss_before = rss_mib(server.pid)
        t0 = time.time()
        await asyncio.sleep(window_s)
        t1 = time.time()
        after = cpu_sample(server.pid)
        if profiler is not None:
            result["profile"] = await asyncio.to_thread(finish_profiler, profiler)
        result["rss_mib"] = rss_mib(server.pid)
        result["rss_mib_window_start"] = rss_before
        stopped = await asyncio.gather(*(w.stop() for w in watchers))
        result["runs_not_stopped"] = sum(1 for ok in stopped if not ok)
    finally:
        for watcher in watchers:
            watcher.run_text = None
        result["portal_rendered_fragments"] = sum(t.rendered for t in portal)
        await close_all(watchers + portal)

    deltas = phase.window(t0, t1)
    wall = t1 - t0
    latencies = [d[1] for d in deltas]
    words = sum(d[2] for d in deltas)
    frame_bytes = [d[3] for d in deltas]
    per_client_words = Counter()
    per_client_frames = Counter()
    for d in deltas:
        per_client_words[d[4]] += d[2]
        per_client_frames[d[4]] += 1
    pace = [per_client_words.get(i, 0) / wall for i in range(runs)]
    cpu = cpu_window(before, after, server.pid)
    server_cpu = cpu.get("server_cpu_s")
    result.update(
        frames=len(deltas), words=words, bytes=sum(frame_bytes),
        frames_per_s=round(len(deltas) / wall, 1), tokens_per_s=round(words / wall, 1),
        bytes_per_s=round(sum(frame_bytes) / wall, 1),
        per_client_frames_per_s=round(statistics.fmean(per_client_frames.get(i, 0) for i in range(runs)) / wall, 2),
        per_run_tokens_per_s=summary(pace), frame_bytes=summary(frame_bytes),
        words_per_frame=round(words / len(deltas), 2) if deltas else None,
        latency_ms=summary(latencies), latency_histogram_ms=histogram(latencies),
        cpu=cpu,
        server_cpu_us_per_frame=round(server_cpu / len(deltas) * 1e6, 1) if deltas and server_cpu is not None else None,
        server_cpu_us_per_token=round(server_cpu / words * 1e6, 2) if words and server_cpu is not None else None,
        noncontiguous_deltas=phase.noncontiguous, errors=len(phase.errors),
        error_codes=dict(Counter(e.get("code") for e in phase.errors)), runs_started=phase.runs_started,
        outcomes=dict(phase.outcomes), sockets_closed_early=phase.closed_early,
    )
    return result


async def idle_sockets(pid: int, urls: list[str], token: str | None, settle_s: float, window_s: float,
                       profile: Path | None = None) -> dict:
    phase = Phase()
    rss_before = rss_mib(pid)
    headers = {"Authorization": f"Bearer {token}"} if token else None
    sockets = []
    opened_at = time.monotonic()
    failures = Counter()

    async def open_one(url: str):
        try:
            ws = await connect(url, additional_headers=headers, **WS_OPTIONS)
        except Exception as exc:  # noqa: BLE001 - counted and reported
            failures[type(exc).__name__] += 1
            return
        sockets.append(ws)
        if token:  # the JSON API: its first frame is the snapshot
            try:
                first = json.loads(await asyncio.wait_for(ws.recv(), 60))
                if first.get("type") != "session.snapshot":
                    failures["no_snapshot"] += 1
            except Exception as exc:  # noqa: BLE001
                failures[f"snapshot:{type(exc).__name__}"] += 1

    try:
        await bounded([open_one(url) for url in urls], limit=100)
        open_s = time.monotonic() - opened_at
        await asyncio.sleep(settle_s)
        profiler = start_profiler(pid, profile, window_s)
        before = cpu_sample(pid)
        await asyncio.sleep(window_s)
        after = cpu_sample(pid)
        if profiler is not None:
            await asyncio.to_thread(finish_profiler, profiler)
        still_open = sum(1 for ws in sockets if ws.close_code is None)
        rss_after = rss_mib(pid)
    finally:
        await bounded([ws.close() for ws in sockets], limit=200)
    cpu = cpu_window(before, after, pid)
    per_socket_kib = None
    if rss_before is not None and rss_after is not None and still_open:
        per_socket_kib = round((rss_after - rss_before) * 1024 / still_open, 1)
    return {
        "sockets_requested": len(urls), "sockets_open": still_open, "open_failures": dict(failures),
        "open_s": round(open_s, 2), "settle_s": settle_s, "window_s": window_s, "cpu": cpu,
        "server_cpu_pct": round(cpu.get("server_cores", 0) * 100, 2) if "server_cores" in cpu else None,
        "rss_mib_before": rss_before, "rss_mib": rss_after, "rss_kib_per_socket": per_socket_kib,
        "errors": len(phase.errors),
    }


# --- the baseline: raw Daphne --------------------------------------------------------------------------


class RawDaphne(ServerProcess):
    def __init__(self, tmpdir: Path) -> None:
        self.port = free_port()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("DJANGO_SETTINGS_MODULE", None)
        # -v 0: no access log (manage.py serve has none either); no WebSocket timeout, as in serve.
        super().__init__([sys.executable, "-m", "daphne", "-v", "0", "--websocket_timeout", "-1", "-b", "127.0.0.1",
                          "-p", str(self.port), "bench.raw_ws_app:application"], env, tmpdir / "raw_daphne.log",
                         preexec_fn=raise_nofile)

    def start(self) -> float:  # type: ignore[override]
        super().start()
        return self.wait_ready(lambda: port_open(self.port), READY_DEADLINE_S)

    def url(self, n: int, size: int, interval_ms: float) -> str:
        return f"ws://127.0.0.1:{self.port}/?n={n}&size={size}&interval_ms={interval_ms:g}"


async def raw_stream(raw: RawDaphne, *, clients: int, per_client: int, size: int, interval_ms: float,
                     label: str) -> dict:
    """`clients` sockets, each receiving `per_client` frames of `size` bytes; the whole exchange is measured."""
    samples: list[tuple[float, float, int]] = []
    incomplete = 0

    async def receive(url: str) -> None:
        nonlocal incomplete
        count = 0
        async with connect(url, **WS_OPTIONS) as ws:
            while count < per_client:
                try:
                    frame = await asyncio.wait_for(ws.recv(), 60)
                except (asyncio.TimeoutError, ConnectionClosed):
                    incomplete += 1
                    return
                now = time.time()
                samples.append((now, (now - json.loads(frame)["t"]) * 1000, len(frame)))
                count += 1

    url = raw.url(per_client, size, interval_ms)
    before = cpu_sample(raw.pid)
    await bounded([receive(url) for _ in range(clients)], limit=clients)
    cpu = cpu_window(before, cpu_sample(raw.pid), raw.pid)
    wall = cpu["wall_s"]
    latencies = [s[1] for s in samples]
    frame_bytes = [s[2] for s in samples]
    server_cpu = cpu.get("server_cpu_s")
    return {
        "label": label, "clients": clients, "per_client": per_client, "size": size, "interval_ms": interval_ms,
        "frames": len(samples), "bytes": sum(frame_bytes), "frames_per_s": round(len(samples) / wall, 1),
        "bytes_per_s": round(sum(frame_bytes) / wall, 1), "frame_bytes": summary(frame_bytes),
        "latency_ms": summary(latencies), "latency_histogram_ms": histogram(latencies), "cpu": cpu,
        "server_cpu_us_per_frame": round(server_cpu / len(samples) * 1e6, 1) if samples and server_cpu else None,
        "incomplete_clients": incomplete,
    }


# --- reporting -----------------------------------------------------------------------------------------


def lat(summary_: dict) -> str:
    return f"{fmt(summary_['p50'])} / {fmt(summary_['p99'])}"


def cores(cpu: dict, key: str = "server_cores") -> str:
    return fmt(cpu.get(key), 2)


def report(results: dict) -> str:
    out: list[str] = []
    fan = results.get("fanout", {})
    raws = results.get("raw", {})
    rows = []
    for name, res in fan.items():
        rows.append([
            name, str(res["runs"]), human_rate(res["tokens_per_s"]), human_rate(res["frames_per_s"]),
            human_rate(res["bytes_per_s"]) + "B", fmt(res["frame_bytes"]["p50"], 0), lat(res["latency_ms"]),
            f"{cores(res['cpu'])} ({cores(res['cpu'], 'server_main_thread_cores')}+"
            f"{cores(res['cpu'], 'server_other_threads_cores')})",
            fmt(res["server_cpu_us_per_token"], 2), fmt(res["server_cpu_us_per_frame"], 0),
            cores(res["cpu"], "client_cores"), cores(res["cpu"], "others_cores"),
        ])
    for name, res in raws.items():
        if "frames_per_s" not in res:
            continue
        rows.append([
            name, str(res["clients"]), "-", human_rate(res["frames_per_s"]), human_rate(res["bytes_per_s"]) + "B",
            fmt(res["frame_bytes"]["p50"], 0), lat(res["latency_ms"]),
            f"{cores(res['cpu'])} ({cores(res['cpu'], 'server_main_thread_cores')}+"
            f"{cores(res['cpu'], 'server_other_threads_cores')})",
            "-", fmt(res["server_cpu_us_per_frame"], 0), cores(res["cpu"], "client_cores"),
            cores(res["cpu"], "others_cores"),
        ])
    if rows:
        out.append(table(["scenario", "clients", "tokens/s", "frames/s", "bytes/s", "frame B p50",
                          "latency p50 / p99 (ms)", "server cores (loop+db)", "CPU µs/token", "CPU µs/frame",
                          "client cores", "other procs"], rows))
        out.append("")
    rows = []
    for name, res in results.get("ratios", {}).items():
        rows.append([name, res["against"], fmt_ratio(res.get("cpu_per_frame")), fmt_ratio(res.get("latency_p50")),
                     fmt_ratio(res.get("latency_p99"))])
    if rows:
        out.append(table(["real", "raw baseline", "CPU/frame ×", "latency p50 ×", "latency p99 ×"], rows))
        out.append("")
    for key in ("capacity", "capacity_markdown"):
        cap = results.get(key, {})
        if not cap.get("steps"):
            continue
        rows = []
        for res in cap["steps"]:
            pace = res["per_run_tokens_per_s"]
            rows.append([
                str(res["runs"]), human_rate(res["tokens_per_s"]), human_rate(res["frames_per_s"]),
                lat(res["latency_ms"]), fmt(res["latency_ms"]["max"]),
                f"{fmt(pace['p50'])} ({fmt(res['pace_pct'], 0)}%)", fmt(pace["min"]),
                f"{cores(res['cpu'])} ({cores(res['cpu'], 'server_main_thread_cores')}+"
                f"{cores(res['cpu'], 'server_other_threads_cores')})",
                fmt(res["server_cpu_us_per_frame"], 0), cores(res["cpu"], "client_cores"),
                cores(res["cpu"], "others_cores"),
                str(res["noncontiguous_deltas"]), str(res["runs_without_delta"] + res["errors"]),
                "PASS" if res["pass"] else "MISS",
            ])
        out.append(table(["runs", "tokens/s", "frames/s", "latency p50 / p99 (ms)", "max (ms)",
                          "per-run tokens/s p50 (pace)", "min", "server cores (loop+db)", "CPU µs/frame",
                          "client cores", "other procs", "gaps", "failures", "step"], rows))
        out.append(f"{key}: {cap['capacity']} runs ({cap['criterion']}); by p99 alone: "
                   f"{cap['capacity_latency_only']} runs")
        projection = cap.get("projection")
        if projection:
            out.append(
                f"{projection['runs']} healthy runs would make {projection['frames_per_s']:g} frames/s: at the "
                f"{projection['from_step']}-run step's {projection['cpu_us_per_frame_used']:g} µs/frame that is "
                f"{projection['server_cores_at_measured_cost']:g} cores of one process (one GIL: at most ~1); raw "
                f"Daphne carried it with {fmt(projection['raw_daphne_cores'], 2)} cores"
            )
        out.append("")
    idle = results.get("idle", {})
    rows = []
    for name, res in idle.items():
        rows.append([name, f"{res['sockets_open']}/{res['sockets_requested']}", fmt(res["open_s"]),
                     fmt(res["server_cpu_pct"], 2), fmt(res["rss_mib_before"]), fmt(res["rss_mib"]),
                     fmt(res["rss_kib_per_socket"])])
    if rows:
        out.append(table(["idle", "sockets open", "open time (s)", "server CPU % of a core", "RSS before (MiB)",
                          "RSS (MiB)", "KiB/socket"], rows))
        out.append("")
    for verdict in results.get("verdicts", []):
        out.append(f"{'PASS' if verdict['pass'] else 'MISS'}  {verdict['what']} = {verdict['value']} "
                   f"(target {verdict['target']})")
    for note in results.get("notes", []):
        out.append(f"note: {note}")
    return "\n".join(out)


# --- main ----------------------------------------------------------------------------------------------


def parse_list(value: str, kind=int) -> list:
    return [kind(x) for x in value.split(",") if x.strip()]


async def capacity_ramp(server: Server, args, step_runs: list[int], script: dict, *, tabs: bool) -> dict:
    """Streaming runs step by step (with a portal tab each, rendering Markdown, when `tabs`): the largest step
    whose p99 delta latency and per-run pace hold."""
    steps = []
    nominal = 1000 / script["turns"][0]["delay_ms"]
    reference = None  # the median per-run pace at the lowest step: the script's unloaded pace here
    kind = "capacity with Markdown tabs" if tabs else "capacity"
    for runs in step_runs:
        print(f"{kind}: {runs} streaming runs, {args.capacity_window:g} s window …", flush=True)
        res = await streaming_window(
            server, runs=runs, text=script_text(script), warmup_s=args.capacity_warmup,
            window_s=args.capacity_window, stagger_s=min(5.0, runs * 0.02), label=f"{kind} {runs}",
            profile=(args.profile_dir / f"{'markdown' if tabs else 'capacity'}_{runs}.pyspy.txt"
                     if args.profile_dir and runs in args.profile_steps else None),
            tabs=tabs,
        )
        pace = res["per_run_tokens_per_s"]["p50"] or 0
        reference = reference or pace or nominal
        res["nominal_tokens_per_s"] = nominal
        res["reference_tokens_per_s"] = reference
        res["pace_pct"] = round(100 * pace / reference, 1)
        p99 = res["latency_ms"]["p99"]
        res["pass_latency"] = p99 is not None and p99 <= TARGET_CAPACITY_P99_MS
        res["pass_pace"] = pace >= CAPACITY_PACE_FRACTION * reference
        res["pass"] = (res["pass_latency"] and res["pass_pace"] and not res["runs_without_delta"]
                       and not res["errors"] and not res["sockets_closed_early"]
                       and (not tabs or res["portal_rendered_fragments"] > 0))
        steps.append(res)
        print(f"  latency p50/p99 {lat(res['latency_ms'])} ms, pace {fmt(pace)} tokens/s/run "
              f"({res['pace_pct']:.0f}%), server {cores(res['cpu'])} cores, client "
              f"{cores(res['cpu'], 'client_cores')} cores"
              + (f", {res['portal_rendered_fragments']} rendered fragments to tabs" if tabs else "")
              + f" → {'PASS' if res['pass'] else 'MISS'}", flush=True)
        await asyncio.sleep(args.pause)
        if res["runs_without_delta"] > runs // 2 and runs != step_runs[-1]:
            args.notes.append(f"{kind} ramp ended at {runs} runs: most runs never streamed")
            break
    passing = [s["runs"] for s in steps if s["pass"]]
    by_latency = [s["runs"] for s in steps if s["pass_latency"]]
    return {
        "script": script, "steps": steps, "capacity": max(passing) if passing else 0,
        "capacity_latency_only": max(by_latency) if by_latency else 0, "portal_tabs": tabs,
        "criterion": f"p99 ≤ {TARGET_CAPACITY_P99_MS:g} ms, median per-run pace ≥ "
                     f"{CAPACITY_PACE_FRACTION:.0%} of the lowest step's ({reference} tokens/s; the script's "
                     f"nominal pace is {nominal:g}), no failed run",
    }


async def run_all(args, tmpdir: Path, results: dict) -> None:
    server = Server(tmpdir, args)
    notes = args.notes = results["notes"]
    try:
        ready = server.start()
        print(f"serve up on 127.0.0.1:{server.port} after {ready:.2f} s (pid {server.pid})", flush=True)
        results["serve_rss_mib_at_start"] = rss_mib(server.pid)

        if "fanout" in args.scenarios:
            for delay in args.fanout_delays:
                name = f"fanout_delay{delay:g}"
                print(f"{name}: {args.clients} clients, {args.window:g} s window …", flush=True)
                res = await streaming_window(
                    server, runs=args.clients, text=script_text(fanout_script(delay)), warmup_s=args.warmup,
                    window_s=args.window, stagger_s=0, label=name,
                    profile=args.profile_dir / f"{name}.pyspy.txt" if args.profile_dir else None,
                )
                res["delay_ms"] = delay
                results["fanout"][name] = res
                print(f"  {human_rate(res['tokens_per_s'])} tokens/s, {res['frames_per_s']} frames/s, latency p50/p99 "
                      f"{lat(res['latency_ms'])} ms, server {cores(res['cpu'])} cores, client "
                      f"{cores(res['cpu'], 'client_cores')} cores", flush=True)
                await asyncio.sleep(args.pause)

        if "capacity" in args.scenarios:
            results["capacity"] = await capacity_ramp(server, args, args.steps, CAPACITY_SCRIPT, tabs=False)
        if "markdown" in args.scenarios:
            results["capacity_markdown"] = await capacity_ramp(server, args, args.markdown_steps,
                                                               MARKDOWN_SCRIPT, tabs=True)

        if "idle" in args.scenarios:
            print(f"idle: {args.idle} sockets on the JSON API …", flush=True)
            sessions = await asyncio.to_thread(create_sessions, server.api, args.idle_sessions, "idle")
            urls = [server.ws_url(sessions[i % len(sessions)]) for i in range(args.idle)]
            res = await idle_sockets(server.pid, urls, server.token, args.idle_settle, args.idle_window,
                                     profile=args.profile_dir / "idle.pyspy.txt" if args.profile_dir else None)
            res["sessions"] = len(sessions)
            results["idle"]["serve_json_api"] = res
            print(f"  {res['sockets_open']} open, server {fmt(res['server_cpu_pct'], 2)}% of a core, RSS "
                  f"{fmt(res['rss_mib'])} MiB", flush=True)
        results["serve_rss_mib_at_end"] = rss_mib(server.pid)
    finally:
        server.stop()
        if args.server_log:
            args.server_log.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(server.log_path, args.server_log)
    problems = server_log_problems(server.log_path)
    results["server_log_problems"] = problems
    if problems:
        notes.append(f"the server logged {len(problems)} error(s)/traceback(s), e.g. {problems[0][:300]}")

    raw = RawDaphne(tmpdir)
    try:
        ready = raw.start()
        print(f"raw Daphne up on 127.0.0.1:{raw.port} after {ready:.2f} s (pid {raw.pid})", flush=True)
        fan = results["fanout"]
        for name, res in fan.items():
            if not res["frames"]:
                continue
            variant = name.removeprefix("fanout_")
            size = int(res["frame_bytes"]["p50"])
            # As many frames as --raw-messages, but at most RAW_FAST_MAX_BYTES in all (delay-0 frames are big).
            per_client = max(10, min(args.raw_messages, RAW_FAST_MAX_BYTES // size) // args.clients)
            print(f"raw_fast_{variant}: {args.clients} clients × {per_client} frames of {size} B …", flush=True)
            results["raw"][f"raw_fast_{variant}"] = await raw_stream(
                raw, clients=args.clients, per_client=per_client, size=size, interval_ms=0,
                label=f"as fast as possible, frames like {name}",
            )
            rate = res["per_client_frames_per_s"] or 20
            print(f"raw_paced_{variant}: {args.clients} clients × {rate:g} frames/s of {size} B …", flush=True)
            results["raw"][f"raw_paced_{variant}"] = await raw_stream(
                raw, clients=args.clients, per_client=max(1, int(args.window * rate)), size=size,
                interval_ms=round(1000 / rate, 2), label=f"paced like {name}",
            )
            results["ratios"][name] = {"against": f"raw_paced_{variant}",
                                       **compare(res, results["raw"][f"raw_paced_{variant}"])}
            results["ratios"][f"{name} (vs fast)"] = {"against": f"raw_fast_{variant}", "cpu_per_frame": ratio(
                res["server_cpu_us_per_frame"], results["raw"][f"raw_fast_{variant}"]["server_cpu_us_per_frame"])}
        cap = results.get("capacity", {})
        steps = {s["runs"]: s for s in cap.get("steps", [])}
        if steps:
            # Raw Daphne at the load healthy runs would make: the lowest step's per-client frame rate and size,
            # for as many clients as the largest passing step (or the lowest) and as the target.
            reference = steps[min(steps)]
            rate = reference["per_client_frames_per_s"] or 20
            size = int(reference["frame_bytes"]["p50"] or args.raw_size)
            passing = cap["capacity"] or min(steps)
            for runs in sorted({passing, TARGET_CAPACITY_RUNS}):
                name = f"raw_capacity_{runs}"
                print(f"{name}: {runs} clients × {rate:g} frames/s of {size} B …", flush=True)
                results["raw"][name] = await raw_stream(
                    raw, clients=runs, per_client=max(1, int(args.capacity_window * rate)), size=size,
                    interval_ms=round(1000 / rate, 2), label=f"{runs} clients paced like healthy capacity runs",
                )
                if runs in steps:
                    results["ratios"][f"capacity_{runs}"] = {"against": name, **compare(steps[runs], results["raw"][name])}
            per_frame = steps[passing]["server_cpu_us_per_frame"]
            if per_frame:
                cap["projection"] = {
                    "runs": TARGET_CAPACITY_RUNS, "frames_per_s": round(TARGET_CAPACITY_RUNS * rate, 1),
                    "server_cores_at_measured_cost": round(TARGET_CAPACITY_RUNS * rate * per_frame / 1e6, 2),
                    "cpu_us_per_frame_used": per_frame, "from_step": passing,
                    "raw_daphne_cores": results["raw"][f"raw_capacity_{TARGET_CAPACITY_RUNS}"]["cpu"].get("server_cores"),
                }
        if "idle" in args.scenarios:
            print(f"raw_idle: {args.idle} idle sockets …", flush=True)
            urls = [raw.url(0, 0, 0)] * args.idle
            res = await idle_sockets(raw.pid, urls, None, args.idle_settle, args.idle_window)
            results["idle"]["raw_daphne"] = res
            print(f"  {res['sockets_open']} open, server {fmt(res['server_cpu_pct'], 2)}% of a core, RSS "
                  f"{fmt(res['rss_mib'])} MiB", flush=True)
    finally:
        raw.stop()


def server_log_problems(path: Path, limit: int = 20) -> list[str]:
    """ERROR/WARNING lines and each traceback's exception line (the first unindented line after it)."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    problems, in_traceback = [], False
    for line in lines:
        if line.startswith("Traceback"):
            in_traceback = True
        elif in_traceback and line and not line.startswith((" ", "\t")):
            problems.append(f"exception: {line.strip()}")
            in_traceback = False
        elif " ERROR " in line or " WARNING " in line or line.startswith(("ERROR", "WARNING")):
            problems.append(line.strip())
    return problems[:limit]


def compare(real: dict, raw: dict) -> dict:
    return {
        "cpu_per_frame": ratio(real["server_cpu_us_per_frame"], raw["server_cpu_us_per_frame"]),
        "latency_p50": ratio(real["latency_ms"]["p50"], raw["latency_ms"]["p50"]),
        "latency_p99": ratio(real["latency_ms"]["p99"], raw["latency_ms"]["p99"]),
    }


def verdicts(results: dict) -> list[dict]:
    out = []
    cap = results.get("capacity")
    if cap and cap.get("steps"):
        out.append({"what": "capacity: concurrent streaming runs with p99 ≤ 100 ms at pace",
                    "value": cap["capacity"], "target": f"≥ {TARGET_CAPACITY_RUNS}",
                    "pass": cap["capacity"] >= TARGET_CAPACITY_RUNS})
    cap = results.get("capacity_markdown")
    if cap and cap.get("steps"):
        top = max(s["runs"] for s in cap["steps"])
        out.append({"what": f"capacity with Markdown tabs: streaming runs (each also open in a rendering portal tab) "
                            f"with p99 ≤ 100 ms at pace, of {top} tried",
                    "value": cap["capacity"], "target": f"= {top}", "pass": cap["capacity"] >= top})
    idle = results.get("idle", {}).get("serve_json_api")
    if idle:
        out.append({"what": "idle: JSON API sockets held open", "value": idle["sockets_open"],
                    "target": f"≥ {TARGET_IDLE_SOCKETS}", "pass": idle["sockets_open"] >= TARGET_IDLE_SOCKETS})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 3 clients, 3 s windows, steps 5,10, 100 idle sockets")
    parser.add_argument("--clients", type=int, default=10, help="fan-out clients (default 10)")
    parser.add_argument("--fanout-delays", default="0,1",
                        help="script delay_ms values for the fan-out runs (default 0,1)")
    parser.add_argument("--window", type=float, default=10.0, help="fan-out measuring window, s (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="fan-out warm-up, s (default 2)")
    parser.add_argument("--steps", default="25,50,100,200,300", help="capacity steps (default 25,50,100,200,300)")
    parser.add_argument("--markdown-steps", default="200,300",
                        help="capacity steps with a portal tab per run rendering Markdown (default 200,300)")
    parser.add_argument("--capacity-window", type=float, default=15.0, help="capacity window, s (default 15)")
    parser.add_argument("--capacity-warmup", type=float, default=3.0, help="capacity warm-up, s (default 3)")
    parser.add_argument("--idle", type=int, default=TARGET_IDLE_SOCKETS, help="idle sockets (default 2000)")
    parser.add_argument("--idle-sessions", type=int, default=20, help="sessions the idle sockets watch (default 20)")
    parser.add_argument("--idle-window", type=float, default=10.0, help="idle CPU window, s (default 10)")
    parser.add_argument("--idle-settle", type=float, default=3.0, help="wait after opening, s (default 3)")
    parser.add_argument("--raw-messages", type=int, default=40000, help="raw_fast frames in all (default 40000)")
    parser.add_argument("--raw-size", type=int, default=200, help="raw frame size when no delta was seen")
    parser.add_argument("--pause", type=float, default=2.0, help="pause between scenarios, s (default 2)")
    parser.add_argument("--scenarios", default="fanout,capacity,markdown,idle",
                        help="subset of fanout,capacity,markdown,idle "
                        "(the raw baselines always run, for the scenarios chosen)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"result file (default {DEFAULT_JSON})")
    parser.add_argument("--log-level", default=None, help="HARNESS_LOG_LEVEL for the server (e.g. DEBUG)")
    parser.add_argument("--server-log", type=Path, default=None, help="keep the server's output in this file")
    parser.add_argument("--server-env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for manage.py serve (repeatable), e.g. HARNESS_CHECKPOINT_SECONDS=1")
    parser.add_argument("--strict", action="store_true", help="exit with status 1 when a target is missed")
    parser.add_argument("--profile-dir", type=Path, default=None,
                        help="profile the server with py-spy during each measuring window (capacity: only the "
                             "--profile-steps) and write collapsed stacks here (py-spy costs CPU: not for the "
                             "reported run)")
    parser.add_argument("--profile-steps", default="", help="capacity steps to profile (default: all)")
    args = parser.parse_args(argv)
    if args.quick:
        args.clients, args.window, args.warmup = 3, 3.0, 1.0
        args.steps, args.capacity_window, args.capacity_warmup = "5,10", 3.0, 1.0
        args.markdown_steps = "5"
        args.idle, args.idle_sessions, args.idle_window, args.idle_settle = 100, 5, 3.0, 1.0
        args.raw_messages, args.pause = 3000, 0.5
    args.fanout_delays = parse_list(args.fanout_delays, float)
    args.steps = parse_list(args.steps)
    args.markdown_steps = parse_list(args.markdown_steps)
    args.profile_steps = parse_list(args.profile_steps) or args.steps + args.markdown_steps
    args.scenarios = {s.strip() for s in args.scenarios.split(",") if s.strip()}
    unknown = args.scenarios - {"fanout", "capacity", "markdown", "idle"}
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")

    nofile = raise_nofile()
    needed = max([args.idle, *args.steps, *(2 * n for n in args.markdown_steps), args.clients]) + 100
    if nofile < needed:
        print(f"warning: the open-files limit is {nofile}, below the {needed} this run needs", flush=True)
    load_before = os.getloadavg()
    if load_before[0] > 0.5:
        print(f"warning: load average {load_before[0]:.2f} before the run: other processes share the CPUs",
              flush=True)
    results: dict = {"fanout": {}, "raw": {}, "ratios": {}, "idle": {}, "notes": []}
    began = datetime.datetime.now(datetime.timezone.utc)
    with tempfile.TemporaryDirectory(prefix="harness-fanout-") as tmp:
        asyncio.run(run_all(args, Path(tmp), results))
    ended = datetime.datetime.now(datetime.timezone.utc)
    for name, res in {**results["fanout"], **{f"{key} {s['runs']}": s for key in ("capacity", "capacity_markdown")
                                              for s in results.get(key, {}).get("steps", [])}}.items():
        if res["cpu"].get("others_cores", 0) + res["cpu"].get("steal_cores", 0) > 0.2:
            results["notes"].append(f"{name}: other processes used {res['cpu']['others_cores']:.2f} cores during the "
                                    "window — the machine was not quiet; numbers are inflated")
        if res["cpu"].get("client_cores", 0) > 0.85:
            results["notes"].append(f"{name}: the bench client used {res['cpu']['client_cores']:.2f} cores — it may "
                                    "be the bottleneck (receive times and so latencies are inflated)")
        if res["noncontiguous_deltas"]:
            results["notes"].append(f"{name}: {res['noncontiguous_deltas']} deltas did not continue where the "
                                    "previous one ended (a dropped event refilled from the checkpoint)")
    results["verdicts"] = verdicts(results)
    text = report(results)
    print()
    print(text)
    all_pass = all(v["pass"] for v in results["verdicts"])
    print()
    output = {
        "benchmark": "stream_fanout",
        "date": began.isoformat(timespec="seconds"),
        "finished": ended.isoformat(timespec="seconds"),
        "machine": machine_info(websockets=websockets.__version__, memory_mib=memory_mib()),
        "git": git_state(),
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "config": {
            "clients": args.clients, "fanout_delays_ms": args.fanout_delays, "fanout_words": FANOUT_WORDS,
            "window_s": args.window, "warmup_s": args.warmup, "steps": args.steps,
            "capacity_window_s": args.capacity_window, "capacity_warmup_s": args.capacity_warmup,
            "capacity_script": CAPACITY_SCRIPT, "idle_sockets": args.idle, "idle_sessions": args.idle_sessions,
            "idle_window_s": args.idle_window, "raw_messages": args.raw_messages, "quick": args.quick,
            "server_env": args.server_env,
            "server": "manage.py serve (Daphne + orchestrator worker, SQLite, in-memory channel layer, scripted "
                      "model); baseline: python -m daphne bench.raw_ws_app:application",
            "latency": "client time.time() at frame read minus the delta's produced_at (raw: minus the frame's t)",
        },
        "percentile_method": PERCENTILE_METHOD,
        "targets": {"capacity_runs": TARGET_CAPACITY_RUNS, "capacity_p99_ms": TARGET_CAPACITY_P99_MS,
                    "capacity_pace_fraction": CAPACITY_PACE_FRACTION, "idle_sockets": TARGET_IDLE_SOCKETS,
                    "all_pass": all_pass},
        **results,
    }
    return finish(args.json, output, text, all_pass=all_pass, strict=args.strict)


if __name__ == "__main__":
    sys.exit(main())
