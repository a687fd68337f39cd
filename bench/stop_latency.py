#!/usr/bin/env python3
"""Stop latency benchmark: how fast does a stop answer, and how fast does the run reach `stopped`?

Run with `make bench` (or `.venv/bin/python bench/stop_latency.py [--quick] [--trials N] [--scenarios LIST]
[--json PATH]`). Never run by the tests. It drives a real `manage.py serve` subprocess over HTTP; the provider
scenarios stream from the repository's fake model servers (devtools/fakes) on threads of this process.
bench/README.md says what each scenario is, what is measured per trial (stop→response, stop→terminal,
requested→acknowledged, stop→disconnect, ...), the targets, and how to read the CPU report.

Percentiles are nearest-rank: pK is the ceil(K/100 * n)-th smallest sample (1-based), always an observed
value. Targets: stop→terminal p99 <= 100 ms in every scenario and stop→response p99 <= 20 ms; in the provider
scenarios also stop→disconnect p50 <= 10 ms and p99 <= 25 ms. A scenario with any failed trial is a MISS
whatever its percentiles.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent)]

from common import (  # noqa: E402
    PERCENTILE_METHOD, RESULTS, TrialFailed, code_version, fmt, loopback_no_proxy, parse_iso, script_text, serve_env,
    summary, table, finish, send_stop, judge_stopped, wait_terminal,
)
from devtools.api import KeepAliveClient  # noqa: E402
from devtools.facts import CpuSample, machine_info, process_seconds  # noqa: E402
from devtools.fakes import anthropic_wire, openai_wire  # noqa: E402
from devtools.fakes.wire_server import RecordedRequest, SSEStream, WireServer  # noqa: E402
from devtools.serve import Serve  # noqa: E402
from devtools.waiting import wait_for  # noqa: E402

DEFAULT_JSON = RESULTS / "stop_latency.json"

TARGET_TERMINAL_P99_MS = 100.0
TARGET_RESPONSE_P99_MS = 20.0
TARGET_DISCONNECT_P50_MS = 10.0
TARGET_DISCONNECT_P99_MS = 25.0

TERMINAL_DEADLINE_S = 10.0
PRECONDITION_DEADLINE_S = 10.0
READY_DEADLINE_S = 30.0
WIRE_FINISH_DEADLINE_S = 2.0  # after `stopped` is seen, how long the fake server may take to record the end

STREAM_SCRIPT = {"turns": [{"words": 5000, "delay_ms": 5}]}
TOOL_SCRIPT = {"turns": [{"calls": [{"name": "sleep", "arguments": {"seconds": 30}}]}]}
APPROVAL_SCRIPT = {"turns": [{"calls": [{"name": "shell", "arguments": {"command": "echo hi"}}]}]}

# The provider scenarios' answer: 1000 small text events, one every 20 ms (20 s if nobody stops it).
PROVIDER_ANSWER = "".join(f"word{i} " for i in range(1000))
PROVIDER_EVENTS = 1000
PROVIDER_EVENT_DELAY_S = 0.02
PROVIDER_EVENTS_BEFORE_STOP = 10
PROVIDER_API_KEY = "bench-fake-key"  # the fake servers accept any key; never a real one


@dataclass(frozen=True)
class ProviderWire:
    """How a provider scenario's model is served: the fake wire server's answer and the model id to use."""

    kind: str  # the model id's kind: "openai" | "anthropic"
    model: str
    api_path: str  # appended to the fake server's URL to make the model id's base_url
    key_variable: str
    text_answer: Callable[..., SSEStream]  # the wire module's builder of a streamed plain-text answer

    def answer(self) -> SSEStream:
        return self.text_answer(PROVIDER_ANSWER, pieces=PROVIDER_EVENTS, delay=PROVIDER_EVENT_DELAY_S)

    def model_id(self, server: WireServer) -> str:
        return f"{self.kind}:{self.model}@{server.base_url}{self.api_path}"


PROVIDER_WIRES = {
    "openai_mid_stream": ProviderWire("openai", "gpt-4.1-mini", "/v1", "OPENAI_API_KEY", openai_wire.text_answer),
    "anthropic_mid_stream": ProviderWire(
        "anthropic", anthropic_wire.MODEL, "", "ANTHROPIC_API_KEY", anthropic_wire.text_answer
    ),
}

SCENARIOS = ("mid_stream", "mid_tool", "parked_on_approval", "provisioning", *PROVIDER_WIRES)


def to_ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


# --- trials --------------------------------------------------------------------------------------------


class Bench:
    def __init__(self, client: KeepAliveClient, poll_s: float, wire_servers: dict[str, WireServer] | None = None) -> None:
        self.client = client
        self.poll_s = poll_s
        self.wire_servers = wire_servers or {}  # provider scenario -> its running fake model server

    def get(self, path: str) -> tuple[dict, float]:
        status, data, elapsed, _ = self.client.request("GET", path)
        if status != 200:
            raise TrialFailed(f"GET {path} answered {status}: {data}")
        return data, elapsed

    def new_session(self, model: str | None = None) -> str:
        body = {"title": "bench"} if model is None else {"title": "bench", "model": model}
        status, data, _, _ = self.client.request("POST", "/api/sessions", body)
        if status != 201:
            raise TrialFailed(f"POST /api/sessions answered {status}: {data}")
        return data["id"]

    def run_start(self, session_id: str, text: str) -> str:
        status, data, _, _ = self.client.request("POST", f"/api/sessions/{session_id}/runs", {"text": text})
        if status != 201:
            raise TrialFailed(f"start answered {status}: {data}")
        return data["run_id"]

    def wait_for(self, what: str, check, deadline_s: float = PRECONDITION_DEADLINE_S):
        try:
            return wait_for(check, deadline_s, interval_s=self.poll_s, what=what)
        except TimeoutError as error:
            raise TrialFailed(f"precondition: {error}") from None

    def run_state_is(self, run_id: str, *states: str):
        def check():
            run, _ = self.get(f"/api/runs/{run_id}")
            if run["state"] in ("completed", "stopped", "failed") and run["state"] not in states:
                raise TrialFailed(f"precondition: run ended ({run['state']}) before the stop")
            return run if run["state"] in states else None

        return check

    # The scenarios: each returns (session_id, run_id) with the run in the wanted situation.

    def latest_assistant_message(self, session_id: str) -> dict | None:
        snapshot, _ = self.get(f"/api/sessions/{session_id}")
        assistant = [m for m in snapshot["messages"] if m["role"] == "assistant"]
        return assistant[-1] if assistant else None

    def start_streaming(self, session_id: str, text: str) -> str:
        """Start a run and wait until it is `assistant_streaming` with streamed text in the snapshot."""
        run_id = self.run_start(session_id, text)
        self.wait_for("assistant_streaming", self.run_state_is(run_id, "assistant_streaming"))

        def has_text():
            message = self.latest_assistant_message(session_id)
            return bool(message and message["text"])

        self.wait_for("streamed text in the snapshot", has_text)
        return run_id

    def setup_mid_stream(self) -> tuple[str, str]:
        sid = self.new_session()
        return sid, self.start_streaming(sid, script_text(STREAM_SCRIPT))

    def setup_provider_stream(self, scenario: str) -> tuple[str, str, RecordedRequest]:
        """A run streaming from the scenario's fake server: (session, run, the model request being answered)."""
        server = self.wire_servers[scenario]
        sid = self.new_session(model=PROVIDER_WIRES[scenario].model_id(server))
        # The session id in the prompt tells this trial's model request from any other's.
        run_id = self.start_streaming(sid, f"Tell me a long story. (bench session {sid})")
        marker = sid.encode()
        request = server.wait_for(
            lambda: next((r for r in server.requests if marker in r.raw_body), None), PRECONDITION_DEADLINE_S
        )
        if request is None:
            raise TrialFailed("precondition: the fake model server got no request for this run")
        if not server.wait_for(lambda: request.events_sent >= PROVIDER_EVENTS_BEFORE_STOP, PRECONDITION_DEADLINE_S):
            raise TrialFailed(f"precondition: the fake model server did not send {PROVIDER_EVENTS_BEFORE_STOP} events "
                              f"(sent {request.events_sent}, response {request.outcome})")
        return sid, run_id, request

    def check_provider_stop(self, record: dict, scenario: str, request: RecordedRequest, sent_at: float,
                            run: dict) -> None:
        """The fake server saw the client leave after the stop (timed on one clock), and the partial text stayed."""
        self.wire_servers[scenario].wait_finished(request.index, timeout=WIRE_FINISH_DEADLINE_S)
        record.update(wire_outcome=request.outcome, events_sent=request.events_sent)
        disconnected_at = request.disconnected_at
        if request.outcome != "disconnected" or disconnected_at is None:
            raise TrialFailed(f"disconnect: the fake server saw none (response {request.outcome} after "
                              f"{request.events_sent} events)")
        if disconnected_at < sent_at:
            raise TrialFailed("disconnect: the client left before the stop was sent")
        record.update(stop_sent_at=sent_at, disconnected_at=disconnected_at)  # raw, to match with server traces
        record["stop_disconnect_ms"] = to_ms(disconnected_at - sent_at)
        requested, acknowledged = parse_iso(run["stop"]["requested_at"]), parse_iso(run["stop"]["acknowledged_at"])
        if requested:
            record["sent_recorded_ms"] = to_ms(requested.timestamp() - sent_at)
            record["recorded_disconnect_ms"] = to_ms(disconnected_at - requested.timestamp())
        if acknowledged:
            record["disconnect_ack_ms"] = to_ms(acknowledged.timestamp() - disconnected_at)

        message = self.latest_assistant_message(record["session_id"])
        text = message["text"] if message else ""
        record["kept_chars"] = len(text)
        if message is None or message["status"] != "stopped":
            raise TrialFailed(f"partial text: the answer is {message and message['status']}, not stopped")
        if not (text and len(text) < len(PROVIDER_ANSWER) and PROVIDER_ANSWER.startswith(text)):
            raise TrialFailed(f"partial text: {len(text)} characters kept, not a non-empty prefix of the answer")

    def setup_mid_tool(self) -> tuple[str, str]:
        sid = self.new_session()
        run_id = self.run_start(sid, script_text(TOOL_SCRIPT))

        def running():
            run = self.run_state_is(run_id, *STATES_ALL)()
            calls = run["function_calls"]
            return bool(calls and calls[0]["status"] == "running")

        self.wait_for("function_calls[0] running", running)
        return sid, run_id

    def setup_parked_on_approval(self) -> tuple[str, str]:
        sid = self.new_session()
        run_id = self.run_start(sid, script_text(APPROVAL_SCRIPT))
        self.wait_for("awaiting_approval", self.run_state_is(run_id, "awaiting_approval"))

        def pending():
            snapshot, _ = self.get(f"/api/sessions/{sid}")
            return bool(snapshot["pending_approvals"])

        self.wait_for("a pending approval in the snapshot", pending)
        return sid, run_id

    def trial(self, scenario: str) -> dict:
        record: dict = {"scenario": scenario}
        request: RecordedRequest | None = None  # the model request a provider scenario's stop must cut off
        try:
            if scenario == "provisioning":
                sid = self.new_session()
                run_id = self.run_start(sid, script_text(STREAM_SCRIPT))
            else:
                if scenario in PROVIDER_WIRES:
                    sid, run_id, request = self.setup_provider_stream(scenario)
                else:
                    sid, run_id = getattr(self, f"setup_{scenario}")()
                # A trivial request under the same load, right before the stop: the baseline for the stop.
                _, elapsed = self.get(f"/api/sessions/{sid}")
                record["pre_stop_get_ms"] = round(elapsed, 3)
            record.update(session_id=sid, run_id=run_id)

            reconnects = self.client.reconnects
            sent_at = time.time()  # the fake server's clock, for stop→disconnect
            sent = time.perf_counter()
            record["stop_result"] = send_stop(self.client, sid, run_id, record)
            record["stop_reconnected"] = self.client.reconnects != reconnects
            run, observed = wait_terminal(self.client, run_id, TERMINAL_DEADLINE_S, self.poll_s)
            record["client_terminal_ms"] = to_ms(observed - sent)
            judge_stopped(run, record)
            if request is not None:
                self.check_provider_stop(record, scenario, request, sent_at, run)
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
PROVIDER_FIELDS = ("stop_disconnect_ms", "sent_recorded_ms", "recorded_disconnect_ms", "disconnect_ack_ms")

