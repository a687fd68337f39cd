"""What only the benchmarks share: percentiles, tables, the scripted model's messages, the environment of a
`manage.py serve` under test and writing the JSON. Everything that drives processes and clients, or tells
about the machine, is in devtools/ (shared with the tests). Import it after putting the repository root and
bench/ on sys.path, as the benchmarks do."""

from __future__ import annotations

import datetime
import json
import math
import os
import statistics
import time
from pathlib import Path

from devtools.api import KeepAliveClient
from devtools.facts import git
from devtools.process import ROOT
from devtools.servers import UNLIMITED_RUNS

RESULTS = ROOT / "bench" / "results"
PERCENTILE_METHOD = "nearest-rank: pK = ceil(K/100*n)-th smallest sample"


class TrialFailed(Exception):
    """One trial did not measure what it should; recorded as its `failure`, the benchmark goes on."""


def script_text(script: dict) -> str:
    """A message the scripted model plays (`script:{json}`)."""
    return "script:" + json.dumps(script)


def nearest_rank(values: list[float], pct: float) -> float | None:
    """pK is the ⌈K/100·n⌉-th smallest sample."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(pct / 100 * len(ordered))) - 1]


def summary(values: list[float]) -> dict:
    """n, p50/p95/p99 (nearest-rank), max, min and mean of the samples."""
    if not values:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None, "min": None, "mean": None}
    return {"n": len(values), "p50": nearest_rank(values, 50), "p95": nearest_rank(values, 95),
            "p99": nearest_rank(values, 99), "max": max(values), "min": min(values),
            "mean": round(statistics.fmean(values), 3)}


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def parse_iso(value: str | None) -> datetime.datetime | None:
    return datetime.datetime.fromisoformat(value) if value else None


def table(headers: list[str], rows: list[list[str]]) -> str:
    """A Markdown table, columns padded to their widest cell."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def serve_env(tmpdir: Path, **extra: str) -> dict:
    """The environment of a benchmarked `manage.py serve`: a fresh SQLite database and workspace root."""
    return {**os.environ, "DATABASE_URL": f"sqlite:///{tmpdir / 'bench.sqlite3'}",  # absolute: sqlite:////tmp/…
            "HARNESS_VAR_DIR": str(tmpdir / "var"), "HARNESS_WORKSPACE_ROOT": str(tmpdir / "workspaces"),
            "STATIC_ROOT": str(tmpdir / "static"), "DJANGO_SETTINGS_MODULE": "harness.settings",
            "PYTHONUNBUFFERED": "1", **UNLIMITED_RUNS, **extra}


def code_version() -> dict:
    """The commit measured (and whether the tree had local changes), when this is a git checkout."""
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"), "dirty": None if status is None else bool(status)}


def loopback_no_proxy() -> dict[str, str]:
    """NO_PROXY (both spellings) with 127.0.0.1 and localhost added: model SDKs' HTTP clients honour proxy
    settings, and the fake model servers are local."""
    inherited = os.environ.get("NO_PROXY") or os.environ.get("no_proxy")
    no_proxy = ",".join(filter(None, (inherited, "127.0.0.1,localhost")))
    return {"NO_PROXY": no_proxy, "no_proxy": no_proxy}


def send_stop(client: KeepAliveClient, session_id: str, run_id: str, record: dict) -> dict:
    """POST the stop on a warm connection: stop→response and prior_state in `record`; TrialFailed unless it
    was accepted. The stop's answer."""
    status, stop, elapsed, _ = client.request("POST", f"/api/sessions/{session_id}/stop", {"run_id": run_id})
    record["stop_response_ms"] = round(elapsed, 3)
    record["prior_state"] = stop.get("prior_state")
    if status != 200 or not stop.get("accepted") or stop.get("reason"):
        raise TrialFailed(f"stop not accepted: HTTP {status} {stop}")
    return stop


def wait_terminal(client: KeepAliveClient, run_id: str, deadline_s: float, poll_s: float) -> tuple[dict, float]:
    """Poll the run until it is terminal: (the run, perf_counter() when that was seen); TrialFailed after
    `deadline_s`."""
    deadline = time.monotonic() + deadline_s
    while True:
        status, run, _, _ = client.request("GET", f"/api/runs/{run_id}")
        if status == 200 and run["state"] in ("completed", "stopped", "failed"):
            return run, time.perf_counter()
        if time.monotonic() > deadline:
            raise TrialFailed(f"terminal: still {run.get('state')} {deadline_s:g} s after the stop")
        time.sleep(poll_s)


def judge_stopped(run: dict, record: dict) -> None:
    """The run's server-side stop timings in `record` (stop→terminal, requested→acknowledged→terminal);
    TrialFailed unless it ended `stopped` with its latency recorded."""
    record["final_state"] = run["state"]
    if run["state"] != "stopped":
        raise TrialFailed(f"terminal: ended {run['state']} ({run.get('error')}), not stopped")
    latency = record["stop_terminal_ms"] = run["stop"]["latency_ms"]
    if latency is None:
        raise TrialFailed("terminal: stop.latency_ms missing")
    requested, acknowledged = parse_iso(run["stop"]["requested_at"]), parse_iso(run["stop"]["acknowledged_at"])
    if requested and acknowledged:
        record["stop_ack_ms"] = round((acknowledged - requested).total_seconds() * 1000, 3)
        record["ack_terminal_ms"] = round(latency - record["stop_ack_ms"], 3)


def finish(path: Path, output: dict, text: str, *, all_pass: bool, strict: bool) -> int:
    """Say whether every target passed, and write the run's JSON (`table`: the printed report)."""
    print("ALL TARGETS PASS" if all_pass else "SOME TARGETS MISSED")
    return write_results(path, {**output, "table": text}, all_pass=all_pass, strict=strict)


def write_results(path: Path, output: dict, *, all_pass: bool, strict: bool) -> int:
    """Write the run's JSON and say where; the exit status (1 only when `strict` and a target was missed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(output, indent=2, default=str) + "\n")
    print(f"results written to {path}")
    return 1 if strict and not all_pass else 0
