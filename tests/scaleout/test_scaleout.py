"""Scale-out behaviour across real processes: stops cross web processes, workers die, wake-ups are lost,
Redis restarts — and no run is lost, no non-idempotent tool runs twice, every run ends."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from devtools.api import SessionSocket
from tests.tools import SIDE_EFFECTS

LONG_STREAM = 'script:{"turns": [{"words": 5000, "delay_ms": 5}]}'
pytestmark = pytest.mark.timeout(600)


def script(*turns: dict) -> str:
    return "script:" + json.dumps({"turns": list(turns)})


class Watcher(SessionSocket):
    """A JSON WebSocket API client watching one session through one web process."""

    def __init__(self, cluster, web: str, session_id: str) -> None:
        super().__init__(cluster.ws_url(web, session_id), cluster.token)
        assert self.snapshot["type"] == "session.snapshot"


def is_type(kind: str):
    return lambda frame: frame["type"] == kind


def test_a_run_started_on_one_web_process_is_stopped_from_the_other(cluster):
    session_id = cluster.new_session("a")
    on_a, on_b = Watcher(cluster, "a", session_id), Watcher(cluster, "b", session_id)
    try:
        run_id = cluster.run_start("a", session_id, LONG_STREAM)
        on_b.until(is_type("message.delta"))  # B's client sees A's run streaming
        status, stop = cluster.call("b", "POST", f"/api/sessions/{session_id}/stop", {"run_id": run_id})
        assert status == 200 and (stop["accepted"], stop["reason"]) == (True, None)
        run = cluster.wait_terminal(run_id, timeout=10)  # its natural end is ~25 s away
        assert run["state"] == "stopped" and run["stop"]["latency_ms"] is not None
        for watcher in (on_a, on_b):
            finished = watcher.until(is_type("run.finished"), timeout=10)[-1]
            assert (finished["run_id"], finished["outcome"]) == (run_id, "stopped")
    finally:
        on_a.close()
        on_b.close()


def side_effect_count(cluster, session_id: str) -> int:
    log = Path(cluster.env["HARNESS_WORKSPACE_ROOT"]) / session_id / SIDE_EFFECTS
    return len(log.read_text().splitlines()) if log.exists() else 0


def test_workers_killed_mid_stream_and_mid_tool_lose_no_run_and_rerun_no_tool(cluster):
    """20 times: SIGKILL the workers executing a streaming run and a run inside a non-idempotent tool."""
    outcomes = []
    for attempt in range(20):
        tool_session, stream_session = cluster.new_session(), cluster.new_session()
        tool_run = cluster.run_start("a", tool_session, script(
            {"calls": [{"name": "side_effect", "arguments": {"label": f"t{attempt}", "seconds": 30}}]},
            {"text": "after the crash"},
        ))
        stream_run = cluster.run_start("b", stream_session, script({"words": 600, "delay_ms": 5}))
        cluster.wait_run(tool_run, lambda r: r["function_calls"] and r["function_calls"][0]["status"] == "running",
                         what="the tool to run")
        cluster.wait_run(stream_run, lambda r: r["state"] == "assistant_streaming", what="streaming")
        victims = {cluster.executor_pid(tool_run), cluster.executor_pid(stream_run)} - {None}
        assert victims, "no worker holds the runs' leases"
        for pid in victims:
            cluster.kill_worker(pid)
        for _ in victims:
            cluster.start_worker()  # keep two workers for the next round
        tool, stream = cluster.wait_terminal(tool_run, timeout=30), cluster.wait_terminal(stream_run, timeout=30)
        outcomes.append((tool["outcome"], stream["outcome"]))
        assert tool["function_calls"][0]["status"] == "interrupted"
        assert side_effect_count(cluster, tool_session) == 1  # ran once, never again
        _, snapshot = cluster.call("a", "GET", f"/api/sessions/{stream_session}")
        answers = [m for m in snapshot["messages"] if m["role"] == "assistant"]
        assert answers[-1]["status"] == "complete" and len(answers[-1]["text"].split()) == 600
    assert outcomes == [("completed", "completed")] * 20  # 0 lost runs, every run terminal


def test_a_stop_whose_wake_up_is_lost_lands_through_the_database(cluster):
    cluster.start_web("lossy", module="tests.scaleout.daphne_without_wakeups")
    session_id = cluster.new_session()
    run_id = cluster.run_start("a", session_id, script({"calls": [{"name": "sleep", "arguments": {"seconds": 30}}]}))
    cluster.wait_run(run_id, lambda r: r["function_calls"] and r["function_calls"][0]["status"] == "running",
                     what="the sleep to start")
    status, stop = cluster.call("lossy", "POST", f"/api/sessions/{session_id}/stop", {})
    assert status == 200 and stop["accepted"] is True
    run = cluster.wait_terminal(run_id, timeout=5)  # the sleep had 30 s to go: only the DB flag can end it
    assert run["outcome"] == "stopped" and run["function_calls"][0]["status"] == "cancelled"
    # Through the lossy process a new run's start wake-up is lost too; recovery still drives it.
    second = cluster.run_start("lossy", session_id, "what is 6 * 7?")
    assert cluster.wait_terminal(second, timeout=10)["outcome"] == "completed"


def test_runs_finish_and_clients_resync_when_redis_restarts(cluster):
    session_id = cluster.new_session()
    watcher = Watcher(cluster, "a", session_id)
    run_id = cluster.run_start("a", session_id, script({"words": 1500, "delay_ms": 5}))
    watcher.until(is_type("message.delta"))
    cluster.redis.restart()
    run = cluster.wait_terminal(run_id, timeout=30)
    assert run["outcome"] == "completed"
    watcher.close()
    # A client that lost events reconnects and its snapshot is the truth.
    again = Watcher(cluster, "b", session_id)
    try:
        answer = [m for m in again.snapshot["messages"] if m["role"] == "assistant"][-1]
        assert answer["status"] == "complete" and len(answer["text"].split()) == 1500
        assert again.snapshot["active_run"] is None
        # And the whole path works again: start through A, stop through B, events on B's socket.
        second = cluster.run_start("a", session_id, LONG_STREAM)
        again.until(is_type("message.delta"))
        assert cluster.call("b", "POST", f"/api/sessions/{session_id}/stop", {})[1]["accepted"] is True
        assert again.until(is_type("run.finished"), timeout=10)[-1]["outcome"] == "stopped"
        assert cluster.run(second)["state"] == "stopped"
    finally:
        again.close()


def closed_with(watcher: Watcher, *, timeout: float) -> int:
    """Read until the server closes the socket; its close code (TimeoutError if it stays open)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            watcher.socket.recv(timeout=max(0.01, deadline - time.monotonic()))
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None


