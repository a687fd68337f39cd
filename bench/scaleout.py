#!/usr/bin/env python3
"""Scale-out benchmark: stops across web processes, resuming after a worker is SIGKILLed, and run
throughput with one vs two workers, on a real scaled-out deployment on this machine.

Run with `.venv/bin/python bench/scaleout.py [--quick] [--json PATH]` (meant for `make bench`). Never run by
the tests. psycopg + websockets + psutil (in the venv); the deployment is devtools' (throwaway PostgreSQL and
Redis, the `Cluster` of web processes and workers the scale-out tests use), and so are its clients.

What it runs, measures and judges is described in bench/README.md (`scaleout.py`).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent)]

import psycopg  # noqa: E402

from common import (  # noqa: E402
    PERCENTILE_METHOD, RESULTS, TrialFailed, finish, fmt, judge_stopped, parse_iso, script_text, send_stop,
    serve_env, summary, table, wait_terminal,
)
from devtools.api import KeepAliveClient, SessionSocket  # noqa: E402
from devtools.cluster import TERMINAL, Cluster  # noqa: E402
from devtools.facts import CpuSample, git, machine_info, process_seconds, tree_seconds  # noqa: E402
from devtools.process import ROOT, manage  # noqa: E402
from devtools.serve import Serve  # noqa: E402
from devtools.servers import UNLIMITED_RUNS, PostgresServer, RedisServer  # noqa: E402

DEFAULT_JSON = RESULTS / "scaleout.json"

TARGET_CROSS_STOP_TERMINAL_P99_MS = 250.0

STREAM_SCRIPT = {"turns": [{"words": 5000, "delay_ms": 5}]}
SHORT_SCRIPT = {"turns": [
    {"text": "let me look at the clock", "delay_ms": 2, "calls": [{"name": "clock", "arguments": {}}]},
    {"text": "it is later than you think", "delay_ms": 2},
]}
SCENARIOS = ("stop", "resume", "throughput")
VARIANT_WEBS = {"cross": ("a", "b"), "same": ("a", "a"), "embedded": ("embedded", "embedded")}  # (start, stop)

STREAM_DEADLINE_S = 15.0
# Long enough for the whole 5000-word answer (≈ 30 s): a stop that neither the wake-up nor the database
# poll lands still ends the run when the stream does, and is measured rather than cut off.
TERMINAL_DEADLINE_S = 60.0
LATE_ACK_MS = 1000.0  # a stop acknowledged later than this was landed by neither the wake-up nor the poll
# A throughput phase during which processes we did not start used more than this many cores (other users of a
# shared machine) is marked, and the ratio is also given over the unmarked phases only.
NOISY_OTHERS_CORES = 0.25


# --- the deployment -------------------------------------------------------------------------------------


class Db:
    """One persistent autocommit connection for the bench's own polling (a connect per query would cost
    more than the thing measured)."""

    def __init__(self, url: str) -> None:
        self.connection = psycopg.connect(url, autocommit=True)

    def rows(self, query: str, *params) -> list[tuple]:
        return self.connection.execute(query, params).fetchall()

    def one(self, query: str, *params) -> tuple | None:
        rows = self.rows(query, *params)
        return rows[0] if rows else None

    def close(self) -> None:
        self.connection.close()


# --- CPU accounting -----------------------------------------------------------------------------------------

class CpuMeter:
    """Cores used by each of our processes, this client and everyone else over a window."""

    def __init__(self, groups: dict[str, list[int]], postmaster: int | None) -> None:
        self.readers = {name: (lambda pids=pids: sum_or_none(process_seconds(pid) for pid in pids))
                        for name, pids in groups.items()}
        self.readers["postgresql"] = lambda: tree_seconds(postmaster)

    def sample(self) -> CpuSample:
        return CpuSample(self.readers)

    @staticmethod
    def usage(before: CpuSample, after: CpuSample) -> dict:
        usage = before.until(after)
        return {"wall_s": usage["wall_s"], "cores": {**usage["cores"], "bench client": usage["client_cores"]},
                **{key: usage[key] for key in ("machine_busy_cores", "others_cores", "steal_cores")}}


def sum_or_none(values) -> float | None:
    values = list(values)
    return None if None in values else sum(values)


def cpu_line(usage: dict) -> str:
    parts = [f"{name} {value:.2f}" for name, value in usage["cores"].items() if value is not None]
    if "machine_busy_cores" in usage:
        parts.append(f"others {usage['others_cores']:.2f}")
        parts.append(f"steal {usage['steal_cores']:.2f}")
        parts.append(f"machine busy {usage['machine_busy_cores']:.2f} of {os.cpu_count()}")
    return ", ".join(parts)


# --- scenario 1: stops ---------------------------------------------------------------------------------------


class Watcher(SessionSocket):
    """A JSON WebSocket API client on one session through one web process."""

    def __init__(self, port: int, token: str, session_id: str) -> None:
        super().__init__(f"ws://127.0.0.1:{port}/ws/api/sessions/{session_id}/", token)
        if self.snapshot.get("type") != "session.snapshot":
            raise TrialFailed(f"websocket: first frame was {self.snapshot.get('type')}, not a snapshot")

    def until_kind(self, kind: str, deadline_s: float, *, run_id: str | None = None) -> tuple[dict, float]:
        frames = self.until(lambda f: f.get("type") == kind and (run_id is None or f.get("run_id") in (None, run_id)),
                            timeout=deadline_s)
        return frames[-1], time.perf_counter()

    def count(self, kind: str, seconds: float) -> int:
        """How many frames of this type arrive within the next `seconds`."""
        deadline, seen = time.monotonic() + seconds, 0
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                frame = json.loads(self.socket.recv(timeout=remaining))
            except TimeoutError:
                break
            seen += frame.get("type") == kind
        return seen

    def close(self) -> None:
        try:
            super().close()
        except Exception:
            pass


class StopBench:
    def __init__(self, clients: dict[str, KeepAliveClient], ports: dict[str, int], tokens: dict[str, str],
                 db: Db | None, linger_s: float = 0.0) -> None:
        self.clients, self.ports, self.tokens, self.db = clients, ports, tokens, db
        self.linger_s = linger_s

    def trial(self, variant: str) -> dict:
        start_web, stop_web = VARIANT_WEBS[variant]
        starter, stopper = self.clients[start_web], self.clients[stop_web]
        record: dict = {"variant": variant, "start_via": start_web, "stop_via": stop_web}
        watcher = None
        run_id = sid = None
        try:
            status, body, _, _ = starter.request("POST", "/api/sessions", {"title": f"bench stop {variant}"})
            if status != 201:
                raise TrialFailed(f"POST /api/sessions answered {status}")
            sid = body["id"]
            watcher = Watcher(self.ports[stop_web], self.tokens[stop_web], sid)
            status, body, _, _ = starter.request("POST", f"/api/sessions/{sid}/runs",
                                                 {"text": script_text(STREAM_SCRIPT)})
            if status != 201:
                raise TrialFailed(f"start answered {status}: {body}")
            run_id = body["run_id"]
            record.update(session_id=sid, run_id=run_id)
            try:
                watcher.until_kind("message.delta", STREAM_DEADLINE_S)
            except TimeoutError:
                raise TrialFailed(f"precondition: no message.delta within {STREAM_DEADLINE_S:g} s") from None
            if self.db is not None and variant != "embedded":
                owner = self.db.one("SELECT executor_id FROM orchestrator_run WHERE id = %s", run_id)
                record["lease_owner"] = owner[0] if owner else None
            status, _, record["pre_stop_get_ms"], _ = stopper.request("GET", f"/api/sessions/{sid}")
            record["pre_stop_get_ms"] = round(record["pre_stop_get_ms"], 3)

            sent = time.perf_counter()
            send_stop(stopper, sid, run_id, record)
            try:
                finished, seen = watcher.until_kind("run.finished", TERMINAL_DEADLINE_S, run_id=run_id)
                record["client_finished_event_ms"] = round((seen - sent) * 1000, 3)
                if self.linger_s:  # diagnosis: does anything still stream for this run after it finished?
                    record["deltas_after_finished"] = watcher.count("message.delta", self.linger_s)
            except TimeoutError:
                record["client_finished_event_ms"] = None  # judged on the database below
            run, _ = wait_terminal(stopper, run_id, TERMINAL_DEADLINE_S, 0.01)
            if record["client_finished_event_ms"] is None:
                raise TrialFailed("run.finished never reached the stopping process's socket")
            requested = parse_iso(run["stop"]["requested_at"])
            if requested:
                record["requested_at_epoch"] = requested.timestamp()
            judge_stopped(run, record)
        except TrialFailed as exc:
            record["failure"] = str(exc)
        except Exception as exc:  # a broken socket or connection: one failed trial, not a dead bench
            record["failure"] = f"error: {type(exc).__name__}: {exc}"
        finally:
            if watcher is not None:
                watcher.close()
            if run_id and "final_state" not in record:
                try:  # never leave a 25 s stream running into the next trial
                    stopper.request("POST", f"/api/sessions/{sid}/stop", {"run_id": run_id})
                except Exception:
                    pass
        return record


STOP_FIELDS = ("stop_response_ms", "stop_terminal_ms", "stop_ack_ms", "ack_terminal_ms", "client_finished_event_ms",
               "pre_stop_get_ms")


def stop_result(records: list[dict], warmup: list[dict]) -> dict:
    ok = [r for r in records if "failure" not in r]
    raw = {field: [r[field] for r in ok if r.get(field) is not None] for field in STOP_FIELDS}
    raw["stop_response_ms"] = [r["stop_response_ms"] for r in records if r.get("stop_response_ms") is not None]
    late = [r for r in ok if (r.get("stop_ack_ms") or 0) >= LATE_ACK_MS]
    return {
        "n": len(records), "ok": len(ok), "failures": len(records) - len(ok),
        "failure_details": [r["failure"] for r in records if "failure" in r],
        "prior_state_counts": dict(Counter(r.get("prior_state") or "none" for r in records)),
        "lease_owner_counts": dict(Counter(r["lease_owner"] for r in records if r.get("lease_owner"))),
        "late_stops": len(late),
        "late_stop_trials": [{k: r.get(k) for k in ("run_id", "stop_ack_ms", "stop_terminal_ms", "lease_owner")}
                             for r in late],
        "raw": raw,
        "percentiles": {field: summary(values) for field, values in raw.items()},
        "trials": records,
        "warmup_trials": warmup,
    }


def run_stop_scenario(bench: StopBench, variants: list[str], trials: int, warmup: int) -> dict:
    records: dict[str, list[dict]] = {v: [] for v in variants}
    warm: dict[str, list[dict]] = {v: [] for v in variants}
    for index in range(warmup + trials):
        order = variants[index % len(variants):] + variants[:index % len(variants)]  # rotate: no position bias
        for variant in order:
            record = bench.trial(variant)
            (warm if index < warmup else records)[variant].append(record)
            if "failure" in record:
                print(f"  stop/{variant} #{index + 1}: {record['failure']}", flush=True)
        if (index + 1) % 25 == 0:
            print(f"  stop: {index + 1}/{warmup + trials} rounds", flush=True)
    return {v: stop_result(records[v], warm[v]) for v in variants}


def read_probe_events(log_dir: Path) -> dict[str, list[dict]]:
    """`PROBE {json}` lines of the instrumented workers (bench/scaleout_probe.py), by run id."""
    found: dict[str, list[dict]] = defaultdict(list)
    for path in sorted(log_dir.glob("worker-*.log")):
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("PROBE "):
                try:
                    event = json.loads(line[len("PROBE "):])
                except ValueError:
                    continue
                found[event["run"]].append(event)
    return found


def attach_probe(stop: dict, events: dict[str, list[dict]]) -> dict:
    """Split each stop into its pieces: web → Redis → worker (the wake-up), worker → cancelled work ended."""
    out = {}
    for variant, res in stop.items():
        if variant == "embedded":
            continue
        wake, poll, cancel, swallowed_where, orphan_lives = [], [], [], Counter(), []
        first_by: Counter = Counter()
        swallowed = abandoned = 0
        for record in res["trials"]:
            mine, requested = events.get(record.get("run_id") or "", []), record.get("requested_at_epoch")
            if not mine or requested is None:
                continue
            pieces: dict = {}
            wakeups = [e["t"] for e in mine if e["event"] == "wakeup"]
            polls = [e["t"] for e in mine if e["event"] == "poll_sees_flag"]
            done = [e for e in mine if e["event"] == "cancel_done"]
            if wakeups:
                pieces["wakeup_after_request_ms"] = round((wakeups[0] - requested) * 1000, 3)
                wake.append(pieces["wakeup_after_request_ms"])
            if polls:
                pieces["poll_after_request_ms"] = round((polls[0] - requested) * 1000, 3)
                poll.append(pieces["poll_after_request_ms"])
            first_by["wake-up" if wakeups and (not polls or wakeups[0] <= polls[0]) else "db poll" if polls else
                     "none"] += 1
            orphans = [e for e in mine if e["event"] == "orphan_ended"]
            if orphans:
                pieces["orphan_ended_after_cancel_s"] = orphans[0]["seconds_after_cancel"]
                pieces["orphan_ended_how"] = orphans[0]["how"]
                orphan_lives.append(orphans[0]["seconds_after_cancel"])
            if done:
                pieces["cancel_to_work_end_ms"] = round(done[0]["seconds"] * 1000, 3)
                pieces["abandoned"] = bool(done[0].get("abandoned"))
                abandoned += pieces["abandoned"]
                cancel.append(pieces["cancel_to_work_end_ms"])
                if done[0]["swallowed"]:
                    swallowed += 1
                    pieces["cancel_swallowed_at"] = done[0]["await_chain"][-3:]
                    swallowed_where[" → ".join(done[0]["await_chain"][-3:])] += 1
            record["probe"] = pieces
        out[variant] = {
            "first_signal": dict(first_by), "swallowed_cancels": swallowed, "abandoned_work": abandoned,
            "orphan_lifetimes_s": orphan_lives,
            "deltas_after_run_finished": sum(r.get("deltas_after_finished", 0) for r in res["trials"]),
            "trials_with_deltas_after_run_finished": sum(1 for r in res["trials"] if r.get("deltas_after_finished")),
            "swallowed_at": dict(swallowed_where),
            "raw": {"wakeup_after_request_ms": wake, "poll_after_request_ms": poll, "cancel_to_work_end_ms": cancel},
            "percentiles": {"wakeup_after_request_ms": summary(wake), "poll_after_request_ms": summary(poll),
                            "cancel_to_work_end_ms": summary(cancel)},
        }
    return out


# --- scenario 2: resume after SIGKILL ----------------------------------------------------------------------


def resume_trial(cluster: Cluster, client: KeepAliveClient, db: Db, index: int, *, words: int, ttl: float,
                 deadline_s: float, kill_delay_s: float) -> dict:
    record: dict = {"trial": index, "kill_delay_s": round(kill_delay_s, 3)}
    status, body, _, _ = client.request("POST", "/api/sessions", {"title": "bench resume"})
    if status != 201:
        return {**record, "failure": f"POST /api/sessions answered {status}"}
    sid = body["id"]
    status, body, _, _ = client.request("POST", f"/api/sessions/{sid}/runs",
                                        {"text": script_text({"turns": [{"words": words, "delay_ms": 5}]})})
    if status != 201:
        return {**record, "failure": f"start answered {status}: {body}"}
    run_id = body["run_id"]
    record.update(session_id=sid, run_id=run_id)
    query = ("SELECT r.executor_id, extract(epoch FROM r.lease_expires_at)::float8, r.state, r.resume_count, "
             "extract(epoch FROM clock_timestamp())::float8, "
             "(SELECT count(*) FROM orchestrator_message m WHERE m.run_id = r.id AND m.role = 'assistant' "
             " AND m.status = 'streaming' AND m.text <> '') "
             "FROM orchestrator_run r WHERE r.id = %s")
    deadline = time.monotonic() + STREAM_DEADLINE_S
    while True:
        owner, expires, state, _, _, streaming_with_text = db.one(query, run_id)
        if state == "assistant_streaming" and owner and streaming_with_text:
            break
        if state in TERMINAL or time.monotonic() > deadline:
            return {**record, "failure": f"precondition: never streaming with text (state {state})"}
        time.sleep(0.01)
    # Workers die at any point of the lease's renewal cycle: kill after a random part of it.
    time.sleep(kill_delay_s)
    owner, expires, state, _, _, _ = db.one(query, run_id)
    if state != "assistant_streaming" or not owner:
        return {**record, "failure": f"precondition: no longer streaming after the kill delay (state {state})"}
    pid = int(owner.split(":")[1])
    victim = next((p for p in cluster.workers if p.pid == pid), None)
    if victim is None:
        return {**record, "failure": f"lease owner {owner} is not one of our workers"}
    owner, expires, state, _, db_now, _ = db.one(query, run_id)  # as close to the kill as we can
    killed_at = time.time()
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    cluster.workers.remove(victim)
    record.update(killed_owner=owner, state_at_kill=state, lease_remaining_at_kill_s=round(expires - db_now, 3))

    takeover = None
    while True:
        new_owner, new_expires, state, resume_count, db_now, _ = db.one(query, run_id)
        now = time.time()
        if takeover is None and new_owner and new_owner != owner:
            takeover = now
            record.update(new_owner=new_owner, kill_takeover_s=round(now - killed_at, 3),
                          # lease_acquire set expires = its now() + TTL: the takeover instant, server-side
                          kill_takeover_server_s=round(new_expires - ttl - killed_at, 3),
                          takeover_after_lease_expiry_s=round(new_expires - ttl - expires, 3))
        if state in TERMINAL:
            record.update(final_state=state, resume_count=resume_count, kill_terminal_s=round(now - killed_at, 3))
            if takeover is not None:
                record["takeover_terminal_s"] = round(now - takeover, 3)
            break
        if now - killed_at > deadline_s:
            record["failure"] = f"not terminal {deadline_s:g} s after the kill (state {state}, owner {new_owner!r})"
            break
        time.sleep(0.01)
    if "failure" not in record:
        if record["final_state"] != "completed":
            record["failure"] = f"ended {record['final_state']}, not completed"
        elif takeover is None:
            record["failure"] = "completed without a visible takeover"
        else:
            answer = db.one("SELECT text FROM orchestrator_message WHERE run_id = %s AND role = 'assistant' "
                            "AND status = 'complete' ORDER BY id DESC LIMIT 1", run_id)
            record["answer_words"] = len(answer[0].split()) if answer else 0
            if record["answer_words"] != words:
                record["failure"] = f"the resumed answer has {record['answer_words']} words, not {words}"
    started = time.monotonic()
    cluster.start_worker()  # back to two workers for the next trial
    record["replacement_boot_s"] = round(time.monotonic() - started, 3)
    return record


RESUME_FIELDS = ("kill_takeover_s", "kill_takeover_server_s", "lease_remaining_at_kill_s",
                 "takeover_after_lease_expiry_s", "kill_terminal_s", "takeover_terminal_s", "replacement_boot_s")


def run_resume_scenario(cluster: Cluster, clients: dict[str, KeepAliveClient], db: Db, trials: int, *, words: int,
                        ttl: float, interval: float, poll: float, seed: int) -> dict:
    records = []
    renewal_period = poll * -(-(ttl / 3) // poll)  # the watcher renews at the first poll ≥ TTL/3 after the last
    rng = random.Random(seed)
    for index in range(trials):
        client = clients["a" if index % 2 == 0 else "b"]
        record = resume_trial(cluster, client, db, index + 1, words=words, ttl=ttl,
                              deadline_s=ttl + interval + 60, kill_delay_s=rng.uniform(0, renewal_period))
        records.append(record)
        line = (f"  resume #{index + 1}: kill→takeover {record.get('kill_takeover_s', '-')} s, "
                f"kill→terminal {record.get('kill_terminal_s', '-')} s")
        print(line + (f"  FAILED: {record['failure']}" if "failure" in record else ""), flush=True)
    ok = [r for r in records if "failure" not in r]
    raw = {field: [r[field] for r in ok if r.get(field) is not None] for field in RESUME_FIELDS}
    bound = {
        "lease_ttl_s": ttl, "recovery_interval_s": interval, "stop_poll_s": poll,
        "renewal_period_s": round(renewal_period, 3),
        "kill_takeover_lower_s": round(ttl - renewal_period, 3),
        "kill_takeover_upper_s": round(ttl + interval, 3),
        "explanation": ("the dead worker's lease lapses TTL after its last renewal (renewals every "
                        f"{renewal_period:g} s), i.e. {ttl - renewal_period:g}–{ttl:g} s after the kill; the next "
                        f"recovery scan of a live worker (every {interval:g} s) then takes it over: "
                        f"kill→takeover ∈ ({ttl - renewal_period:g}, {ttl + interval:g}] s plus a scan's duration"),
    }
    takeover = raw["kill_takeover_s"]
    bound["within_bound"] = bool(takeover) and max(takeover) <= bound["kill_takeover_upper_s"] + 0.25
    return {
        "n": len(records), "ok": len(ok), "failures": len(records) - len(ok),
        "failure_details": [r["failure"] for r in records if "failure" in r],
        "lost_runs": sum(1 for r in records if r.get("final_state") != "completed"),
        "words": words, "script": {"turns": [{"words": words, "delay_ms": 5}]}, "seed": seed,
        "kill_delay": f"uniform in [0, {renewal_period:g}) s after the run is seen streaming (random.Random({seed}))",
        "bound": bound, "raw": raw,
        "percentiles": {field: summary(values) for field, values in raw.items()},
        "trials": records,
    }


# --- scenario 3: throughput -------------------------------------------------------------------------------


def throughput_phase(cluster: Cluster, clients: dict[str, KeepAliveClient], db: Db, meter_groups, postmaster: int | None,
                     *, workers: int, runs: int, threads: int, deadline_s: float) -> dict:
    while len(cluster.workers) > workers:
        cluster.stop_worker(cluster.workers[-1])
    while len(cluster.workers) < workers:
        cluster.start_worker()
    live = db.one("SELECT count(*) FROM orchestrator_run WHERE state NOT IN ('completed', 'stopped', 'failed')")[0]
    if live:
        raise RuntimeError(f"{live} runs are still live before a throughput phase")
    webs = ("a", "b")
    sessions = []
    for index in range(runs):  # not timed
        status, body, _, _ = clients[webs[index % 2]].request("POST", "/api/sessions", {"title": "bench throughput"})
        if status != 201:
            raise RuntimeError(f"POST /api/sessions answered {status}")
        sessions.append((webs[index % 2], body["id"]))
    text = script_text(SHORT_SCRIPT)

    def start(item):
        web, sid = item
        status, body, elapsed, _ = clients[web].request("POST", f"/api/sessions/{sid}/runs", {"text": text})
        return status, body, elapsed

    meter = CpuMeter({**meter_groups(), "workers": [p.pid for p in cluster.workers]}, postmaster)
    cpu_before = meter.sample()
    epoch_start = time.time()
    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as pool:
        answers = list(pool.map(start, sessions))
    t_started = time.perf_counter()
    bad = [(s, b) for s, b, _ in answers if s != 201]
    if bad:
        raise RuntimeError(f"{len(bad)} starts failed, e.g. {bad[0]}")
    ids = [b["run_id"] for _, b, _ in answers]
    owners_seen: Counter = Counter()  # live leases per worker, summed over the polls
    max_concurrent: dict[str, int] = {}
    first_owner: dict[str, str] = {}  # run → the first worker seen holding its lease
    while True:
        done, failed = db.one("SELECT count(*) FILTER (WHERE state IN ('completed', 'stopped', 'failed')), "
                              "count(*) FILTER (WHERE state = 'failed') FROM orchestrator_run WHERE id = ANY(%s::uuid[])",
                              ids)
        now = time.perf_counter()
        if done == runs:
            break
        counts: Counter = Counter()
        for run_id, owner in db.rows("SELECT id::text, executor_id FROM orchestrator_run WHERE id = ANY(%s::uuid[]) "
                                     "AND executor_id <> ''", ids):
            counts[owner] += 1
            first_owner.setdefault(run_id, owner)
        for owner, count in counts.items():
            owners_seen[owner] += count
            max_concurrent[owner] = max(max_concurrent.get(owner, 0), count)
        if now - t0 > deadline_s:
            raise RuntimeError(f"throughput: only {done}/{runs} runs terminal after {deadline_s:g} s")
        time.sleep(0.05)
    cpu_after = meter.sample()
    epoch_end = time.time()
    first_created, last_finished = db.one(
        "SELECT extract(epoch FROM min(created_at))::float8, extract(epoch FROM max(finished_at))::float8 "
        "FROM orchestrator_run WHERE id = ANY(%s::uuid[])", ids)
    outcomes = dict(db.rows("SELECT outcome, count(*) FROM orchestrator_run WHERE id = ANY(%s::uuid[]) GROUP BY 1", ids))
    durations = [round(d * 1000, 3) for (d,) in db.rows(
        "SELECT extract(epoch FROM finished_at - created_at)::float8 FROM orchestrator_run WHERE id = ANY(%s::uuid[])",
        ids)]
    server_window = last_finished - first_created
    cpu = CpuMeter.usage(cpu_before, cpu_after)
    total_samples = sum(owners_seen.values()) or 1
    return {
        "workers": workers, "worker_pids": [p.pid for p in cluster.workers], "runs": runs, "client_threads": threads,
        "epoch_start": epoch_start, "epoch_end": epoch_end,
        "outcomes": outcomes, "failed": failed,
        "start_requests_s": round(t_started - t0, 3),
        "start_request_ms": summary([round(e, 3) for _, _, e in answers]),
        "server_window_s": round(server_window, 3),
        "client_window_s": round(now - t0, 3),
        "runs_per_s_server": round(runs / server_window, 3),
        "runs_per_s_client": round(runs / (now - t0), 3),
        "run_duration_ms": summary(durations),
        "run_duration_raw_ms": durations,
        "driving_share": {owner: round(count / total_samples, 3) for owner, count in owners_seen.items()},
        "runs_per_worker": dict(Counter(first_owner.values())),
        "runs_never_seen_leased": runs - len(first_owner),
        "max_concurrent_per_worker": max_concurrent,
        "cpu": cpu,
        "cpu_ms_per_run": {name: round(cores * cpu["wall_s"] * 1000 / runs, 2) for name, cores in cpu["cores"].items()
                           if cores is not None},
    }


def attach_throughput_probe(throughput: dict, log_dir: Path) -> None:
    """Per worker and phase, from the instrumented workers' monitor lines: how busy its one database thread
    was, its health checks, its main thread's CPU and its event loop's worst lag."""
    monitors: dict[int, list[dict]] = defaultdict(list)
    for event in read_probe_events(log_dir).get("", []):
        if event["event"] == "monitor":
            monitors[event["pid"]].append(event)
    for phase in throughput["phases"]:
        per_worker = {}
        for pid in phase["worker_pids"]:
            lines = sorted(monitors.get(pid, []), key=lambda e: e["t"])
            before = [e for e in lines if e["t"] <= phase["epoch_start"]]
            inside = [e for e in lines if phase["epoch_start"] < e["t"] <= phase["epoch_end"] + 1.0]
            if not before or not inside:
                continue
            a, b = before[-1], inside[-1]
            wall = b["t"] - a["t"]
            calls = b["db_calls"] - a["db_calls"]
            per_worker[str(pid)] = {
                "window_s": round(wall, 3),
                "db_thread_busy": round((b["db_busy_s"] - a["db_busy_s"]) / wall, 3),
                "db_calls": calls,
                "db_call_mean_ms": round((b["db_busy_s"] - a["db_busy_s"]) * 1000 / calls, 3) if calls else None,
                "health_checks": b["health_checks"] - a["health_checks"],
                "health_check_mean_ms": round((b["health_check_s"] - a["health_check_s"]) * 1000
                                              / max(1, b["health_checks"] - a["health_checks"]), 3),
                "main_thread_cpu_cores": round((b["main_thread_cpu_s"] - a["main_thread_cpu_s"]) / wall, 3),
                "process_cpu_cores": round((b["process_cpu_s"] - a["process_cpu_s"]) / wall, 3),
                "loop_lag_max_ms": max(e["loop_lag_max_ms"] for e in inside),
                "max_executors": max(e["executors"] for e in inside),
                "db_by_function": {
                    name: {"calls": calls - a.get("by_function", {}).get(name, [0, 0])[0],
                           "busy_s": round(busy - a.get("by_function", {}).get(name, [0, 0])[1], 3)}
                    for name, (calls, busy) in b.get("by_function", {}).items()
                },
            }
        phase["probe"] = per_worker
        phase["probe_db_calls_per_run"] = round(sum(w["db_calls"] for w in per_worker.values()) / phase["runs"], 1)
        phase["probe_health_checks_per_run"] = round(
            sum(w["health_checks"] for w in per_worker.values()) / phase["runs"], 1)
        by_function: dict[str, list] = defaultdict(lambda: [0, 0.0])
        for w in per_worker.values():
            for name, value in w["db_by_function"].items():
                by_function[name][0] += value["calls"]
                by_function[name][1] += value["busy_s"]
        phase["probe_db_by_function_per_run"] = {
            name: {"calls": round(calls / phase["runs"], 2), "busy_ms": round(busy * 1000 / phase["runs"], 2)}
            for name, (calls, busy) in sorted(by_function.items(), key=lambda kv: -kv[1][1]) if calls
        }


def run_throughput_scenario(cluster, clients, db, meter_groups, postmaster, *, runs: int, rounds: int,
                            threads: int) -> dict:
    order = []
    for index in range(rounds):
        order += [1, 2] if index % 2 == 0 else [2, 1]
    phases = []
    for workers in order:
        phase = throughput_phase(cluster, clients, db, meter_groups, postmaster, workers=workers, runs=runs,
                                 threads=threads, deadline_s=600)
        phases.append(phase)
        print(f"  throughput with {workers} worker(s): {phase['runs_per_s_server']:.1f} runs/s (server), "
              f"{phase['runs_per_s_client']:.1f} runs/s (client); CPU: {cpu_line(phase['cpu'])}", flush=True)
    for phase in phases:
        phase["noisy"] = (phase["cpu"].get("others_cores") or 0) > NOISY_OTHERS_CORES
    by_workers = {}
    clean = {}
    for count in (1, 2):
        quiet = [p["runs_per_s_server"] for p in phases if p["workers"] == count and not p["noisy"]]
        clean[count] = statistics.median(quiet) if quiet else None
        mine = [p for p in phases if p["workers"] == count]
        by_workers[count] = {
            "runs_per_s_server": [p["runs_per_s_server"] for p in mine],
            "runs_per_s_client": [p["runs_per_s_client"] for p in mine],
            "median_runs_per_s_server": round(statistics.median(p["runs_per_s_server"] for p in mine), 3),
            "median_runs_per_s_client": round(statistics.median(p["runs_per_s_client"] for p in mine), 3),
        }
    return {
        "script": SHORT_SCRIPT, "runs_per_phase": runs, "rounds": rounds, "order": order, "phases": phases,
        "by_workers": {str(k): v for k, v in by_workers.items()},
        "ratio_2_over_1_server": round(by_workers[2]["median_runs_per_s_server"] / by_workers[1]["median_runs_per_s_server"], 3),
        "ratio_2_over_1_client": round(by_workers[2]["median_runs_per_s_client"] / by_workers[1]["median_runs_per_s_client"], 3),
        "noisy_others_cores": NOISY_OTHERS_CORES,
        "ratio_2_over_1_server_quiet_phases": round(clean[2] / clean[1], 3) if clean[1] and clean[2] else None,
    }


# --- the embedded baseline server -------------------------------------------------------------------------


def start_embedded(tmpdir: Path) -> tuple[Serve, str]:
    env = serve_env(tmpdir, DATABASE_URL=f"sqlite:///{tmpdir / 'embedded.sqlite3'}",
                    HARNESS_VAR_DIR=str(tmpdir / "embedded-var"),
                    HARNESS_WORKSPACE_ROOT=str(tmpdir / "embedded-workspaces"))
    env.pop("REDIS_URL", None)
    server = Serve(env, tmpdir / "logs" / "embedded.log")
    server.migrate()
    token = server.create_token("bench")
    server.start()
    return server, token


# --- reporting ---------------------------------------------------------------------------------------------


def pair(p: dict) -> str:
    return f"{fmt(p['p50'])} / {fmt(p['p99'])}"


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def report(results: dict, settings_used: dict) -> tuple[str, dict]:
    out, verdicts = [], {}
    stop = results.get("stop")
    if stop:
        rows = []
        for variant, res in stop.items():
            pct = res["percentiles"]
            rows.append([
                {"cross": "cross: start A, stop B", "same": "same: start A, stop A",
                 "embedded": "embedded: serve, SQLite"}[variant],
                str(res["n"]), pair(pct["stop_terminal_ms"]), fmt(pct["stop_terminal_ms"]["max"]),
                pair(pct["stop_response_ms"]), pair(pct["stop_ack_ms"]), pair(pct["ack_terminal_ms"]),
                pair(pct["client_finished_event_ms"]), pair(pct["pre_stop_get_ms"]), str(res["late_stops"]),
                str(res["failures"]),
            ])
        out.append(table(["stop (mid-stream)", "n", "stop→terminal p50/p99 ms", "max", "stop→response p50/p99",
                          "requested→ack p50/p99", "ack→terminal p50/p99", "stop→run.finished on socket p50/p99",
                          "pre-stop GET p50/p99", f"late (ack > {LATE_ACK_MS / 1000:g} s)", "failures"], rows))
        ratios = {}
        for base in ("same", "embedded"):
            if "cross" in stop and base in stop:
                c, b = stop["cross"]["percentiles"], stop[base]["percentiles"]
                ratios[f"cross/{base}"] = {
                    f"{field}_{q}": ratio(c[field][q], b[field][q])
                    for field in ("stop_terminal_ms", "stop_response_ms") for q in ("p50", "p99")
                }
        if ratios:
            out.append("")
            out.append(table(["ratio", "stop→terminal p50", "stop→terminal p99", "stop→response p50",
                              "stop→response p99"],
                             [[name, *(f"{r[k]:.2f}" if r[k] is not None else "-" for k in
                                       ("stop_terminal_ms_p50", "stop_terminal_ms_p99", "stop_response_ms_p50",
                                        "stop_response_ms_p99"))] for name, r in ratios.items()]))
        results["stop_ratios"] = ratios
        probe = results.get("stop_probe")
        if probe:
            rows = []
            for variant, res in probe.items():
                pct = res["percentiles"]
                rows.append([variant, pair(pct["wakeup_after_request_ms"]), fmt(pct["wakeup_after_request_ms"]["max"]),
                             ", ".join(f"{k}: {v}" for k, v in res["first_signal"].items()),
                             pair(pct["cancel_to_work_end_ms"]), fmt(pct["cancel_to_work_end_ms"]["max"]),
                             str(res["swallowed_cancels"]), str(res["abandoned_work"]),
                             ", ".join(f"{s:g}" for s in res["orphan_lifetimes_s"]) or "-",
                             f"{res['deltas_after_run_finished']} in {res['trials_with_deltas_after_run_finished']}"])
            out.append("")
            out.append(table(["probe (instrumented workers)", "stop_requested→wake-up at worker p50/p99 ms", "max",
                              "first signal", "cancel→work ended p50/p99 ms", "max", "cancels swallowed",
                              "left behind", "orphan ended after (s)", "deltas after run.finished (trials)"], rows))
            for variant, res in probe.items():
                for where, count in res["swallowed_at"].items():
                    out.append(f"  swallowed ({variant}, {count}×) at: {where}")
        if "cross" in stop:
            value = stop["cross"]["percentiles"]["stop_terminal_ms"]["p99"]
            verdicts["cross_stop_terminal_p99_ms"] = {
                "target": TARGET_CROSS_STOP_TERMINAL_P99_MS, "value": value,
                "pass": value is not None and value <= TARGET_CROSS_STOP_TERMINAL_P99_MS and not stop["cross"]["failures"],
            }
    resume = results.get("resume")
    if resume:
        pct = resume["percentiles"]
        rows = [[name, str(pct[field]["n"]), secs(pct[field]["p50"]), secs(pct[field]["p99"]), secs(pct[field]["min"]),
                 secs(pct[field]["max"])] for name, field in (
            ("kill → takeover (client poll, 10 ms)", "kill_takeover_s"),
            ("kill → takeover (server: new lease − TTL)", "kill_takeover_server_s"),
            ("lease remaining at the kill", "lease_remaining_at_kill_s"),
            ("lease expiry → takeover (recovery scan)", "takeover_after_lease_expiry_s"),
            ("kill → terminal", "kill_terminal_s"),
            ("takeover → terminal (answer streamed again)", "takeover_terminal_s"),
            ("replacement worker boot (not in the above)", "replacement_boot_s"),
        )]
        out.append("")
        out.append(table([f"resume after SIGKILL (n={resume['n']}, {resume['words']} words × 5 ms)", "n", "p50 s",
                          "p99 s", "min s", "max s"], rows))
        b = resume["bound"]
        out.append(f"bound: kill→takeover ∈ ({b['kill_takeover_lower_s']:g}, {b['kill_takeover_upper_s']:g}] s "
                   f"(TTL {b['lease_ttl_s']:g} s, renewal every {b['renewal_period_s']:g} s, recovery every "
                   f"{b['recovery_interval_s']:g} s); lost runs: {resume['lost_runs']}; failures: {resume['failures']}")
        verdicts["resume_within_bound"] = {"target": f"max kill→takeover ≤ {b['kill_takeover_upper_s']:g} s (+0.25 s)",
                                           "value": pct["kill_takeover_s"]["max"], "pass": b["within_bound"]}
        verdicts["resume_no_lost_run"] = {"target": "0 lost runs, 0 failed trials",
                                          "value": resume["lost_runs"] + resume["failures"],
                                          "pass": resume["lost_runs"] == 0 and resume["failures"] == 0}
    tput = results.get("throughput")
    if tput:
        rows = []
        for phase in tput["phases"]:
            cores = phase["cpu"]["cores"]
            rows.append([
                str(phase["workers"]), str(phase["runs"]), f"{phase['runs_per_s_server']:.1f}",
                f"{phase['runs_per_s_client']:.1f}", pair(phase["run_duration_ms"]),
                fmt(phase["cpu_ms_per_run"].get("workers")),
                fmt(sum(v for k, v in phase["cpu_ms_per_run"].items() if k not in ("bench client", "embedded serve"))),
                " / ".join(str(v) for v in sorted(phase["runs_per_worker"].values(), reverse=True)),
                *(f"{cores.get(k):.2f}" if cores.get(k) is not None else "-" for k in
                  ("workers", "web a", "web b", "postgresql", "redis", "bench client")),
                f"{phase['cpu'].get('others_cores', 0):.2f}" + (" *" if phase.get("noisy") else ""),
                f"{phase['cpu'].get('machine_busy_cores', 0):.2f}",
            ])
        out.append("")
        out.append(table(["workers", "runs", "runs/s (server)", "runs/s (client)", "run start→end p50/p99 ms",
                          "worker CPU ms/run", "deployment CPU ms/run", "runs per worker", "CPU workers", "web A", "web B", "postgres", "redis", "client",
                          "others", "machine busy"], rows))
        probe_rows = [
            [str(phase["workers"]), pid, f"{w['db_thread_busy']:.0%}", str(w["db_calls"]), fmt(w["db_call_mean_ms"]),
             str(w["health_checks"]), fmt(w["health_check_mean_ms"]), f"{w['main_thread_cpu_cores']:.2f}",
             f"{w['process_cpu_cores']:.2f}", fmt(w["loop_lag_max_ms"]), str(w["max_executors"])]
            for phase in tput["phases"] for pid, w in phase.get("probe", {}).items()
        ]
        if probe_rows:
            out.append("")
            out.append(table(["workers", "worker pid", "DB thread busy", "DB calls", "mean DB call ms",
                              "health checks (SELECT 1)", "mean check ms", "main thread CPU", "process CPU",
                              "max loop lag ms", "max executors"], probe_rows))
            for phase in tput["phases"]:
                top = list(phase.get("probe_db_by_function_per_run", {}).items())[:6]
                if top:
                    out.append(f"  DB thread per run, {phase['workers']} worker(s): " + ", ".join(
                        f"{name} {v['calls']:g}× {v['busy_ms']:.0f} ms" for name, v in top))
        medians = tput["by_workers"]
        out.append(f"median runs/s (server clocks) over {tput['rounds']} round(s): 1 worker "
                   f"{medians['1']['median_runs_per_s_server']:.2f}, 2 workers {medians['2']['median_runs_per_s_server']:.2f}")
        out.append(f"throughput ratio 2 workers / 1 worker: {tput['ratio_2_over_1_server']:.2f} (server clocks), "
                   f"{tput['ratio_2_over_1_client']:.2f} (client); CPU in cores of the {os.cpu_count()} the machine has")
        if any(p.get("noisy") for p in tput["phases"]):
            quiet = tput.get("ratio_2_over_1_server_quiet_phases")
            out.append(f"* other processes used > {NOISY_OTHERS_CORES:g} cores during this phase (a shared machine); "
                       "ratio over the other phases only: " + (f"{quiet:.2f}" if quiet else "- (no quiet pair)"))
    out.append("")
    out.append("settings: " + ", ".join(f"{k}={v}" for k, v in settings_used.items()))
    out.append("")
    for name, verdict in verdicts.items():
        mark = "PASS" if verdict["pass"] else "MISS"
        out.append(f"{mark}  {name} = {verdict['value']} (target {verdict['target'] if isinstance(verdict['target'], str) else '≤ ' + format(verdict['target'], 'g')})")
    if stop:
        for variant, res in stop.items():
            for detail in res["failure_details"][:5]:
                out.append(f"  failure in stop/{variant}: {detail}")
    return "\n".join(out), verdicts


# --- main ----------------------------------------------------------------------------------------------


def code_version() -> dict:
    """The commit measured, and whether the code the servers import differs from it (spawned processes load
    the working tree: a change during the run would be measured by the processes started after it)."""
    changed = git("status", "--porcelain", "--", "harness", "orchestrator", "templates", "manage.py") or ""
    return {"commit": git("rev-parse", "--short", "HEAD") or "", "uncommitted_server_changes": changed.splitlines()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 10 stop trials, 1 warm-up, 3 kills, 40 runs, 1 throughput round")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated subset of " + ", ".join(SCENARIOS))
    parser.add_argument("--stop-trials", type=int, default=100, help="trials per stop variant (default 100)")
    parser.add_argument("--stop-warmup", type=int, default=3, help="discarded warm-up trials per variant (default 3)")
    parser.add_argument("--no-embedded", action="store_true", help="skip the manage.py serve (SQLite) baseline")
    parser.add_argument("--kill-trials", type=int, default=20, help="SIGKILL trials (default 20)")
    parser.add_argument("--resume-words", type=int, default=1000,
                        help="words of the killed run's answer, 5 ms each (default 1000)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the random kill delays (default 1)")
    parser.add_argument("--runs", type=int, default=200, help="runs per throughput phase (default 200)")
    parser.add_argument("--throughput-rounds", type=int, default=2,
                        help="pairs of 1-worker/2-worker phases, alternating order (default 2: 1,2,2,1)")
    parser.add_argument("--client-threads", type=int, default=8, help="threads starting runs (default 8)")
    parser.add_argument("--lease-ttl", type=float, default=8.0, help="HARNESS_LEASE_TTL_SECONDS (default 8)")
    parser.add_argument("--recovery-interval", type=float, default=1.0,
                        help="HARNESS_RECOVERY_INTERVAL_SECONDS (default 1)")
    parser.add_argument("--stop-poll", type=float, default=0.5, help="HARNESS_STOP_POLL_SECONDS (default 0.5)")
    parser.add_argument("--probe", action="store_true",
                        help="diagnosis: run instrumented workers (bench/scaleout_probe.py) and split each stop into "
                             "wake-up delivery and cancellation; not for the headline numbers")
    parser.add_argument("--log-level", default=None, help="HARNESS_LOG_LEVEL for every server process")
    parser.add_argument("--keep-logs", type=Path, default=None, help="copy every process's output to this directory")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"result file (default {DEFAULT_JSON})")
    parser.add_argument("--strict", action="store_true", help="exit with status 1 when a target is missed")
    args = parser.parse_args(argv)
    if args.quick:  # smaller defaults; a value given explicitly wins
        for name, value in (("stop_trials", 10), ("stop_warmup", 1), ("kill_trials", 3), ("runs", 40),
                            ("throughput_rounds", 1)):
            if getattr(args, name) == parser.get_default(name):
                setattr(args, name, value)
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")

    settings_used = {
        "HARNESS_LEASE_TTL_SECONDS": args.lease_ttl,
        "HARNESS_RECOVERY_INTERVAL_SECONDS": args.recovery_interval,
        "HARNESS_STOP_POLL_SECONDS": args.stop_poll,
        "web processes": 2, "workers": 2,
        "workers_instrumented": args.probe,
    }
    results: dict = {}
    began = datetime.datetime.now(datetime.timezone.utc)
    load_before = os.getloadavg()
    if load_before[0] > 0.5:
        print(f"warning: load average {load_before[0]:.2f} before the run: other processes share the CPUs and "
              "will show up in the numbers (see 'others' in the CPU columns)", flush=True)
    version_before = code_version()
    tmpdir = Path(tempfile.mkdtemp(prefix="harness-scaleout-"))
    (tmpdir / "logs").mkdir()
    postgres = redis = cluster = db = embedded = None
    clients: dict[str, KeepAliveClient] = {}
    stop_cpu = None
    try:
        postgres = PostgresServer().start()
        redis = RedisServer().start()
        env = {k: v for k, v in os.environ.items() if not k.startswith("HARNESS_")}
        env.update(
            DJANGO_SETTINGS_MODULE="harness.settings",
            DATABASE_URL=postgres.url,
            REDIS_URL=redis.url,
            HARNESS_VAR_DIR=str(tmpdir / "var"),
            HARNESS_WORKSPACE_ROOT=str(tmpdir / "workspaces"),
            STATIC_ROOT=str(tmpdir / "static"),
            HARNESS_LEASE_TTL_SECONDS=str(args.lease_ttl),
            **UNLIMITED_RUNS,
            HARNESS_RECOVERY_INTERVAL_SECONDS=str(args.recovery_interval),
            HARNESS_STOP_POLL_SECONDS=str(args.stop_poll),
            PYTHONPATH=str(ROOT),
            PYTHONUNBUFFERED="1",
        )
        if args.log_level:
            env["HARNESS_LOG_LEVEL"] = args.log_level
        manage(env, "migrate", "--noinput", "-v", "0")
        token = manage(env, "create_api_token", "bench").strip()
        cluster = Cluster(env=env, database_url=postgres.url, redis=redis, token=token, log_dir=tmpdir / "logs",
                          worker_timeout=60)
        if args.probe:
            cluster.worker_command = [sys.executable, str(ROOT / "bench" / "scaleout_probe.py")]
        cluster.start_web("a")
        cluster.start_web("b")
        cluster.start_worker()
        cluster.start_worker()
        db = Db(postgres.url)
        ports = {name: port for name, (port, _) in cluster.web.items()}
        tokens = {name: token for name in ports}
        for name, port in ports.items():
            clients[name] = KeepAliveClient("127.0.0.1", port, token)
        server_versions = {"postgresql": db.one("SHOW server_version")[0],
                           "redis": subprocess.run([shutil.which("redis-server"), "--version"], capture_output=True,
                                                   text=True).stdout.strip()}
        print(f"deployment up: PostgreSQL :{postgres.port}, Redis :{redis.port}, web A :{ports['a']}, "
              f"web B :{ports['b']}, workers {[p.pid for p in cluster.workers]}", flush=True)

        def meter_groups() -> dict[str, list[int]]:
            groups = {"web a": [cluster.web["a"][1].pid], "web b": [cluster.web["b"][1].pid],
                      "redis": [redis.process.pid]}
            if embedded is not None:
                groups["embedded serve"] = [embedded.pid]
            return groups

        postmaster = postgres.pid

        if "stop" in scenarios:
            variants = ["cross", "same"]
            if not args.no_embedded:
                embedded, etoken = start_embedded(tmpdir)
                port = ports["embedded"] = embedded.port
                tokens["embedded"] = etoken
                clients["embedded"] = KeepAliveClient("127.0.0.1", port, etoken)
                variants.append("embedded")
                print(f"embedded baseline up: manage.py serve :{port} (SQLite)", flush=True)
            print(f"stop: {args.stop_trials} trials × {variants} (+{args.stop_warmup} warm-up each)", flush=True)
            meter = CpuMeter({**meter_groups(), "workers": [p.pid for p in cluster.workers]}, postmaster)
            before = meter.sample()
            # Diagnosis only: after run.finished, watch the socket 1.5 s longer (work left behind by a stop
            # would still publish deltas until its next checkpoint finds the lease gone).
            bench = StopBench(clients, ports, tokens, db, linger_s=1.5 if args.probe else 0.0)
            results["stop"] = run_stop_scenario(bench, variants, args.stop_trials, args.stop_warmup)
            stop_cpu = CpuMeter.usage(before, meter.sample())
            if args.probe:
                results["stop_probe"] = attach_probe(results["stop"], read_probe_events(tmpdir / "logs"))
            print(f"  CPU during the stop trials: {cpu_line(stop_cpu)}", flush=True)
            if embedded is not None:
                clients.pop("embedded").close()
                embedded.stop()
                embedded = None

        if "resume" in scenarios:
            print(f"resume: {args.kill_trials} SIGKILLs (lease TTL {args.lease_ttl:g} s, recovery every "
                  f"{args.recovery_interval:g} s)", flush=True)
            results["resume"] = run_resume_scenario(cluster, clients, db, args.kill_trials, words=args.resume_words,
                                                    ttl=args.lease_ttl, interval=args.recovery_interval,
                                                    poll=args.stop_poll, seed=args.seed)

        if "throughput" in scenarios:
            print(f"throughput: {args.runs} runs per phase, {args.throughput_rounds} round(s) of 1 vs 2 workers",
                  flush=True)
            results["throughput"] = run_throughput_scenario(cluster, clients, db, meter_groups, postmaster,
                                                            runs=args.runs, rounds=args.throughput_rounds,
                                                            threads=args.client_threads)
            if args.probe:
                time.sleep(1.5)  # let each worker log one more monitor line after the last phase
                attach_throughput_probe(results["throughput"], tmpdir / "logs")
    finally:
        for client in clients.values():
            client.close()
        if db is not None:
            db.close()
        if embedded is not None:
            embedded.stop()
        if cluster is not None:
            cluster.stop_all()
        if redis is not None:
            redis.stop()
        if postgres is not None:
            postgres.stop()
        if args.keep_logs:
            shutil.copytree(tmpdir / "logs", args.keep_logs, dirs_exist_ok=True)
        shutil.rmtree(tmpdir, ignore_errors=True)

    ended = datetime.datetime.now(datetime.timezone.utc)
    version_after = code_version()
    text, verdicts = report(results, settings_used)
    print()
    print(text)
    if stop_cpu:
        print(f"\nCPU during the stop trials (cores): {cpu_line(stop_cpu)}")
    all_pass = all(v["pass"] for v in verdicts.values())
    print()
    print(f"code: {version_before['commit']}" + (" + uncommitted server changes" if
                                                 version_before["uncommitted_server_changes"] else ""))
    if version_after != version_before:
        print(f"warning: the code changed during the run ({version_before['commit']} → {version_after['commit']}); "
              "processes started after the change ran the new code")

    output = {
        "benchmark": "scaleout",
        "date": began.isoformat(timespec="seconds"),
        "finished": ended.isoformat(timespec="seconds"),
        "machine": machine_info(python_implementation=platform.python_implementation()),
        "code": {"before": version_before, "after": version_after},
        "servers": server_versions,
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "settings": settings_used,
        "config": {
            "scenarios": scenarios, "stop_trials": args.stop_trials, "stop_warmup": args.stop_warmup,
            "stop_script": STREAM_SCRIPT, "kill_trials": args.kill_trials, "resume_words": args.resume_words,
            "seed": args.seed, "late_ack_ms": LATE_ACK_MS, "terminal_deadline_s": TERMINAL_DEADLINE_S,
            "throughput_runs": args.runs, "throughput_rounds": args.throughput_rounds,
            "client_threads": args.client_threads, "throughput_script": SHORT_SCRIPT,
            "deployment": "PostgreSQL + Redis (throwaway), 2 × `python -m daphne harness.asgi_server:application`, "
                          "2 × `manage.py runworker orchestrator`, all on 127.0.0.1",
            "embedded": None if args.no_embedded else "manage.py serve (SQLite, in-memory channel layer)",
        },
        "percentile_method": PERCENTILE_METHOD,
        "targets": {**verdicts, "all_pass": all_pass},
        "cpu_during_stop_trials": stop_cpu,
        "results": results,
    }
    return finish(args.json, output, text, all_pass=all_pass, strict=args.strict)


if __name__ == "__main__":
    sys.exit(main())
