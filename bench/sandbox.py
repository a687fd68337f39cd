"""The sandbox's cost and its stop: what bubblewrap adds to a `shell` call, and how fast a stop leaves no
process of a sandboxed command alive.

1. Start-up: the `shell` tool running `true`, 100 calls each (interleaved, so noise hits all alike):
   - `sandboxed`: the tool as it runs (bubblewrap, limits, capped output);
   - `unsafe`: the same tool and code path without bubblewrap (HARNESS_UNSAFE_TOOLS, no bwrap);
   - `plain`: the tool as it was before the sandbox (`/bin/sh -c` under asyncio, `communicate()`), as a peer.
   Target: sandboxed − unsafe ≤ 20 ms at the median.
2. Stop → tree gone, through a real `manage.py serve` over HTTP: a session's approved shell runs
   `sleep S & sleep S; wait`; once both sleeps exist in /proc, `POST /api/sessions/<id>/stop`; the time from
   sending it until no process carrying the run's marker is alive in /proc (polled every 0.5 ms).
   Target p99 ≤ 100 ms.

    .venv/bin/python bench/sandbox.py            # 100 calls / 100 stops (~1 min)
    .venv/bin/python bench/sandbox.py --quick    # 10 each, smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent)]

from common import (  # noqa: E402
    PERCENTILE_METHOD, RESULTS, fmt, nearest_rank, script_text, serve_env, table, write_results,
)
from devtools.api import KeepAliveClient  # noqa: E402
from devtools.facts import cpu_model, git  # noqa: E402
from devtools.processes import live_processes, marker as new_marker  # noqa: E402
from devtools.serve import Serve  # noqa: E402
from devtools.servers import sandbox_reachable_dir  # noqa: E402
from devtools.waiting import wait_for  # noqa: E402

DEFAULT_JSON = RESULTS / "sandbox.json"
TARGET_ADDED_MEDIAN_MS = 20.0
TARGET_GONE_P99_MS = 100.0


def stats(values: list[float]) -> dict:
    return {"n": len(values), "p50": nearest_rank(values, 50), "p90": nearest_rank(values, 90),
            "p99": nearest_rank(values, 99), "max": max(values) if values else None}


# --- 1. start-up cost (in this process, the tool itself) ------------------------------------------------


async def plain_shell(command: str, workspace: Path) -> str:
    """The shell tool before the sandbox (commit 5e3db6a), minus its output cap: the peer."""
    process = await asyncio.create_subprocess_exec(
        "/bin/sh", "-c", command, cwd=workspace, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True,
    )
    output, _ = await process.communicate()
    return f"exit code {process.returncode}\n{output.decode()}"


async def startup_costs(calls: int, workspace_root: Path) -> dict[str, list[float]]:
    from django.conf import settings

    from orchestrator.tools.builtin.shell import shell
    from orchestrator.tools.registry import ToolContext

    context = ToolContext(run_id="bench", session_id="bench", workspace=workspace_root / "bench")

    async def sandboxed() -> str:
        settings.HARNESS_BWRAP, settings.HARNESS_UNSAFE_TOOLS = "bwrap", False
        return await shell.run({"command": "true"}, context)

    async def unsafe() -> str:
        settings.HARNESS_BWRAP, settings.HARNESS_UNSAFE_TOOLS = "/nonexistent/bwrap", True
        return await shell.run({"command": "true"}, context)

    async def plain() -> str:
        return await plain_shell("true", context.workspace)

    variants = {"sandboxed": sandboxed, "unsafe": unsafe, "plain": plain}
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for name, call in variants.items():  # warm-up: the sandbox probe, imports, page cache
        assert (await call()) == "exit code 0\n", name
    for _ in range(calls):
        order = list(variants)
        random.shuffle(order)
        for name in order:
            started = time.perf_counter()
            result = await variants[name]()
            samples[name].append((time.perf_counter() - started) * 1000)
            assert result == "exit code 0\n", (name, result)
    settings.HARNESS_BWRAP, settings.HARNESS_UNSAFE_TOOLS = "bwrap", False
    return samples


# --- 2. stop → process tree gone (a real server) --------------------------------------------------------


def stop_trial(client: KeepAliveClient) -> dict:
    marker = new_marker()
    command = f"sleep {marker} & sleep {marker}; wait"
    status, session, _, _ = client.request("POST", "/api/sessions", {"title": "bench"})
    sid = session["id"]
    text = script_text({"turns": [{"calls": [{"name": "shell", "arguments": {"command": command}}]},
                                  {"text": "never"}]})
    client.request("POST", f"/api/sessions/{sid}/runs", {"text": text})

    def pending() -> list:
        return client.request("GET", f"/api/sessions/{sid}")[1]["pending_approvals"]

    wait_for(pending, 10, interval_s=0.002, what="the approval")
    client.request("POST", f"/api/approvals/{pending()[0]['id']}", {"decision": "approve"})
    wait_for(lambda: live_processes(f"sleep\0{marker}\0"), 10, interval_s=0.002, what="the command's sleeps")
    sent = time.perf_counter()
    status, body, response_ms, _ = client.request("POST", f"/api/sessions/{sid}/stop")
    assert status == 200 and body["accepted"], body
    wait_for(lambda: not live_processes(marker), 10, interval_s=0.0005, what=f"no process of {marker} alive")
    return {"stop_response_ms": response_ms, "stop_gone_ms": (time.perf_counter() - sent) * 1000}


def stop_trials(trials: int, tmpdir: Path, workspace_root: Path) -> tuple[list[dict], str]:
    server = Serve(serve_env(tmpdir, HARNESS_WORKSPACE_ROOT=str(workspace_root), HARNESS_MODEL="scripted"),
                   tmpdir / "server.log")
    server.migrate()
    client = KeepAliveClient("127.0.0.1", server.port, server.create_token("bench"))
    try:
        server.start()
        health = client.request("GET", "/healthz")[1].get("sandbox", {})
        if health.get("mode") != "bubblewrap":
            raise SystemExit(f"the server's sandbox is not bubblewrap: {health}")
        return [stop_trial(client) for _ in range(trials)], health["mode"]
    finally:
        client.close()
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=100, help="shell calls per variant (default 100)")
    parser.add_argument("--trials", type=int, default=100, help="stops (default 100)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 10 calls and 10 stops")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument("--strict", action="store_true", help="exit with status 1 when a target is missed")
    args = parser.parse_args(argv)
    calls, trials = (10, 10) if args.quick else (args.calls, args.trials)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "harness.settings")
    import django

    with tempfile.TemporaryDirectory(prefix="harness-bench-") as tmp:
        tmpdir = Path(tmp)
        workspace_root = sandbox_reachable_dir("harness-bench-ws-")  # the sandbox's user must reach it as root
        os.environ["HARNESS_WORKSPACE_ROOT"] = str(workspace_root)
        django.setup()
        began = datetime.datetime.now(datetime.timezone.utc)
        startup = asyncio.run(startup_costs(calls, workspace_root))
        stops, mode = stop_trials(trials, tmpdir, workspace_root)

    startup_stats = {name: stats(values) for name, values in startup.items()}
    added = startup_stats["sandboxed"]["p50"] - startup_stats["unsafe"]["p50"]
    gone = stats([s["stop_gone_ms"] for s in stops])
    response = stats([s["stop_response_ms"] for s in stops])
    passes = {"added_median": added <= TARGET_ADDED_MEDIAN_MS, "gone_p99": gone["p99"] <= TARGET_GONE_P99_MS}
    rows = [[name, fmt(s["p50"]), fmt(s["p90"]), fmt(s["p99"]), fmt(s["max"]),
             f"{s['p50'] / startup_stats['plain']['p50']:.2f}×"] for name, s in startup_stats.items()]
    print(f"\nshell `true`, {calls} calls each (ms)")
    print(table(["variant", "p50", "p90", "p99", "max", "p50 vs plain"], rows))
    print(f"added by the sandbox at the median: {added:.1f} ms (target ≤ {TARGET_ADDED_MEDIAN_MS:g}: "
          f"{'PASS' if passes['added_median'] else 'MISS'})")
    print(f"\nstop of a sandboxed `sleep & sleep; wait`, {trials} stops over HTTP (ms)")
    print(table(["measure", "p50", "p90", "p99", "max"],
                [["stop → response", fmt(response["p50"]), fmt(response["p90"]), fmt(response["p99"]),
                  fmt(response["max"])],
                 ["stop → tree gone", fmt(gone["p50"]), fmt(gone["p90"]), fmt(gone["p99"]), fmt(gone["max"])]]))
    print(f"stop → tree gone p99: {fmt(gone['p99'])} ms (target ≤ {TARGET_GONE_P99_MS:g}: "
          f"{'PASS' if passes['gone_p99'] else 'MISS'})")
    output = {
        "benchmark": "sandbox", "began": began.isoformat(), "percentiles": PERCENTILE_METHOD,
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "euid": os.geteuid()},
        "code": {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))},
        "sandbox_mode": mode, "startup_ms": startup_stats, "added_median_ms": added,
        "stop_response_ms": response, "stop_gone_ms": gone, "passes": passes,
        "raw": {"startup_ms": startup, "stops": stops},
    }
    return write_results(args.json, output, all_pass=all(passes.values()), strict=args.strict)


if __name__ == "__main__":
    raise SystemExit(main())
