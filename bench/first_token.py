#!/usr/bin/env python3
"""First-token benchmark: send → first streamed token, ours side by side with Chainlit, same model server.

Run with `make bench` (or `.venv/bin/python bench/first_token.py [--quick] [--trials N] [--json PATH]`). Never
run by the tests. In ONE run, on the same machine state:

- one slow OpenAI-wire server (devtools/fakes, a thread of this process, 127.0.0.1): every request is answered
  with a streamed text answer whose first chunk already carries text and is sent at once, then one chunk
  every 20 ms (ANSWER_PIECES text chunks, then finish and usage);
- ours: `manage.py serve` (SQLite, in-memory channel layer) whose default model is that server
  (`HARNESS_MODEL=openai:<model>@http://127.0.0.1:<port>/v1`, a dummy OPENAI_API_KEY). A trial: a new session,
  its JSON WebSocket (`/ws/api/sessions/<id>/`) opened and its snapshot read, then the clock starts, the
  socket sends `run.start`, and the clock stops at the first `message.delta` frame with non-empty text. The
  trial waits for `run.finished` before the next one;
- Chainlit (optional peer): its own venv (bench/.peers/chainlit, built with pip on first use, gitignored),
  `chainlit run bench/peers/chainlit_app.py --headless` (streams the same server's answer into a
  `cl.Message` with `stream_token`), driven by bench/peers/chainlit_client.py, a python-socketio client that
  connects the way Chainlit's frontend does (its docstring says how). A trial: a new socket.io connection
  (a new Chainlit session), `connection_successful` answered, then the clock starts, `client_message` is
  sent, and the clock stops at the first streamed token (`stream_start` holding it); then `task_end`. When
  the venv cannot be built or Chainlit does not start, it says "Chainlit peer skipped: <reason>" and still
  reports ours.

Both clocks are the client's `time.perf_counter()` on an already-open socket. Trials alternate between the
systems (ours first on even trials, Chainlit first on odd ones), after WARMUP discarded warm-up trials each,
so drift and neighbours hit both alike. Each trial's prompt carries a marker, so the model request it caused
is found on the fake server: send → model request (the start path: command, transactions, wake-up, the
engine's steps up to the provider call) and model request → first token are reported too (wall clocks of
one host).

Percentiles are nearest-rank: pK is the ceil(K/100 * n)-th smallest sample (1-based), always an observed
value. Targets: ours median ≤ Chainlit's median and ours p95 ≤ 1.5 × Chainlit's p95 (no peer: not judged).
Any failed trial of ours is a MISS.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent)]

from websockets.exceptions import ConnectionClosed  # noqa: E402

from common import (  # noqa: E402
    PERCENTILE_METHOD, RESULTS, TrialFailed, code_version, finish, fmt, loopback_no_proxy, serve_env, summary, table,
    write_results,
)
from devtools.api import KeepAliveClient, SessionSocket, answers  # noqa: E402
from devtools.facts import CpuSample, machine_info, memory_mib, process_seconds  # noqa: E402
from devtools.fakes import openai_wire  # noqa: E402
from devtools.fakes.wire_server import WireServer  # noqa: E402
from devtools.process import ROOT, ServerProcess  # noqa: E402
from devtools.serve import Serve  # noqa: E402
from devtools.servers import free_port  # noqa: E402

DEFAULT_JSON = RESULTS / "first_token.json"

TARGET_MEDIAN_RATIO = 1.0  # ours p50 ≤ Chainlit's p50
TARGET_P95_RATIO = 1.5  # ours p95 ≤ 1.5 × Chainlit's p95

MODEL = "gpt-4.1-mini"
API_KEY = "bench-fake-key"  # the fake server accepts any key; never a real one
ANSWER_PIECES = 25
CHUNK_DELAY_S = 0.02  # the first chunk at once, then one every 20 ms
ANSWER = "".join(f"word{i} " for i in range(ANSWER_PIECES))

WARMUP = 2
TRIAL_TIMEOUT_S = 30.0
READY_DEADLINE_S = 60.0

PEER_DIR = ROOT / "bench" / ".peers" / "chainlit"
PEER_REQUIREMENTS = ("chainlit==2.12.0", "openai", "python-socketio")  # the client's protocol is 2.12's
PEER_APP = ROOT / "bench" / "peers" / "chainlit_app.py"
PEER_CLIENT = ROOT / "bench" / "peers" / "chainlit_client.py"
PEER_INSTALL_TIMEOUT_S = 900


class PeerSkipped(Exception):
    """The Chainlit peer cannot be measured on this machine (why, in plain words)."""


# --- the model server ----------------------------------------------------------------------------------


def model_server() -> WireServer:
    """The one slow OpenAI-wire server both systems stream from."""
    answer = openai_wire.text_answer(ANSWER, pieces=ANSWER_PIECES, completion_tokens=ANSWER_PIECES, role_chunk=False,
                                     delay=CHUNK_DELAY_S)
    return WireServer(default=answer)


def request_received_at(server: WireServer, marker: str) -> float | None:
    """When (time.time()) the model request whose prompt carries `marker` arrived, if it did."""
    needle = marker.encode()
    request = server.wait_for(lambda: next((r for r in server.requests if needle in r.raw_body), None), 5.0)
    return request.received_at if request is not None else None


def split_times(record: dict, server: WireServer, marker: str, sent_at: float, first_token_at: float) -> None:
    """send → model request and model request → first token (wall clocks of this host), in `record`."""
    received_at = request_received_at(server, marker)
    if received_at is not None:
        record["send_request_ms"] = round((received_at - sent_at) * 1000, 3)
        record["request_token_ms"] = round((first_token_at - received_at) * 1000, 3)


# --- ours ----------------------------------------------------------------------------------------------


class Ours:
    name = "ours"

    def __init__(self, server: Serve, token: str, wire: WireServer) -> None:
        self.server, self.token, self.wire = server, token, wire
        self.client = KeepAliveClient("127.0.0.1", server.port, token)

    def trial(self, marker: str) -> dict:
        record: dict = {"marker": marker}
        try:
            status, session, _, _ = self.client.request("POST", "/api/sessions", {"title": "first token"})
            if status != 201:
                raise TrialFailed(f"POST /api/sessions answered {status}: {session}")
            socket = SessionSocket(self.server.ws_url(session["id"]), self.token)
            try:
                sent_at = time.time()
                started = time.perf_counter()
                socket.socket.send(json.dumps({"type": "run.start", "text": f"Say something. ({marker})"}))
                seen: list[tuple[str, float]] = []  # each frame as it arrived: what it was, ms after the send

                def first_text(frame: dict) -> bool:
                    what = f"{frame['type']} {frame['state']}" if frame["type"] == "run.state" else frame["type"]
                    seen.append((what, round((time.perf_counter() - started) * 1000, 3)))
                    return _first_text_or_end(frame)

                frames = socket.until(first_text, timeout=TRIAL_TIMEOUT_S)
                first_perf, first_wall = time.perf_counter(), time.time()
                record["frames"] = seen
                if frames[-1]["type"] != "message.delta":
                    raise TrialFailed(f"no text before {frames[-1]['type']}: {frames[-1]}")
                record["first_token_ms"] = round((first_perf - started) * 1000, 3)
                finished = socket.until(lambda f: f["type"] == "run.finished", timeout=TRIAL_TIMEOUT_S)[-1]
                record["outcome"] = finished["outcome"]
                if finished["outcome"] != "completed":
                    raise TrialFailed(f"the run ended {finished['outcome']}")
            finally:
                socket.close()
            split_times(record, self.wire, marker, sent_at, first_wall)
        except (TrialFailed, TimeoutError, OSError, ConnectionClosed) as error:
            record["failure"] = f"{type(error).__name__}: {error}"
        return record

    def close(self) -> None:
        self.client.close()


def _first_text_or_end(frame: dict) -> bool:
    return (frame["type"] == "message.delta" and bool(frame["text"])) or frame["type"] in ("run.finished", "error")


# --- Chainlit ------------------------------------------------------------------------------------------


def peer_python(explicit: str | None) -> Path:
    """The Python of a venv with chainlit, openai and python-socketio: `explicit` (--chainlit-python or
    BENCH_CHAINLIT_PYTHON) as it is, else bench/.peers/chainlit, built with pip when it is missing or broken.
    PeerSkipped when none can be had."""
    if explicit:
        python = Path(explicit)
        problem = _peer_problem(python)
        if problem:
            raise PeerSkipped(f"{python}: {problem}")
        return python
    python = PEER_DIR / "bin" / "python"
    if not _peer_problem(python):
        return python
    print(f"building the Chainlit peer's venv in {PEER_DIR} (pip install "
          f"{' '.join(PEER_REQUIREMENTS)}) …", flush=True)
    steps = {"python -m venv": ([sys.executable, "-m", "venv", "--clear", str(PEER_DIR)], 120),
             "pip install": ([str(python), "-m", "pip", "install", "--quiet", *PEER_REQUIREMENTS],
                             PEER_INSTALL_TIMEOUT_S)}
    for step, (command, timeout) in steps.items():
        try:
            subprocess.run(command, check=True, capture_output=True, text=True, timeout=timeout)
        except subprocess.CalledProcessError as error:
            last = (error.stderr or error.stdout or "").strip().splitlines()[-1:] or ["no output"]
            raise PeerSkipped(f"could not build its venv ({step} exited {error.returncode}: {last[0]})") from None
        except (OSError, subprocess.TimeoutExpired) as error:
            raise PeerSkipped(f"could not build its venv ({step}: {error})") from None
    problem = _peer_problem(python)
    if problem:
        raise PeerSkipped(f"its venv was built but {problem}")
    return python


def _peer_problem(python: Path) -> str | None:
    """Why `python` cannot run the peer (None: it can)."""
    if not python.exists():
        return "no such interpreter"
    # Importing chainlit writes its config (.chainlit/, .files/) into its app root: a throwaway one.
    with tempfile.TemporaryDirectory(prefix="chainlit-check-") as app_root:
        check = subprocess.run([str(python), "-c", "import chainlit.cli, openai, socketio"], capture_output=True,
                               text=True, timeout=120, cwd=app_root, env={**os.environ, "CHAINLIT_APP_ROOT": app_root})
    if check.returncode != 0:
        return "cannot import chainlit, openai and socketio: " + (check.stderr.strip().splitlines() or ["?"])[-1]
    return None


class Chainlit:
    name = "chainlit"

    def __init__(self, python: Path, wire: WireServer, tmpdir: Path) -> None:
        self.wire = wire
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        app_root = tmpdir / "chainlit"  # where chainlit writes its .chainlit/config.toml and chainlit.md
        app_root.mkdir()
        env = {key: value for key, value in os.environ.items()
               if key not in ("DATABASE_URL", "LITERAL_API_KEY", "CHAINLIT_AUTH_SECRET")}  # no data layer, no login
        env.update(CHAINLIT_APP_ROOT=str(app_root), CHAINLIT_ENV_FILE=str(app_root / ".env"), PYTHONUNBUFFERED="1",
                   BENCH_OPENAI_BASE_URL=f"{wire.base_url}/v1", BENCH_OPENAI_MODEL=MODEL, OPENAI_API_KEY=API_KEY,
                   **loopback_no_proxy())
        self.server = ServerProcess([str(python), "-m", "chainlit", "run", str(PEER_APP), "--headless", "--host",
                                     "127.0.0.1", "--port", str(self.port)], env, tmpdir / "chainlit.log")
        self.driver: subprocess.Popen | None = None
        self.versions: dict = {}
        self.python = python

    def start(self) -> float:
        self.server.start()
        try:
            ready_s = self.server.wait_ready(lambda: answers(f"{self.url}/"), READY_DEADLINE_S)
        except RuntimeError as error:
            raise PeerSkipped(f"Chainlit did not start: {str(error).splitlines()[0]} (log: "
                              f"{self.server.log_tail(5)!r})") from None
        self.driver = subprocess.Popen([str(self.python), str(PEER_CLIENT), "--url", self.url, "--timeout",
                                        str(TRIAL_TIMEOUT_S)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       text=True, cwd=ROOT, env={**os.environ, **loopback_no_proxy()})
        ready = self._read()
        if ready.get("event") != "ready":
            raise PeerSkipped(f"its client did not start: {ready}")
        self.versions = {"chainlit": ready["chainlit"], "python-socketio": ready["socketio"]}
        return ready_s

    def _read(self) -> dict:
        assert self.driver is not None and self.driver.stdout is not None
        line = self.driver.stdout.readline()
        if not line:
            return {"error": f"the client exited ({self.driver.poll()})"}
        return json.loads(line)

    def trial(self, marker: str) -> dict:
        assert self.driver is not None and self.driver.stdin is not None
        record: dict = {"marker": marker}
        try:
            self.driver.stdin.write(json.dumps({"cmd": "trial", "text": f"Say something. ({marker})"}) + "\n")
            self.driver.stdin.flush()
        except OSError as error:  # the client is gone
            record["failure"] = f"the client is gone: {error}"
            return record
        result = self._read()
        if result.get("error"):
            record["failure"] = result["error"]
            return record
        record.update(first_token_ms=result["first_token_ms"], first_event=result["first_event"],
                      tokens=result["tokens"])
        split_times(record, self.wire, marker, result["sent_at"], result["first_token_at"])
        return record

    @property
    def pid(self) -> int:
        return self.server.pid

    def close(self) -> None:
        if self.driver is not None:
            if self.driver.poll() is None and self.driver.stdin is not None:
                try:
                    self.driver.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                    self.driver.stdin.close()
                    self.driver.wait(timeout=10)
                except (OSError, subprocess.TimeoutExpired):
                    self.driver.kill()
                    self.driver.wait()
        self.server.stop()


# --- the report ----------------------------------------------------------------------------------------


def system_result(records: list[dict], warmups: list[dict]) -> dict:
    ok = [r for r in records if "failure" not in r]
    raw = {key: [r[key] for r in ok if key in r] for key in ("first_token_ms", "send_request_ms", "request_token_ms")}
    return {"trials": len(records), "failures": len(records) - len(ok),
            "failure_details": [r["failure"] for r in records if "failure" in r],
            "percentiles": {key: summary(values) for key, values in raw.items()}, "raw": raw, "records": records,
            "warmup_trials": warmups}


def judge(ours: dict, peer: dict | None) -> dict:
    """The two verdicts (None: not judged, there is no peer)."""
    mine = ours["percentiles"]["first_token_ms"]
    theirs = peer["percentiles"]["first_token_ms"] if peer else None
    if not theirs or not theirs["n"] or not mine["n"]:
        return {"median": None, "p95": None, "median_ratio": None, "p95_ratio": None}
    clean = ours["failures"] == 0
    return {
        "median_ratio": round(mine["p50"] / theirs["p50"], 3), "p95_ratio": round(mine["p95"] / theirs["p95"], 3),
        "median": {"pass": clean and mine["p50"] <= TARGET_MEDIAN_RATIO * theirs["p50"], "ours": mine["p50"],
                   "limit": round(TARGET_MEDIAN_RATIO * theirs["p50"], 3)},
        "p95": {"pass": clean and mine["p95"] <= TARGET_P95_RATIO * theirs["p95"], "ours": mine["p95"],
                "limit": round(TARGET_P95_RATIO * theirs["p95"], 3)},
    }


def report(systems: dict[str, dict], verdicts: dict, skipped: str | None) -> str:
    rows = []
    for name, res in systems.items():
        s = res["percentiles"]["first_token_ms"]
        split = res["percentiles"]
        rows.append([name, str(s["n"]), fmt(s["p50"]), fmt(s["p95"]), fmt(s["p99"]), fmt(s["min"]), fmt(s["max"]),
                     fmt(split["send_request_ms"]["p50"]), fmt(split["request_token_ms"]["p50"]),
                     str(res["failures"])])
    out = [table(["system", "n", "send→first token p50 (ms)", "p95", "p99", "min", "max",
                  "send→model request p50", "model request→token p50", "failed"], rows), ""]
    if skipped:
        out.append(f"Chainlit peer skipped: {skipped}")
    else:
        ratios = f"median {fmt(verdicts['median_ratio'], 2)}×, p95 {fmt(verdicts['p95_ratio'], 2)}×"
        out.append(f"ours / Chainlit: {ratios}")
        for key, what in (("median", "median ≤ Chainlit's"), ("p95", f"p95 ≤ {TARGET_P95_RATIO:g}× Chainlit's")):
            verdict = verdicts[key]
            if verdict is None:
                out.append(f"MISS  {what}: not measured")
            else:
                out.append(f"{'PASS' if verdict['pass'] else 'MISS'}  {what}: {fmt(verdict['ours'])} ms "
                           f"(limit {fmt(verdict['limit'])} ms)")
    for name, res in systems.items():
        for detail in res["failure_details"][:5]:
            out.append(f"  failure in {name}: {detail}")
    return "\n".join(out)


# --- main ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20, help="measured trials per system (default 20)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 5 trials per system")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"result file (default {DEFAULT_JSON})")
    parser.add_argument("--chainlit-python", default=os.environ.get("BENCH_CHAINLIT_PYTHON"),
                        help="the Python of an existing venv with chainlit, openai and python-socketio (default: "
                             "BENCH_CHAINLIT_PYTHON, else bench/.peers/chainlit, built on first use)")
    parser.add_argument("--no-chainlit", action="store_true", help="measure ours only")
    parser.add_argument("--strict", action="store_true", help="exit with status 1 when a target is missed")
    parser.add_argument("--server-log", type=Path, default=None, help="keep our server's output in this file")
    args = parser.parse_args(argv)
    trials = 5 if args.quick else args.trials

    with tempfile.TemporaryDirectory(prefix="harness-bench-") as tmp, ExitStack() as stack:
        tmpdir = Path(tmp)
        wire = stack.enter_context(model_server())
        model_id = f"openai:{MODEL}@{wire.base_url}/v1"
        server = Serve(serve_env(tmpdir, HARNESS_MODEL=model_id, OPENAI_API_KEY=API_KEY, **loopback_no_proxy()),
                       tmpdir / "server.log")
        server.migrate()
        ours = Ours(server, server.create_token("bench"), wire)
        if args.server_log:  # (callbacks run last first: this one after the server has stopped)
            stack.callback(lambda: (args.server_log.parent.mkdir(parents=True, exist_ok=True),
                                    shutil.copyfile(server.log_path, args.server_log)))
        stack.callback(server.stop)
        stack.callback(ours.close)
        print(f"our server up on 127.0.0.1:{server.port} after {server.start(READY_DEADLINE_S):.2f} s "
              f"(model {model_id})", flush=True)

        skipped = "--no-chainlit" if args.no_chainlit else None
        peer: Chainlit | None = None
        if not skipped:
            try:
                peer = Chainlit(peer_python(args.chainlit_python), wire, tmpdir)
                stack.callback(peer.close)
                ready_s = peer.start()
                print(f"Chainlit {peer.versions['chainlit']} up on 127.0.0.1:{peer.port} after {ready_s:.2f} s",
                      flush=True)
            except PeerSkipped as reason:
                skipped, peer = str(reason), None
                print(f"Chainlit peer skipped: {skipped}", flush=True)
        systems = [ours, *([peer] if peer else [])]
        print(f"{trials} trials per system (+{WARMUP} warm-up), alternating", flush=True)

        began = datetime.datetime.now(datetime.timezone.utc)
        load_before = os.getloadavg()
        readers = {"ours": lambda: process_seconds(server.pid)}
        if peer:
            readers["chainlit"] = lambda: process_seconds(peer.pid)
        cpu_before = CpuSample(readers)
        records: dict[str, list[dict]] = {system.name: [] for system in systems}
        warmups: dict[str, list[dict]] = {system.name: [] for system in systems}
        for index in range(WARMUP + trials):
            for system in systems if index % 2 == 0 else systems[::-1]:
                record = system.trial(f"{system.name}-{index}-{uuid.uuid4().hex[:12]}")
                (warmups if index < WARMUP else records)[system.name].append(record)
                if "failure" in record:
                    print(f"  {system.name} #{index + 1}: {record['failure']}", flush=True)
        cpu = cpu_before.until(CpuSample(readers))
        load_after = os.getloadavg()
        ended = datetime.datetime.now(datetime.timezone.utc)
        peer_versions = peer.versions if peer else None

    results = {name: system_result(records[name], warmups[name]) for name in records}
    verdicts = judge(results["ours"], results.get("chainlit"))
    text = report(results, verdicts, skipped)
    print()
    print(text)
    others = (cpu["others_cores"] or 0) + (cpu["steal_cores"] or 0)
    print(f"\nCPU during the trials ({cpu['wall_s']:.0f} s wall): "
          + ", ".join(f"{name} {fmt(cores, 2)} cores" for name, cores in cpu["cores"].items())
          + f", bench clients {fmt(cpu['client_cores'], 2)} cores (this process; the Chainlit client is in others), "
            f"other processes {fmt(cpu['others_cores'], 2)} cores, steal {fmt(cpu['steal_cores'], 2)} cores"
          + ("  <-- the machine was not quiet; numbers are inflated" if others > 0.1 else ""))
    judged = [v for v in (verdicts["median"], verdicts["p95"]) if v is not None]
    all_pass = bool(judged) and len(judged) == 2 and all(v["pass"] for v in judged)
    print()
    output = {
        "benchmark": "first_token",
        "date": began.isoformat(timespec="seconds"),
        "finished": ended.isoformat(timespec="seconds"),
        "machine": machine_info(memory_mib=memory_mib()),
        "code": code_version(),
        "load_average": {"before": load_before, "after": load_after},
        "cpu_usage": cpu,
        "config": {
            "trials": trials, "warmup": WARMUP, "model": model_id, "answer_pieces": ANSWER_PIECES,
            "chunk_delay_s": CHUNK_DELAY_S, "first_chunk": "carries text, sent at once",
            "ours": "manage.py serve (Daphne + orchestrator worker, SQLite, in-memory channel layer); JSON WebSocket "
                    "API, run.start → first message.delta with text",
            "chainlit": ({"versions": peer_versions, "app": str(PEER_APP.relative_to(ROOT)),
                          "client": str(PEER_CLIENT.relative_to(ROOT)),
                          "measure": "socket.io (websocket transport) client_message → first streamed token "
                                     "(stream_start holding it)"}
                         if peer_versions else {"skipped": skipped}),
        },
        "percentile_method": PERCENTILE_METHOD,
        "targets": {"median_ratio_max": TARGET_MEDIAN_RATIO, "p95_ratio_max": TARGET_P95_RATIO,
                    "verdicts": verdicts, "all_pass": all_pass},
        "systems": results,
    }
    if skipped:
        print("TARGETS NOT JUDGED (no Chainlit peer)")
        return write_results(args.json, {**output, "table": text}, all_pass=False, strict=args.strict)
    return finish(args.json, output, text, all_pass=all_pass, strict=args.strict)


if __name__ == "__main__":
    sys.exit(main())
