"""Soak: one `manage.py serve` under a steady mixed load for `--minutes` (30 by default); does anything leak?

50 actors, each in a loop on a session of its own: start a scripted run (a streamed answer, a shell call
that waits for approval, or a sleep tool), then at random approve or deny the approval, stop the run at a
random point, or let it finish; a JSON WebSocket connects to the session and drops at random. Every 10 s the
server's RSS and open file descriptors are sampled, and the database's row counts. At the end: RSS growth
from minute 5 to the end (target ≤ 10 %), file descriptors (flat), rows per run, runs not terminal (target
0) and server errors (5xx answers, error frames, target 0).

    .venv/bin/python bench/soak.py                 # 30 minutes
    .venv/bin/python bench/soak.py --minutes 3     # a short run
"""

from __future__ import annotations

import argparse
import datetime
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import RESULTS, fmt, script_text, serve_env, table, write_results  # noqa: E402

from devtools.api import Api  # noqa: E402
from devtools.facts import cpu_model  # noqa: E402
from devtools.serve import Serve  # noqa: E402
from devtools.servers import sandbox_reachable_dir  # noqa: E402

ACTORS = 50
SAMPLE_SECONDS = 10
SCRIPTS = (
    {"turns": [{"words": 400, "delay_ms": 5}]},
    {"turns": [{"calls": [{"name": "shell", "arguments": {"command": "echo soak"}}]}, {"text": "done"}]},
    {"turns": [{"calls": [{"name": "sleep", "arguments": {"seconds": 2}}]}, {"text": "slept"}]},
)
TABLES = ("orchestrator_run", "orchestrator_message", "orchestrator_functioncall", "orchestrator_approval",
          "orchestrator_steeringmessage", "orchestrator_workerheartbeat", "django_session")


class Load:
    def __init__(self, server: Serve, token: str, until: float) -> None:
        self.server, self.api, self.until = server, Api(server.base_url, token, timeout=30), until
        self.errors: list[str] = []
        self.runs: list[str] = []
        self.lock = threading.Lock()

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        status, data = self.api.call(method, path, body)
        if status >= 500:
            with self.lock:
                self.errors.append(f"{method} {path} → {status}")
        return status, data

    def actor(self, seed: int) -> None:
        rng = random.Random(seed)
        _, session = self.call("POST", "/api/sessions", {"title": f"soak {seed}"})
        sid = session["id"]
        while time.monotonic() < self.until:
            status, started = self.call("POST", f"/api/sessions/{sid}/runs",
                                        {"text": script_text(rng.choice(SCRIPTS))})
            if status != 201:
                time.sleep(0.2)  # pacing a retry after a refusal (run_in_progress): not synchronisation
                continue
            run_id = started["run_id"]
            with self.lock:
                self.runs.append(run_id)
            if rng.random() < 0.3:
                self.socket_visit(sid, rng)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                run = self.call("GET", f"/api/runs/{run_id}")[1]
                if run.get("finished_at"):
                    break
                pending = [a for a in run.get("approvals", []) if a["status"] == "pending"]
                if pending:
                    decision = "approve" if rng.random() < 0.7 else "deny"
                    self.call("POST", f"/api/approvals/{pending[0]['id']}", {"decision": decision})
                elif rng.random() < 0.15:
                    self.call("POST", f"/api/sessions/{sid}/stop", {"run_id": run_id})
                time.sleep(rng.uniform(0.05, 0.3))  # an actor's think time (load shaping)

    def socket_visit(self, session_id: str, rng: random.Random) -> None:
        from websockets.sync.client import connect

        try:
            with connect(self.server.ws_url(session_id),
                         additional_headers={"Authorization": f"Bearer {self.api.token}"}) as socket:
                for _ in range(rng.randint(1, 20)):
                    frame = json.loads(socket.recv(timeout=5))
                    if frame.get("type") == "error" and frame.get("http_status", 0) >= 500:
                        with self.lock:
                            self.errors.append(f"error frame {frame}")
        except TimeoutError:
            pass  # a quiet session: the visit ends
        except Exception as exc:  # noqa: BLE001 - a dropped socket is the server's failure here
            with self.lock:
                self.errors.append(f"socket: {type(exc).__name__}: {exc}")


