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
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import (  # noqa: E402
    MANAGE, PERCENTILE_METHOD, ROOT, cpu_model, fmt, free_port, git, manage, nearest_rank, script_text,
    stop_server, table, write_results,
)
from stop_latency import ApiClient, wait_ready  # noqa: E402

DEFAULT_JSON = ROOT / "bench" / "results" / "sandbox.json"
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


def live(marker: bytes) -> bool:
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if marker in Path(f"/proc/{pid}/cmdline").read_bytes():
                status = Path(f"/proc/{pid}/stat").read_text()
                if status.rsplit(")", 1)[1].split()[0] != "Z":
                    return True
        except OSError:
            continue
    return False


def wait(condition, what: str, deadline_s: float = 10.0) -> None:
    deadline = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.002)


def stop_trial(client: ApiClient) -> dict:
    marker = f"30.{random.randrange(10**8, 10**9)}"
    command = f"sleep {marker} & sleep {marker}; wait"
    status, session, _, _ = client.request("POST", "/api/sessions", {"title": "bench"})
    sid = session["id"]
    text = script_text({"turns": [{"calls": [{"name": "shell", "arguments": {"command": command}}]},
                                  {"text": "never"}]})
    client.request("POST", f"/api/sessions/{sid}/runs", {"text": text})

    def pending() -> list:
        return client.request("GET", f"/api/sessions/{sid}")[1]["pending_approvals"]

    wait(pending, "the approval")
    client.request("POST", f"/api/approvals/{pending()[0]['id']}", {"decision": "approve"})
    needle = f"sleep\0{marker}\0".encode()
    wait(lambda: live(needle), "the command's sleeps")
    sent = time.perf_counter()
    status, body, response_ms, _ = client.request("POST", f"/api/sessions/{sid}/stop")
    assert status == 200 and body["accepted"], body
    while live(marker.encode()):
        if time.perf_counter() - sent > 10:
            raise SystemExit(f"processes of {marker} still alive 10 s after the stop")
        time.sleep(0.0005)
    return {"stop_response_ms": response_ms, "stop_gone_ms": (time.perf_counter() - sent) * 1000}


def stop_trials(trials: int, tmpdir: Path, workspace_root: Path) -> tuple[list[dict], str]:
    env = dict(os.environ)
    env.update(DATABASE_URL=f"sqlite:///{tmpdir / 'bench.sqlite3'}", HARNESS_VAR_DIR=str(tmpdir / "var"),
               HARNESS_WORKSPACE_ROOT=str(workspace_root), DJANGO_SETTINGS_MODULE="harness.settings",
               HARNESS_MODEL="scripted", PYTHONUNBUFFERED="1")
    manage(env, "migrate", "--noinput", "-v", "0")
    token = manage(env, "create_api_token", "bench").strip().splitlines()[-1].strip()
    port, log_path = free_port(), tmpdir / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, str(MANAGE), "serve", f"127.0.0.1:{port}"], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
    client = ApiClient("127.0.0.1", port, token)
    try:
        wait_ready(proc, port, token, log_path)
        health = client.request("GET", "/healthz")[1].get("sandbox", {})
        if health.get("mode") != "bubblewrap":
            raise SystemExit(f"the server's sandbox is not bubblewrap: {health}")
        return [stop_trial(client) for _ in range(trials)], health["mode"]
    finally:
        client.close()
        stop_server(proc)


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
        workspace_root = Path(tempfile.mkdtemp(prefix="harness-bench-ws-"))
        workspace_root.chmod(0o711)  # reachable by the sandbox's user when we are root
        os.environ["HARNESS_WORKSPACE_ROOT"] = str(workspace_root)
        django.setup()
        began = datetime.datetime.now(datetime.timezone.utc)
        startup = asyncio.run(startup_costs(calls, workspace_root))
        stops, mode = stop_trials(trials, tmpdir, workspace_root)
        subprocess.run(["rm", "-rf", str(workspace_root)], check=False)

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
