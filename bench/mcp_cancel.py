#!/usr/bin/env python3
"""MCP cancellation latency: a stop in the middle of an MCP tool call — how soon is the server's handler
cancelled, and how soon is the run `stopped`?

Run with `make bench` (or `.venv/bin/python bench/mcp_cancel.py [--quick] [--trials N] [--transports LIST]
[--json PATH]`). Never run by the tests. It drives a real `manage.py serve` (Daphne + the worker, SQLite, the
scripted model) over HTTP, configured (HARNESS_MCP_CONFIG) with two real MCP servers written with the official
SDK (devtools/mcp_test_server.py): `files`, a stdio server in each session's sandbox, and `search`, the same
server over Streamable HTTP on 127.0.0.1 in a subprocess. Per transport one session runs trial after trial:
each run calls the server's slow tool (`wait`, 60 s, a tag of its own); once the handler has recorded that it
started, the bench stops the run (POST /api/sessions/<id>/stop on a warm connection) and measures

- stop → handler cancelled: from just before the stop is sent to the moment the server's handler saw its
  cancellation (it writes CLOCK_MONOTONIC into `cancelled-<tag>`; that clock is one for every process of the
  machine, the sandbox's included, and the bench reads the same clock before sending);
- stop → `stopped`: the run's own stop latency (`stop.latency_ms`: the stop recorded → the run terminal, as
  bench/stop_latency.py reports it), and the client's stop sent → `stopped` seen (polling every --poll-ms).

Each trial also checks that the receipt lists the call as cancelled with "server notified" and that the tool
never finished. Then, to tell the MCP layer's share from the stop path's, the same servers are driven from
this process through `orchestrator.mcp.connection.ServerConnection` alone (no server, no run, no database):
the task awaiting `call` is cancelled, as a stop's preemption does, and the bench measures cancel → handler
cancelled and cancel → the call ended (the SDK has sent its cancellation). Targets (nearest-rank percentiles, pK = the ceil(K/100*n)-th smallest sample): stop → handler
cancelled p99 <= 50 ms and stop → stopped p99 <= 100 ms, per transport; a transport with a failed trial misses.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent)]

from common import (  # noqa: E402
    PERCENTILE_METHOD, RESULTS, TrialFailed, code_version, finish, fmt, judge_stopped, parse_iso, script_text,
    send_stop, serve_env, summary, table, wait_terminal,
)
from devtools.api import KeepAliveClient  # noqa: E402
from devtools.facts import CpuSample, machine_info, process_seconds  # noqa: E402
from devtools.mcp_servers import HttpMcpServer, record_times, sandbox_python, stdio_server, write_config  # noqa: E402
from devtools.serve import Serve  # noqa: E402
from devtools.servers import sandbox_reachable_dir  # noqa: E402
from devtools.waiting import wait_for  # noqa: E402

DEFAULT_JSON = RESULTS / "mcp_cancel.json"
TARGET_CANCELLED_P99_MS = 50.0
TARGET_STOPPED_P99_MS = 100.0
TRANSPORTS = {"stdio": "files", "http": "search"}  # transport → the configured server's name

STARTED_DEADLINE_S = 30.0  # the first call of a session starts its stdio server in the sandbox
TERMINAL_DEADLINE_S = 10.0
CANCELLED_DEADLINE_S = 10.0
TOOL_SECONDS = 60


def now_ns() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


class Bench:
    def __init__(self, client: KeepAliveClient, poll_s: float) -> None:
        self.client = client
        self.poll_s = poll_s

    def new_session(self) -> str:
        status, data, _, _ = self.client.request("POST", "/api/sessions", {"title": "mcp cancel bench"})
        if status != 201:
            raise SystemExit(f"POST /api/sessions answered {status}: {data}")
        return data["id"]

    def trial(self, session_id: str, server: str, record_dir: Path, tag: str) -> dict:
        record: dict = {"tag": tag}
        try:
            tool = f"mcp__{server}__wait"
            script = {"turns": [{"calls": [{"name": tool, "arguments": {"seconds": TOOL_SECONDS, "tag": tag}}]},
                                {"text": "done"}]}
            status, data, _, _ = self.client.request("POST", f"/api/sessions/{session_id}/runs",
                                                     {"text": script_text(script)})
            if status != 201:
                raise TrialFailed(f"start answered {status}: {data}")
            run_id = record["run_id"] = data["run_id"]
            try:
                wait_for(lambda: (record_dir / f"started-{tag}").exists(), STARTED_DEADLINE_S, interval_s=self.poll_s,
                         what=f"the handler of {tag} to start")
            except TimeoutError as error:
                raise TrialFailed(f"precondition: {error}") from None

            sent_ns, sent = now_ns(), time.perf_counter()
            send_stop(self.client, session_id, run_id, record)
            run, observed = wait_terminal(self.client, run_id, TERMINAL_DEADLINE_S, self.poll_s)
            record["client_stopped_ms"] = round((observed - sent) * 1000, 3)
            judge_stopped(run, record)
            try:
                cancelled_ns, cancelled_wall_ns = wait_for(lambda: record_times(record_dir / f"cancelled-{tag}"),
                                                           CANCELLED_DEADLINE_S, interval_s=self.poll_s,
                                                           what=f"the handler of {tag} to be cancelled")
            except TimeoutError as error:
                raise TrialFailed(f"cancelled: {error}") from None
            record["stop_cancelled_ms"] = round((cancelled_ns - sent_ns) / 1e6, 3)
            requested = parse_iso(run["stop"]["requested_at"])
            acknowledged = parse_iso(run["stop"]["acknowledged_at"])
            if requested:  # the server's record of the stop → the handler cancelled (wall clocks)
                record["recorded_cancelled_ms"] = round((cancelled_wall_ns / 1e9 - requested.timestamp()) * 1000, 3)
            if acknowledged:  # the run recorded its first step after the stop (the call cancelled) → the handler cancelled
                record["ack_cancelled_ms"] = round((cancelled_wall_ns / 1e9 - acknowledged.timestamp()) * 1000, 3)
            if (record_dir / f"finished-{tag}").exists():
                raise TrialFailed("cancelled: the tool finished")
            cancelled = run["receipt"]["cancelled_calls"]
            if [(c["name"], c.get("note")) for c in cancelled] != [(tool, "server notified")]:
                raise TrialFailed(f"receipt: cancelled_calls {cancelled}, partly_run_calls "
                                  f"{run['receipt']['partly_run_calls']}")
        except TrialFailed as exc:
            record["failure"] = str(exc)
        return record


async def connection_trials(config_path: Path, workspace_root: Path, http_record: Path, transports: list[str],
                            count: int) -> dict[str, dict]:
    """The MCP layer alone: per transport, `count` calls cancelled once their handler started (after one
    warm-up call): cancel → handler cancelled, cancel → the call ended."""
    from orchestrator.mcp.config import load_config
    from orchestrator.mcp.connection import ServerConnection
    from orchestrator.sandbox import workspace_prepare
    from orchestrator.services.calls import SERVER_NOTIFIED
    from orchestrator.tools.registry import CancelNote

    servers = {server.name: server for server in load_config(config_path)}
    results = {}
    for transport in transports:
        workspace = workspace_prepare(workspace_root / f"connection-{transport}")
        record_dir = workspace if transport == "stdio" else http_record
        connection = ServerConnection(servers[TRANSPORTS[transport]],
                                      workspace=workspace if transport == "stdio" else None)
        samples: dict[str, list[float]] = {"cancel_handler_ms": [], "cancel_ended_ms": []}
        failures = []
        try:
            await connection.ready()
            for i in range(count + 1):
                tag, note = f"connection-{transport}-{i}", CancelNote()
                call = asyncio.ensure_future(connection.call("wait", {"seconds": TOOL_SECONDS, "tag": tag}, note))
                loop = asyncio.get_running_loop()
                deadline = loop.time() + STARTED_DEADLINE_S
                while not (record_dir / f"started-{tag}").exists() and loop.time() < deadline:
                    await asyncio.sleep(0.001)
                cancelled_at = now_ns()
                call.cancel()
                await asyncio.gather(call, return_exceptions=True)
                ended_at = now_ns()
                while (times := record_times(record_dir / f"cancelled-{tag}")) is None and loop.time() < deadline:
                    await asyncio.sleep(0.001)
                if times is None or note.note != SERVER_NOTIFIED:
                    failures.append(f"{tag}: handler cancelled {times is not None}, note {note.note!r}")
                elif i:  # the first call is the warm-up
                    samples["cancel_handler_ms"].append(round((times[0] - cancelled_at) / 1e6, 3))
                    samples["cancel_ended_ms"].append(round((ended_at - cancelled_at) / 1e6, 3))
        finally:
            await connection.close()
        results[transport] = {"failures": failures, "raw": samples,
                              "percentiles": {name: summary(values) for name, values in samples.items()}}
    return results


FIELDS = ("stop_cancelled_ms", "stop_terminal_ms", "client_stopped_ms", "stop_response_ms", "stop_ack_ms",
          "recorded_cancelled_ms", "ack_cancelled_ms", "ack_terminal_ms")
TARGETS = (("stop_cancelled_p99_ms", "stop_cancelled_ms", TARGET_CANCELLED_P99_MS),
           ("stop_stopped_p99_ms", "stop_terminal_ms", TARGET_STOPPED_P99_MS))


def transport_result(records: list[dict], warmup: list[dict]) -> dict:
    ok = [r for r in records if "failure" not in r]
    raw = {field: [r[field] for r in ok if r.get(field) is not None] for field in FIELDS}
    result = {"n": len(records), "ok": len(ok), "failures": len(records) - len(ok),
              "failure_details": [r["failure"] for r in records if "failure" in r],
              "percentiles": {field: summary(values) for field, values in raw.items()}, "targets": {}}
    for name, field, limit in TARGETS:
        value = result["percentiles"][field]["p99"]
        result["targets"][name] = {"target": limit, "value": value,
                                   "pass": value is not None and value <= limit and not result["failures"]}
    result["raw"] = raw
    result["trials"] = records
    result["warmup_trials"] = warmup
    return result


def triple(p: dict) -> str:
    return f"{fmt(p['p50'])} / {fmt(p['p95'])} / {fmt(p['p99'])}"


def report(results: dict, layer: dict) -> str:
    labels = {"stop_cancelled_ms": "stop → handler cancelled", "stop_terminal_ms": "stop → stopped (run's latency_ms)",
              "client_stopped_ms": "stop sent → stopped seen (client)", "stop_response_ms": "stop → response",
              "stop_ack_ms": "stop recorded → acknowledged", "recorded_cancelled_ms": "stop recorded → handler cancelled",
              "ack_cancelled_ms": "acknowledged → handler cancelled", "ack_terminal_ms": "acknowledged → stopped"}
    rows = []
    for transport, res in results.items():
        for field, label in labels.items():
            p = res["percentiles"][field]
            rows.append([transport, label, str(p["n"]), triple(p), fmt(p["max"])])
    for transport, res in layer.items():
        for field, label in (("cancel_handler_ms", "MCP layer alone: cancel → handler cancelled"),
                             ("cancel_ended_ms", "MCP layer alone: cancel → call ended")):
            p = res["percentiles"][field]
            rows.append([transport, label, str(p["n"]), triple(p), fmt(p["max"])])
    out = [table(["transport", "measure", "n", "p50 / p95 / p99 (ms)", "max (ms)"], rows), ""]
    for transport, res in results.items():
        for name, verdict in res["targets"].items():
            extra = f" ({res['failures']} failed trials)" if res["failures"] else ""
            out.append(f"{'PASS' if verdict['pass'] else 'MISS'}  {transport:<6} {name} = {fmt(verdict['value'])} "
                       f"(target ≤ {verdict['target']:g}){extra}")
        for detail in res["failure_details"][:5]:
            out.append(f"  failure in {transport}: {detail}")
    for transport, res in layer.items():
        for detail in res["failures"][:5]:
            out.append(f"  failure in {transport} (MCP layer alone): {detail}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=100, help="trials per transport (default 100)")
    parser.add_argument("--warmup", type=int, default=3, help="discarded warm-up trials per transport (default 3)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 10 trials per transport, 1 warm-up")
    parser.add_argument("--transports", default=",".join(TRANSPORTS), help="comma-separated subset: stdio,http")
    parser.add_argument("--layer-trials", type=int, default=None,
                        help="calls per transport through ServerConnection alone (default: as --trials; 0: none)")
    parser.add_argument("--poll-ms", type=float, default=1.0, help="client polling interval (default 1 ms)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"result file (default {DEFAULT_JSON})")
    parser.add_argument("--server-log", type=Path, default=None, help="keep the server's output in this file")
    parser.add_argument("--strict", action="store_true", help="exit with status 1 when a target is missed")
    args = parser.parse_args(argv)
    trials, warmup = (10, 1) if args.quick else (args.trials, args.warmup)
    layer_trials = trials if args.layer_trials is None else args.layer_trials
    transports = [t.strip() for t in args.transports.split(",") if t.strip()]
    if unknown := set(transports) - set(TRANSPORTS):
        parser.error(f"unknown transports: {', '.join(sorted(unknown))}")

    began = datetime.datetime.now(datetime.timezone.utc)
    with tempfile.TemporaryDirectory(prefix="harness-bench-mcp-") as tmp:
        tmpdir = Path(tmp)
        workspace_root = sandbox_reachable_dir("harness-bench-mcp-ws-")  # the sandbox's user must reach it
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "harness.settings")  # for the MCP layer alone
        os.environ["HARNESS_WORKSPACE_ROOT"] = str(workspace_root)
        import django

        django.setup()
        python = sandbox_python()
        with HttpMcpServer(tmpdir / "http-record") as http:
            config = write_config(tmpdir / "mcp.json", {
                TRANSPORTS["stdio"]: stdio_server(python, approval="auto"),
                TRANSPORTS["http"]: {"url": http.url, "approval": "auto"},
            })
            server = Serve(serve_env(tmpdir, HARNESS_WORKSPACE_ROOT=str(workspace_root), HARNESS_MODEL="scripted",
                                     HARNESS_MCP_CONFIG=str(config)),
                           args.server_log or tmpdir / "server.log")
            server.migrate()
            client = KeepAliveClient("127.0.0.1", server.port, server.create_token("bench"))
            results: dict[str, dict] = {}
            try:
                server.start()
                bench = Bench(client, args.poll_ms / 1000)
                cpu_before = CpuSample({"server": lambda: process_seconds(server.pid)})
                for transport in transports:
                    sid = bench.new_session()
                    record_dir = workspace_root / sid if transport == "stdio" else http.record
                    run = [bench.trial(sid, TRANSPORTS[transport], record_dir, f"{transport}-{i}")
                           for i in range(warmup + trials)]
                    results[transport] = transport_result(run[warmup:], run[:warmup])
                cpu = cpu_before.until(CpuSample({"server": lambda: process_seconds(server.pid)}))
            finally:
                client.close()
                server.stop()
            layer = asyncio.run(connection_trials(config, workspace_root, http.record, transports, layer_trials)) \
                if layer_trials else {}

    text = report(results, layer)
    print(text)
    all_pass = all(v["pass"] for res in results.values() for v in res["targets"].values()) and \
        not any(res["failures"] for res in layer.values())
    output = {
        "benchmark": "mcp_cancel",
        "began": began.isoformat(),
        "code": code_version(),
        "machine": machine_info(),
        "config": {"trials": trials, "layer_trials": layer_trials, "warmup": warmup, "poll_ms": args.poll_ms, "tool_seconds": TOOL_SECONDS,
                   "servers": {"stdio": "devtools/mcp_test_server.py in each session's sandbox (bubblewrap)",
                               "http": "devtools/mcp_test_server.py over Streamable HTTP on 127.0.0.1"},
                   "server": "manage.py serve (Daphne + orchestrator worker, SQLite, in-memory channel layer, "
                             "scripted model)"},
        "percentile_method": PERCENTILE_METHOD,
        "targets": {"stop_cancelled_p99_ms": TARGET_CANCELLED_P99_MS, "stop_stopped_p99_ms": TARGET_STOPPED_P99_MS,
                    "all_pass": all_pass},
        "cpu": cpu,
        "transports": results,
        "mcp_layer_alone": {"trials": layer_trials, "transports": layer},
    }
    return finish(args.json, output, text, all_pass=all_pass, strict=args.strict)


if __name__ == "__main__":
    sys.exit(main())
