#!/usr/bin/env python3
"""Stop latency benchmark: how fast does a stop answer, and how fast does the run reach `stopped`?

Run with `make bench` (or `.venv/bin/python bench/stop_latency.py [--quick] [--trials N] [--json PATH]`).
Never run by the tests. Standard library only.

What it does:

1. Makes a temporary directory with a fresh SQLite database and workspace root, runs `manage.py migrate`
   and `manage.py create_api_token bench`, and starts `manage.py serve 127.0.0.1:<free port>` (Daphne +
   the orchestrator worker in one process) as a subprocess, which it always shuts down at the end.
2. Measures baselines on the idle server, over the same connection: the round trip of a trivial
   authenticated `GET /api/sessions/<id>`, and of `GET /api/no-such-endpoint` (the API's JSON 404: no
   authentication, no database — the floor of any request through Daphne and Django).
3. Runs N trials of each scenario, each in a fresh session:
     mid_stream          the model is streaming a long answer (5000 words, 5 ms apart)
     mid_tool            a cancellable `sleep` tool (30 s) is running
     parked_on_approval  a `shell` call waits for approval (the run is parked, no executor holds it)
     provisioning        stop sent right after the start response (the run may have moved on already)
   For each trial it records
     stop→response   client-side, time.perf_counter() around `POST /api/sessions/<sid>/stop` on an
                     already-open keep-alive connection (no TCP connect in the number);
     stop→terminal   server-side `stop.latency_ms` of `GET /api/runs/<id>` = finished_at - stop_requested_at,
                     i.e. from the stop request being recorded to the `stopped` state being persisted;
     requested→ack   server-side stop_acknowledged_at - stop_requested_at (the executor's first step after
                     the stop), so stop→terminal can be split into "reaching the executor" and "tearing down";
     client terminal client-side time from sending the stop to the first poll that saw `stopped`
                     (coarse: includes the poll interval, --poll-ms);
     pre-stop GET    the round trip of a `GET /api/sessions/<sid>` just before the stop, i.e. a trivial
                     request under the same load as the stop.
4. Prints tables, PASS/MISS per target, and writes everything (raw arrays, per-trial records, percentiles,
   machine info) as JSON to --json (default bench/results/stop_latency.json, gitignored). It also reports
   how much CPU the server, the client and *other* processes used during the trials (from /proc): the
   numbers are only meaningful on an otherwise idle machine, and the report says when it was not.

Percentiles are nearest-rank: pK is the ceil(K/100 * n)-th smallest sample (1-based), always an observed
value (with n = 100, p99 is the 99th of 100 sorted samples and p50 the 50th).
Targets: stop→terminal p99 <= 100 ms in every scenario and stop→response p99 <= 20 ms; a scenario with any
failed trial (stop not accepted, precondition or terminal deadline missed) is a MISS whatever its p99.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import math
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MANAGE = ROOT / "manage.py"
DEFAULT_JSON = ROOT / "bench" / "results" / "stop_latency.json"

TARGET_TERMINAL_P99_MS = 100.0
TARGET_RESPONSE_P99_MS = 20.0

TERMINAL_DEADLINE_S = 10.0
PRECONDITION_DEADLINE_S = 10.0
READY_DEADLINE_S = 30.0

STREAM_SCRIPT = {"turns": [{"words": 5000, "delay_ms": 5}]}
TOOL_SCRIPT = {"turns": [{"calls": [{"name": "sleep", "arguments": {"seconds": 30}}]}]}
APPROVAL_SCRIPT = {"turns": [{"calls": [{"name": "shell", "arguments": {"command": "echo hi"}}]}]}

SCENARIOS = ("mid_stream", "mid_tool", "parked_on_approval", "provisioning")


def script_text(script: dict) -> str:
    return "script:" + json.dumps(script)


# --- statistics ----------------------------------------------------------------------------------------


def nearest_rank(values: list[float], pct: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def summary(values: list[float]) -> dict:
    if not values:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None, "min": None, "mean": None}
    return {
        "n": len(values),
        "p50": nearest_rank(values, 50),
        "p95": nearest_rank(values, 95),
        "p99": nearest_rank(values, 99),
        "max": max(values),
        "min": min(values),
        "mean": round(statistics.fmean(values), 3),
    }


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def parse_iso(value: str | None) -> datetime.datetime | None:
    return datetime.datetime.fromisoformat(value) if value else None


# --- HTTP client ---------------------------------------------------------------------------------------


class ApiClient:
    """JSON over one persistent keep-alive connection per thread, so timings never include a TCP connect."""

    def __init__(self, host: str, port: int, token: str) -> None:
        self.host, self.port, self.token = host, port, token
        self._local = threading.local()
        self.reconnects = 0

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
            conn.connect()
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._local.conn = conn
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
        self._local.conn = None

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict, float, float]:
        """Return (status, json, elapsed_ms, t_received) — elapsed from sending to the body fully read."""
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        for attempt in range(2):
            conn = self._connection()
            try:
                started = time.perf_counter()
                conn.request(method, path, body=payload, headers=headers)
                response = conn.getresponse()
                raw = response.read()
                received = time.perf_counter()
            except (http.client.RemoteDisconnected, http.client.BadStatusLine, ConnectionError):
                # The server closed the idle keep-alive connection; reconnect once (and count it).
                self._drop()
                self.reconnects += 1
                if attempt:
                    raise
                continue
            if response.getheader("Connection", "").lower() == "close":
                self._drop()
            try:
                data = json.loads(raw) if raw else {}
            except ValueError:
                data = {"non_json_body": raw[:200].decode(errors="replace")}
            return response.status, data, (received - started) * 1000, received
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._drop()


# --- the server ----------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def manage(env: dict, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(MANAGE), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    if result.returncode != 0:
        raise SystemExit(f"manage.py {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result.stdout


def wait_ready(proc: subprocess.Popen, port: int, token: str, log_path: Path) -> float:
    started = time.monotonic()
    deadline = started + READY_DEADLINE_S
    url = f"http://127.0.0.1:{port}/api/sessions"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}:\n{tail(log_path)}")
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                if response.status == 200:
                    return time.monotonic() - started
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.1)
    raise SystemExit(f"the server did not answer within {READY_DEADLINE_S:g} s:\n{tail(log_path)}")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    for action, grace in ((lambda: proc.send_signal(signal.SIGINT), 10), (proc.terminate, 5), (proc.kill, 5)):
        action()
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no server log)"


# --- trials --------------------------------------------------------------------------------------------


class TrialFailed(Exception):
    pass


class Bench:
    def __init__(self, client: ApiClient, poll_s: float) -> None:
        self.client = client
        self.poll_s = poll_s

    def get(self, path: str) -> tuple[dict, float]:
        status, data, elapsed, _ = self.client.request("GET", path)
        if status != 200:
            raise TrialFailed(f"GET {path} answered {status}: {data}")
        return data, elapsed

    def new_session(self) -> str:
        status, data, _, _ = self.client.request("POST", "/api/sessions", {"title": "bench"})
        if status != 201:
            raise TrialFailed(f"POST /api/sessions answered {status}: {data}")
        return data["id"]

    def start_run(self, session_id: str, text: str) -> str:
        status, data, _, _ = self.client.request("POST", f"/api/sessions/{session_id}/runs", {"text": text})
        if status != 201:
            raise TrialFailed(f"start answered {status}: {data}")
        return data["run_id"]

    def wait_for(self, what: str, check, deadline_s: float = PRECONDITION_DEADLINE_S):
        deadline = time.monotonic() + deadline_s
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TrialFailed(f"precondition: timed out after {deadline_s:g} s waiting for {what}")
            time.sleep(self.poll_s)

    def run_state_is(self, run_id: str, *states: str):
        def check():
            run, _ = self.get(f"/api/runs/{run_id}")
            if run["state"] in ("completed", "stopped", "failed") and run["state"] not in states:
                raise TrialFailed(f"precondition: run ended ({run['state']}) before the stop")
            return run if run["state"] in states else None

        return check

    # The scenarios: each returns (session_id, run_id) with the run in the wanted situation.

    def setup_mid_stream(self) -> tuple[str, str]:
        sid = self.new_session()
        run_id = self.start_run(sid, script_text(STREAM_SCRIPT))
        self.wait_for("assistant_streaming", self.run_state_is(run_id, "assistant_streaming"))

        def has_text():
            snapshot, _ = self.get(f"/api/sessions/{sid}")
            assistant = [m for m in snapshot["messages"] if m["role"] == "assistant"]
            return bool(assistant and assistant[-1]["text"])

        self.wait_for("streamed text in the snapshot", has_text)
        return sid, run_id

    def setup_mid_tool(self) -> tuple[str, str]:
        sid = self.new_session()
        run_id = self.start_run(sid, script_text(TOOL_SCRIPT))

        def running():
            run = self.run_state_is(run_id, *STATES_ALL)()
            calls = run["function_calls"]
            return bool(calls and calls[0]["status"] == "running")

        self.wait_for("function_calls[0] running", running)
        return sid, run_id

    def setup_parked_on_approval(self) -> tuple[str, str]:
        sid = self.new_session()
        run_id = self.start_run(sid, script_text(APPROVAL_SCRIPT))
        self.wait_for("awaiting_approval", self.run_state_is(run_id, "awaiting_approval"))

        def pending():
            snapshot, _ = self.get(f"/api/sessions/{sid}")
            return bool(snapshot["pending_approvals"])

        self.wait_for("a pending approval in the snapshot", pending)
        return sid, run_id

    def trial(self, scenario: str) -> dict:
        record: dict = {"scenario": scenario}
        try:
            if scenario == "provisioning":
                sid = self.new_session()
                run_id = self.start_run(sid, script_text(STREAM_SCRIPT))
            else:
                sid, run_id = getattr(self, f"setup_{scenario}")()
                # A trivial request under the same load, right before the stop: the baseline for the stop.
                _, elapsed = self.get(f"/api/sessions/{sid}")
                record["pre_stop_get_ms"] = round(elapsed, 3)
            record.update(session_id=sid, run_id=run_id)

            reconnects = self.client.reconnects
            sent = time.perf_counter()
            status, stop, elapsed, _ = self.client.request("POST", f"/api/sessions/{sid}/stop", {"run_id": run_id})
            record["stop_response_ms"] = round(elapsed, 3)
            record["stop_reconnected"] = self.client.reconnects != reconnects
            record["prior_state"] = stop.get("prior_state")
            record["stop_result"] = stop
            if status != 200 or not stop.get("accepted") or stop.get("reason"):
                raise TrialFailed(f"stop not accepted: HTTP {status} {stop}")

            deadline = time.monotonic() + TERMINAL_DEADLINE_S
            while True:
                run, _ = self.get(f"/api/runs/{run_id}")
                observed = time.perf_counter()
                if run["state"] in ("completed", "stopped", "failed"):
                    break
                if time.monotonic() > deadline:
                    raise TrialFailed(f"terminal: still {run['state']} {TERMINAL_DEADLINE_S:g} s after the stop")
                time.sleep(self.poll_s)
            record["client_terminal_ms"] = round((observed - sent) * 1000, 3)
            record["final_state"] = run["state"]
            if run["state"] != "stopped":
                raise TrialFailed(f"terminal: ended {run['state']} ({run.get('error')}), not stopped")
            latency = run["stop"]["latency_ms"]
            if latency is None:
                raise TrialFailed("terminal: stop.latency_ms missing")
            record["stop_terminal_ms"] = latency
            requested, acknowledged = parse_iso(run["stop"]["requested_at"]), parse_iso(run["stop"]["acknowledged_at"])
            if requested and acknowledged:
                record["stop_ack_ms"] = round((acknowledged - requested).total_seconds() * 1000, 3)
                record["ack_terminal_ms"] = round(latency - record["stop_ack_ms"], 3)
        except TrialFailed as exc:
            record["failure"] = str(exc)
        return record


STATES_ALL = (
    "provisioning", "awaiting_assistant", "assistant_streaming", "assistant_finished", "function_prepare",
    "awaiting_approval", "function_execute", "function_finalize", "steering_check", "tearing_down",
)


def baseline(bench: Bench, count: int) -> dict[str, list[float]]:
    """Round trips of trivial requests on an idle server (no run in progress), same connection as the stops.

    - GET /api/sessions/<id>: authenticated, a handful of queries — the "trivial request" the stop compares to;
    - GET /api/no-such-endpoint: the API's JSON 404 — routing, middleware and the ASGI/HTTP stack only
      (no authentication, no database), i.e. the floor of any request to this server.
    """
    sid = bench.new_session()
    paths = {
        "GET /api/sessions/<id> round trip (idle)": f"/api/sessions/{sid}",
        "GET /api/no-such-endpoint round trip (404, no auth, no DB; idle)": "/api/no-such-endpoint",
    }
    samples: dict[str, list[float]] = {name: [] for name in paths}
    for name, path in paths.items():
        bench.client.request("GET", path)  # warm-up
    for _ in range(count):
        for name, path in paths.items():
            _, _, elapsed, _ = bench.client.request("GET", path)
            samples[name].append(round(elapsed, 3))
            time.sleep(bench.poll_s)
    return samples


# --- reporting -----------------------------------------------------------------------------------------

FIELDS = ("stop_response_ms", "stop_terminal_ms", "stop_ack_ms", "ack_terminal_ms", "client_terminal_ms", "pre_stop_get_ms")


def scenario_result(name: str, records: list[dict]) -> dict:
    ok = [r for r in records if "failure" not in r]
    raw = {field: [r[field] for r in ok if r.get(field) is not None] for field in FIELDS}
    # A stop whose run later failed to stop still answered: its response time counts.
    raw["stop_response_ms"] = [r["stop_response_ms"] for r in records if r.get("stop_response_ms") is not None]
    result = {
        "n": len(records),
        "ok": len(ok),
        "failures": len(records) - len(ok),
        "failure_reasons": dict(Counter(r["failure"].split(":")[0] for r in records if "failure" in r)),
        "failure_details": [r["failure"] for r in records if "failure" in r],
        "prior_state_counts": dict(Counter(r.get("prior_state") or "none" for r in records)),
        "stop_reconnects": sum(1 for r in records if r.get("stop_reconnected")),
        "raw": raw,
        "percentiles": {field: summary(values) for field, values in raw.items()},
    }
    response_p99 = result["percentiles"]["stop_response_ms"]["p99"]
    terminal_p99 = result["percentiles"]["stop_terminal_ms"]["p99"]
    result["targets"] = {
        "stop_terminal_p99_ms": {
            "target": TARGET_TERMINAL_P99_MS, "value": terminal_p99,
            "pass": terminal_p99 is not None and terminal_p99 <= TARGET_TERMINAL_P99_MS and not result["failures"],
        },
        "stop_response_p99_ms": {
            "target": TARGET_RESPONSE_P99_MS, "value": response_p99,
            "pass": response_p99 is not None and response_p99 <= TARGET_RESPONSE_P99_MS and not result["failures"],
        },
    }
    result["trials"] = records
    return result


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def triple(p: dict) -> str:
    return f"{fmt(p['p50'])} / {fmt(p['p95'])} / {fmt(p['p99'])}"


def report(results: dict, baselines: dict) -> str:
    out = []
    rows = []
    for name, res in results.items():
        pct = res["percentiles"]
        rows.append([
            name, str(res["n"]), triple(pct["stop_response_ms"]), triple(pct["stop_terminal_ms"]),
            f"{fmt(pct['stop_response_ms']['max'])} / {fmt(pct['stop_terminal_ms']['max'])}",
            str(res["failures"]),
            ", ".join(f"{k}: {v}" for k, v in sorted(res["prior_state_counts"].items(), key=lambda kv: -kv[1])),
        ])
    out.append(table(
        ["scenario", "n", "stop→response p50/p95/p99 (ms)", "stop→terminal p50/p95/p99 (ms)",
         "max resp / term (ms)", "failures", "prior_state"],
        rows,
    ))
    out.append("")
    rows = []
    for name, res in results.items():
        pct = res["percentiles"]
        rows.append([
            name, triple(pct["stop_ack_ms"]), triple(pct["ack_terminal_ms"]), triple(pct["client_terminal_ms"]),
            triple(pct["pre_stop_get_ms"]),
        ])
    out.append(table(
        ["scenario", "requested→acknowledged (ms)", "acknowledged→terminal (ms)",
         "client stop→observed stopped (ms)", "pre-stop GET session (ms)"],
        rows,
    ))
    out.append("")
    rows = [[name, str(s["n"]), triple(s), fmt(s["max"])] for name, s in baselines.items()]
    out.append(table(["baseline", "n", "p50 / p95 / p99 (ms)", "max (ms)"], rows))
    out.append("")
    for name, res in results.items():
        for target, verdict in res["targets"].items():
            mark = "PASS" if verdict["pass"] else "MISS"
            extra = f" ({res['failures']} failed trials)" if res["failures"] else ""
            out.append(f"{mark}  {name:<20} {target} = {fmt(verdict['value'])} (target ≤ {verdict['target']:g}){extra}")
    for name, res in results.items():
        for detail in res["failure_details"][:5]:
            out.append(f"  failure in {name}: {detail}")
    return "\n".join(out)


CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_busy_seconds() -> tuple[float, float] | None:
    """(busy, steal) CPU seconds of the whole machine so far (Linux /proc/stat), to tell how much others used.

    Steal is time the hypervisor gave our virtual CPUs to someone else: contention we cannot see as processes.
    """
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq = fields[:7]
    steal = fields[7] if len(fields) > 7 else 0
    return (user + nice + system + irq + softirq) / CLOCK_TICKS, steal / CLOCK_TICKS


def process_cpu_seconds(pid: int) -> float | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime
    except (OSError, ValueError, IndexError):
        return None


def own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def cpu_usage(before: tuple, after: tuple) -> dict:
    """Cores used on average by the server, this client and everything else between two samples."""
    wall = after[3] - before[3]
    result: dict = {"wall_s": round(wall, 3)}
    if None in before or None in after or wall <= 0:
        return result
    busy, steal = (after[0][i] - before[0][i] for i in range(2))
    server, client = after[1] - before[1], after[2] - before[2]
    result.update(
        machine_busy_cores=round(busy / wall, 3), server_cores=round(server / wall, 3),
        client_cores=round(client / wall, 3), others_cores=round(max(0.0, busy - server - client) / wall, 3),
        steal_cores=round(steal / wall, 3),
    )
    return result


def code_version() -> dict:
    """The commit measured (and whether the tree had local changes), when this is a git checkout."""

    def git(*args: str) -> str | None:
        try:
            result = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return result.stdout.strip() if result.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"), "dirty": None if status is None else bool(status)}


def machine_info() -> dict:
    cpu_model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
    }


# --- main ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=100, help="trials per scenario (default 100)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 10 trials per scenario")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"result file (default {DEFAULT_JSON})")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated subset to run")
    parser.add_argument("--poll-ms", type=float, default=10.0, help="client polling interval (default 10 ms)")
    parser.add_argument("--log-level", default=None, help="HARNESS_LOG_LEVEL for the server (e.g. DEBUG)")
    parser.add_argument("--strict", action="store_true", help="exit with status 1 when a target is missed")
    parser.add_argument("--server-log", type=Path, default=None, help="keep the server's output in this file")
    args = parser.parse_args(argv)
    trials = 10 if args.quick else args.trials
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")

    with tempfile.TemporaryDirectory(prefix="harness-bench-") as tmp:
        tmpdir = Path(tmp)
        env = dict(os.environ)
        env.update(
            DATABASE_URL=f"sqlite:///{tmpdir / 'bench.sqlite3'}",  # an absolute path: sqlite:////tmp/...
            HARNESS_VAR_DIR=str(tmpdir / "var"),
            HARNESS_WORKSPACE_ROOT=str(tmpdir / "workspaces"),
            STATIC_ROOT=str(tmpdir / "static"),
            DJANGO_SETTINGS_MODULE="harness.settings",
            PYTHONUNBUFFERED="1",
        )
        if args.log_level:
            env["HARNESS_LOG_LEVEL"] = args.log_level
        manage(env, "migrate", "--noinput", "-v", "0")
        token = manage(env, "create_api_token", "bench").strip().splitlines()[-1].strip()
        port = free_port()
        log_path = tmpdir / "server.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, str(MANAGE), "serve", f"127.0.0.1:{port}"], cwd=ROOT, env=env,
                stdout=log, stderr=subprocess.STDOUT,
            )
        client = ApiClient("127.0.0.1", port, token)
        try:
            ready_s = wait_ready(proc, port, token, log_path)
            print(f"server up on 127.0.0.1:{port} after {ready_s:.2f} s; {trials} trials per scenario", flush=True)
            bench = Bench(client, poll_s=args.poll_ms / 1000)
            began = datetime.datetime.now(datetime.timezone.utc)
            load_before = os.getloadavg()
            cpu_before = (cpu_busy_seconds(), process_cpu_seconds(proc.pid), own_cpu_seconds(), time.monotonic())
            idle_samples = baseline(bench, trials)
            baselines = dict(idle_samples)
            results = {}
            for scenario in scenarios:
                records = []
                for index in range(trials):
                    records.append(bench.trial(scenario))
                    if "failure" in records[-1]:
                        print(f"  {scenario} #{index + 1}: {records[-1]['failure']}", flush=True)
                results[scenario] = scenario_result(scenario, records)
                pct = results[scenario]["percentiles"]
                print(
                    f"{scenario}: stop→response p99 {fmt(pct['stop_response_ms']['p99'])} ms, "
                    f"stop→terminal p99 {fmt(pct['stop_terminal_ms']['p99'])} ms, "
                    f"{results[scenario]['failures']} failures",
                    flush=True,
                )
            ended = datetime.datetime.now(datetime.timezone.utc)
            load_after = os.getloadavg()
            cpu_after = (cpu_busy_seconds(), process_cpu_seconds(proc.pid), own_cpu_seconds(), time.monotonic())
            cpu = cpu_usage(cpu_before, cpu_after)
            for scenario, res in results.items():
                samples = res["raw"]["pre_stop_get_ms"]
                if samples:
                    baselines[f"GET /api/sessions/<id> just before the stop ({scenario})"] = summary(samples)
            baselines = {
                name: (value if isinstance(value, dict) else summary(value)) for name, value in baselines.items()
            }
        finally:
            client.close()
            stop_server(proc)
            if args.server_log:
                args.server_log.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(log_path, args.server_log)

    text = report(results, baselines)
    print()
    print(text)
    if cpu.get("others_cores") is not None:
        print()
        print(
            f"CPU during the trials ({cpu['wall_s']:.0f} s wall): server {cpu['server_cores']:.2f} cores, "
            f"bench client {cpu['client_cores']:.2f} cores, other processes {cpu['others_cores']:.2f} cores, "
            f"hypervisor steal {cpu['steal_cores']:.2f} cores"
            + ("  <-- the machine was not quiet; numbers are inflated"
               if cpu["others_cores"] + cpu["steal_cores"] > 0.1 else "")
        )
    all_pass = all(v["pass"] for res in results.values() for v in res["targets"].values())
    print()
    print("ALL TARGETS PASS" if all_pass else "SOME TARGETS MISSED")

    output = {
        "benchmark": "stop_latency",
        "date": began.isoformat(timespec="seconds"),
        "finished": ended.isoformat(timespec="seconds"),
        "machine": machine_info(),
        "code": code_version(),
        "load_average": {"before": load_before, "after": load_after},
        "cpu_usage": cpu,
        "config": {
            "trials": trials, "scenarios": scenarios, "poll_ms": args.poll_ms,
            "terminal_deadline_s": TERMINAL_DEADLINE_S, "precondition_deadline_s": PRECONDITION_DEADLINE_S,
            "scripts": {"mid_stream": STREAM_SCRIPT, "mid_tool": TOOL_SCRIPT, "parked_on_approval": APPROVAL_SCRIPT,
                        "provisioning": STREAM_SCRIPT},
            "server": "manage.py serve (Daphne + orchestrator worker, SQLite, in-memory channel layer, scripted model)",
        },
        "percentile_method": "nearest-rank: pK = ceil(K/100*n)-th smallest sample",
        "targets": {"stop_terminal_p99_ms": TARGET_TERMINAL_P99_MS, "stop_response_p99_ms": TARGET_RESPONSE_P99_MS,
                    "all_pass": all_pass},
        "baselines": baselines,
        "baseline_raw": idle_samples,
        "scenarios": results,
        "table": text,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(output, indent=2, default=str) + "\n")
    print(f"results written to {args.json}")
    return 1 if args.strict and not all_pass else 0


if __name__ == "__main__":
    sys.exit(main())