# (name, field, percentile, limit in ms): the first two apply to every scenario, the others to provider ones.
TARGETS = (
    ("stop_terminal_p99_ms", "stop_terminal_ms", "p99", TARGET_TERMINAL_P99_MS),
    ("stop_response_p99_ms", "stop_response_ms", "p99", TARGET_RESPONSE_P99_MS),
)
PROVIDER_TARGETS = (
    ("stop_disconnect_p50_ms", "stop_disconnect_ms", "p50", TARGET_DISCONNECT_P50_MS),
    ("stop_disconnect_p99_ms", "stop_disconnect_ms", "p99", TARGET_DISCONNECT_P99_MS),
)


def scenario_result(name: str, records: list[dict], warmup: list[dict] | None = None) -> dict:
    provider = name in PROVIDER_WIRES
    fields = FIELDS + PROVIDER_FIELDS if provider else FIELDS
    ok = [r for r in records if "failure" not in r]
    raw = {field: [r[field] for r in ok if r.get(field) is not None] for field in fields}
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
    result["targets"] = {}
    for target, field, percentile, limit in TARGETS + PROVIDER_TARGETS if provider else TARGETS:
        value = result["percentiles"][field][percentile]
        result["targets"][target] = {
            "target": limit, "value": value, "pass": value is not None and value <= limit and not result["failures"],
        }
    result["trials"] = records
    if warmup is not None:
        result["warmup_trials"] = warmup
    return result


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
    rows = []
    for name, res in results.items():
        if name in PROVIDER_WIRES:
            pct = res["percentiles"]
            rows.append([
                name, triple(pct["stop_disconnect_ms"]), fmt(pct["stop_disconnect_ms"]["max"]),
                triple(pct["sent_recorded_ms"]), triple(pct["recorded_disconnect_ms"]),
                triple(pct["disconnect_ack_ms"]),
            ])
    if rows:
        out.append(table(
            ["provider scenario", "stop→disconnect p50/p95/p99 (ms)", "max (ms)", "sent→recorded (ms)",
             "recorded→disconnect (ms)", "disconnect→acknowledged (ms)"],
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


def cpu_usage(before: CpuSample, after: CpuSample) -> dict:
    """Cores used on average by the server, this client and everything else between two samples."""
    usage = before.until(after)
    if usage["cores"]["server"] is None or usage["wall_s"] <= 0:
        return {"wall_s": usage["wall_s"]}
    return {"wall_s": usage["wall_s"], "machine_busy_cores": usage["machine_busy_cores"],
            "server_cores": usage["cores"]["server"], "client_cores": usage["client_cores"],
            "others_cores": usage["others_cores"], "steal_cores": usage["steal_cores"]}


# --- the fake model servers ----------------------------------------------------------------------------


def start_wire_servers(stack: ExitStack, scenarios: list[str]) -> dict[str, WireServer]:
    """A fake model server per selected provider scenario, answering every request with the slow answer."""
    return {
        scenario: stack.enter_context(WireServer(default=PROVIDER_WIRES[scenario].answer()))
        for scenario in scenarios if scenario in PROVIDER_WIRES
    }


def provider_env(wire_servers: dict[str, WireServer]) -> dict[str, str]:
    """The server's settings for the provider scenarios: their models on offer, fake keys, no proxy for them."""
    if not wire_servers:
        return {}
    wires = [(PROVIDER_WIRES[scenario], server) for scenario, server in wire_servers.items()]
    return {
        "HARNESS_MODELS": ",".join(wire.model_id(server) for wire, server in wires),
        **{wire.key_variable: PROVIDER_API_KEY for wire, _ in wires},
        **loopback_no_proxy(),
    }


# --- main ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=100, help="trials per scenario (default 100)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 10 trials per scenario (warm-up 1)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="discarded warm-up trials before each provider scenario (default 3)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"result file (default {DEFAULT_JSON})")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated subset to run")
    parser.add_argument("--poll-ms", type=float, default=10.0, help="client polling interval (default 10 ms)")
    parser.add_argument("--log-level", default=None, help="HARNESS_LOG_LEVEL for the server (e.g. DEBUG)")
    parser.add_argument("--strict", action="store_true", help="exit with status 1 when a target is missed")
    parser.add_argument("--server-log", type=Path, default=None, help="keep the server's output in this file")
    args = parser.parse_args(argv)
    trials = 10 if args.quick else args.trials
    warmup = args.warmup if args.warmup is not None else 1 if args.quick else 3
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")

    with tempfile.TemporaryDirectory(prefix="harness-bench-") as tmp, ExitStack() as wire_stack:
        tmpdir = Path(tmp)
        # Started before the server, which is told their addresses; stopped after it (the ExitStack).
        wire_servers = start_wire_servers(wire_stack, scenarios)
        env = serve_env(tmpdir, HARNESS_MODEL="scripted",  # the `script:` scenarios need it as the default
                        **provider_env(wire_servers))
        if args.log_level:
            env["HARNESS_LOG_LEVEL"] = args.log_level
        server = Serve(env, tmpdir / "server.log")
        server.migrate()
        client = KeepAliveClient("127.0.0.1", server.port, server.create_token("bench"))
        try:
            ready_s = server.start(READY_DEADLINE_S)
            print(f"server up on 127.0.0.1:{server.port} after {ready_s:.2f} s; {trials} trials per scenario"
                  + (f" (+{warmup} warm-up per provider scenario)" if wire_servers else ""), flush=True)
            bench = Bench(client, poll_s=args.poll_ms / 1000, wire_servers=wire_servers)
            began = datetime.datetime.now(datetime.timezone.utc)
            load_before = os.getloadavg()
            cpu_before = CpuSample({"server": lambda: process_seconds(server.pid)})
            idle_samples = baseline(bench, trials)
            baselines = dict(idle_samples)
            results = {}
            for scenario in scenarios:
                provider = scenario in PROVIDER_WIRES
                warmups, records = [], []
                for index in range(warmup if provider else 0):
                    warmups.append(bench.trial(scenario))
                    if "failure" in warmups[-1]:
                        print(f"  {scenario} warm-up #{index + 1}: {warmups[-1]['failure']}", flush=True)
                for index in range(trials):
                    records.append(bench.trial(scenario))
                    if "failure" in records[-1]:
                        print(f"  {scenario} #{index + 1}: {records[-1]['failure']}", flush=True)
                results[scenario] = scenario_result(scenario, records, warmups if provider else None)
                pct = results[scenario]["percentiles"]
                disconnect = pct.get("stop_disconnect_ms")
                print(
                    f"{scenario}: stop→response p99 {fmt(pct['stop_response_ms']['p99'])} ms, "
                    f"stop→terminal p99 {fmt(pct['stop_terminal_ms']['p99'])} ms, "
                    + (f"stop→disconnect p50 {fmt(disconnect['p50'])} / p99 {fmt(disconnect['p99'])} ms, "
                       if disconnect else "")
                    + f"{results[scenario]['failures']} failures",
                    flush=True,
                )
            ended = datetime.datetime.now(datetime.timezone.utc)
            load_after = os.getloadavg()
            cpu = cpu_usage(cpu_before, CpuSample({"server": lambda: process_seconds(server.pid)}))
            for scenario, res in results.items():
                samples = res["raw"]["pre_stop_get_ms"]
                if samples:
                    baselines[f"GET /api/sessions/<id> just before the stop ({scenario})"] = summary(samples)
            baselines = {
                name: (value if isinstance(value, dict) else summary(value)) for name, value in baselines.items()
            }
        finally:
            client.close()
            server.stop()
            if args.server_log:
                args.server_log.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(server.log_path, args.server_log)

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

    output = {
        "benchmark": "stop_latency",
        "date": began.isoformat(timespec="seconds"),
        "finished": ended.isoformat(timespec="seconds"),
        "machine": machine_info(python_implementation=platform.python_implementation()),
        "code": code_version(),
        "load_average": {"before": load_before, "after": load_after},
        "cpu_usage": cpu,
        "config": {
            "trials": trials, "warmup_per_provider_scenario": warmup, "scenarios": scenarios, "poll_ms": args.poll_ms,
            "terminal_deadline_s": TERMINAL_DEADLINE_S, "precondition_deadline_s": PRECONDITION_DEADLINE_S,
            "scripts": {"mid_stream": STREAM_SCRIPT, "mid_tool": TOOL_SCRIPT, "parked_on_approval": APPROVAL_SCRIPT,
                        "provisioning": STREAM_SCRIPT},
            "provider_streams": {
                scenario: {
                    "model": PROVIDER_WIRES[scenario].model_id(server), "text_events": PROVIDER_EVENTS,
                    "event_delay_s": PROVIDER_EVENT_DELAY_S, "events_before_stop": PROVIDER_EVENTS_BEFORE_STOP,
                    "answer_chars": len(PROVIDER_ANSWER),
                }
                for scenario, server in wire_servers.items()
            },
            "server": "manage.py serve (Daphne + orchestrator worker, SQLite, in-memory channel layer, scripted model; "
                      "provider scenarios: the real SDK against a fake wire server on a thread of the bench process)",
        },
        "percentile_method": PERCENTILE_METHOD,
        "targets": {"stop_terminal_p99_ms": TARGET_TERMINAL_P99_MS, "stop_response_p99_ms": TARGET_RESPONSE_P99_MS,
                    "stop_disconnect_p50_ms": TARGET_DISCONNECT_P50_MS,
                    "stop_disconnect_p99_ms": TARGET_DISCONNECT_P99_MS, "all_pass": all_pass},
        "baselines": baselines,
        "baseline_raw": idle_samples,
        "scenarios": results,
    }
    return finish(args.json, output, text, all_pass=all_pass, strict=args.strict)


if __name__ == "__main__":
    sys.exit(main())