def test_sockets_that_lost_their_events_to_a_redis_restart_are_closed_to_resync(cluster):
    """After Redis restarts, sockets opened before it have lost their group memberships (they would stay open
    and deaf, still answering pings): every web process closes them with 4503 within seconds of Redis being
    back, so their clients reconnect and take a fresh snapshot."""
    session_id = cluster.new_session()
    before = [Watcher(cluster, web, session_id) for web in ("a", "b")]
    try:
        cluster.redis.restart()
        for watcher in before:
            assert closed_with(watcher, timeout=5) == 4503
        after = Watcher(cluster, "b", session_id)  # a reconnecting client gets events again
        try:
            run_id = cluster.run_start("a", session_id, script({"text": "after the restart"}))
            assert after.until(is_type("run.finished"), timeout=15)[-1]["run_id"] == run_id
        finally:
            after.close()
    finally:
        for watcher in before:
            with contextlib.suppress(Exception):
                watcher.close()


def test_a_postgresql_restart_mid_run_is_answered_503_and_the_run_survives(cluster, backing_services):
    """PostgreSQL restarts (every connection cut) while a run streams and comes back a few seconds later:
    meanwhile both web processes answer 200 or 503 `store_unavailable` (JSON), never a 500; afterwards the
    run ends complete, its whole answer saved."""
    postgres = backing_services[0]
    session_id = cluster.new_session()
    watcher = Watcher(cluster, "a", session_id)
    try:
        run_id = cluster.run_start("a", session_id, script({"words": 1500, "delay_ms": 5}))
        watcher.until(is_type("message.delta"))
        postgres.shut_down()
        answers = []
        try:
            for _ in range(4):
                for web in ("a", "b"):
                    answers.append(cluster.call(web, "GET", f"/api/sessions/{session_id}"))
                    answers.append(cluster.call(web, "POST", "/api/sessions", {"title": "during the outage"}))
        finally:
            postgres.start_again()
        assert {status for status, _ in answers} <= {200, 201, 503}
        assert any(status == 503 for status, _ in answers)  # the outage was seen …
        assert all(body["error"] == "store_unavailable" for status, body in answers if status == 503)  # … as JSON
        run = cluster.wait_terminal(run_id, timeout=60)
        assert run["outcome"] == "completed"
        answer = [m for m in cluster.call("a", "GET", f"/api/sessions/{session_id}")[1]["messages"]
                  if m["role"] == "assistant"][-1]
        assert answer["status"] == "complete" and len(answer["text"].split()) == 1500
    finally:
        watcher.close()


def test_every_database_connection_killed_mid_stream_and_mid_tool_is_survived(cluster, backing_services):
    """`pg_terminate_backend` on every connection of every process while one run streams and another is inside
    a non-idempotent tool: no 5xx meanwhile, both runs end complete, the tool ran once, no text lost."""
    postgres = backing_services[0]
    tool_session, stream_session = cluster.new_session(), cluster.new_session()
    tool_run = cluster.run_start("a", tool_session, script(
        {"calls": [{"name": "side_effect", "arguments": {"label": "once", "seconds": 2}}]}, {"text": "after it"},
    ))
    stream_run = cluster.run_start("b", stream_session, script({"words": 1500, "delay_ms": 5}))
    cluster.wait_run(tool_run, lambda r: r["function_calls"] and r["function_calls"][0]["status"] == "running",
                     what="the tool to run")
    cluster.wait_run(stream_run, lambda r: r["state"] == "assistant_streaming", what="streaming")
    assert postgres.terminate_backends() >= 2  # the web processes' and the workers' connections, mid-flight
    answers = [cluster.call(web, "GET", f"/api/sessions/{sid}")
               for web in ("a", "b") for sid in (tool_session, stream_session)]
    assert {status for status, _ in answers} <= {200, 503}
    assert all(body["error"] == "store_unavailable" for status, body in answers if status == 503)
    tool, stream = cluster.wait_terminal(tool_run, timeout=60), cluster.wait_terminal(stream_run, timeout=60)
    assert (tool["outcome"], stream["outcome"]) == ("completed", "completed")
    assert tool["function_calls"][0]["status"] == "succeeded"
    assert side_effect_count(cluster, tool_session) == 1
    _, snapshot = cluster.call("a", "GET", f"/api/sessions/{stream_session}")
    answer = [m for m in snapshot["messages"] if m["role"] == "assistant"][-1]
    assert answer["status"] == "complete" and len(answer["text"].split()) == 1500