def rows(database: Path) -> dict[str, int]:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30) as connection:
        return {name: connection.execute(f"SELECT COUNT(*) FROM {name}").fetchone()[0] for name in TABLES}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--json", type=Path, default=RESULTS / "soak.json")
    parser.add_argument("--strict", action="store_true", help="exit with status 1 when a target is missed")
    parser.add_argument("--server-env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for manage.py serve (repeatable)")
    args = parser.parse_args(argv)
    began = datetime.datetime.now(datetime.timezone.utc)
    with tempfile.TemporaryDirectory(prefix="harness-soak-") as tmp:
        tmpdir = Path(tmp)
        env = serve_env(tmpdir, HARNESS_MODEL="scripted",
                        HARNESS_WORKSPACE_ROOT=str(sandbox_reachable_dir("harness-soak-ws-")),
                        **dict(item.partition("=")[::2] for item in args.server_env))
        server = Serve(env, tmpdir / "serve.log")
        server.migrate()
        token = server.create_token("soak")
        server.start()
        process = psutil.Process(server.process.pid)
        quiet_before = process.num_fds()  # before any load
        start = time.monotonic()
        load = Load(server, token, until=start + args.minutes * 60)
        actors = [threading.Thread(target=load.actor, args=(seed,), daemon=True) for seed in range(ACTORS)]
        for actor in actors:
            actor.start()
        samples = []
        try:
            next_sample = time.monotonic()
            while any(actor.is_alive() for actor in actors):
                if time.monotonic() < next_sample:
                    time.sleep(0.1)  # sampling cadence (not synchronisation)
                    continue
                next_sample += SAMPLE_SECONDS
                samples.append({"minute": round((time.monotonic() - start) / 60, 2),
                                "rss_mib": round(process.memory_info().rss / 2**20, 1),
                                "fds": process.num_fds(), "runs": len(load.runs),
                                "rows": rows(tmpdir / "bench.sqlite3")})
                print(f"{samples[-1]['minute']:6.2f} min  rss {samples[-1]['rss_mib']:7.1f} MiB  "
                      f"fds {samples[-1]['fds']:4d}  runs {samples[-1]['runs']:6d}  errors {len(load.errors)}",
                      flush=True)
            time.sleep(2)  # pacing: the last stops land and connections close (then checked, not assumed)
            quiet_after = process.num_fds()
            api = Api(server.base_url, token)
            live = [run_id for run_id in load.runs if not api.run(run_id).get("finished_at")]
            final_rows = rows(tmpdir / "bench.sqlite3")
        finally:
            server.stop()
    baseline = next((s for s in samples if s["minute"] >= min(5, args.minutes / 2)), samples[0])
    growth = (samples[-1]["rss_mib"] - baseline["rss_mib"]) / baseline["rss_mib"] * 100
    fds = [s["fds"] for s in samples if s["minute"] >= baseline["minute"]]
    # File descriptors under load follow the load (sockets, connections): compare the first and the last
    # third after the warm-up, by median.
    third = max(len(fds) // 3, 1)
    fds_first, fds_last = statistics.median(fds[:third]), statistics.median(fds[-third:])
    per_run = {name: round(count / max(len(load.runs), 1), 2) for name, count in final_rows.items()}
    passes = {"rss_growth": growth <= 10, "fds_flat": fds_last <= fds_first * 1.1, "no_live_runs": not live,
              "no_server_errors": not load.errors}
    print(table(["measure", "value", "target"], [
        ["runs started", str(len(load.runs)), ""],
        [f"RSS growth, minute {baseline['minute']:g} → end", f"{fmt(growth)} %", "≤ 10 %"],
        ["open fds under load, median: first third → last third", f"{fds_first:g} → {fds_last:g}", "flat (≤ +10 %)"],
        ["open fds idle: before the load → after it", f"{quiet_before} → {quiet_after}", "(pools warmed)"],
        ["runs not terminal at the end", str(len(live)), "0"],
        ["server errors", str(len(load.errors)), "0"],
    ]))
    print("rows per run:", per_run)
    output = {"benchmark": "soak", "began": began.isoformat(), "minutes": args.minutes, "actors": ACTORS,
              "machine": {"cpu": cpu_model(), "cores": psutil.cpu_count()}, "runs": len(load.runs),
              "rss_growth_pct": growth, "fds_idle": [quiet_before, quiet_after],
              "fds_under_load_median": [fds_first, fds_last], "samples": samples, "rows_per_run": per_run, "live_runs": live,
              "errors": load.errors[:50], "passes": passes}
    return write_results(args.json, output, all_pass=all(passes.values()), strict=args.strict)


if __name__ == "__main__":
    raise SystemExit(main())
