"""Prometheus metrics (prometheus-client), one place for their names and for what records them.

Each process counts what it does itself (a worker its runs, tools and model errors; a web process its
sockets) and serves its own numbers: web processes at `/metrics`, workers on `HARNESS_METRICS_PORT`
(docs/operations.md). Recording happens after the transaction it describes has committed. The names are a
contract: dashboards and alerts are written against them.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# Stops land in milliseconds; a first token can take seconds (a slow model).
_FAST = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_SLOW = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

STOP_LATENCY = Histogram(
    "harness_stop_latency_seconds", "A stop: requested → the run terminal.", ["prior_state"], buckets=_FAST)
STOP_ACK = Histogram(
    "harness_stop_ack_seconds", "A stop: requested → acknowledged (the executor's first step after it).",
    buckets=_FAST)
FIRST_TOKEN = Histogram(
    "harness_first_token_seconds", "A run's start → its first streamed text.", buckets=_SLOW)
RUNS_FINISHED = Counter("harness_runs_finished_total", "Runs that ended, by outcome.", ["outcome"])
RUNS_LIVE = Gauge("harness_runs_live", "Runs not yet ended, by state (read from the database).", ["state"])
TOOL_CALLS = Counter("harness_tool_calls_total", "Tool calls that ended, by tool and status.", ["tool", "status"])
TOOL_DURATION = Histogram(
    "harness_tool_duration_seconds", "How long a tool call ran.", ["tool"], buckets=_SLOW)
MODEL_ERRORS = Counter("harness_model_errors_total", "Model calls that failed, by kind.", ["kind"])
LEASE_TAKEOVERS = Counter(
    "harness_lease_takeovers_total", "Runs taken over from an executor whose lease lapsed.")
WS_CONNECTIONS = Gauge("harness_ws_connections", "Open WebSocket connections, by kind.", ["kind"])


def record_transition(run, emitted: list[dict], *, acknowledged_stop: bool) -> None:
    """After a run's transition committed: its end, and the timings of a stop."""
    if acknowledged_stop and run.stop_requested_at and run.stop_acknowledged_at:
        STOP_ACK.observe((run.stop_acknowledged_at - run.stop_requested_at).total_seconds())
    if not any(event["type"] == "run.finished" for event in emitted):
        return
    RUNS_FINISHED.labels(outcome=run.outcome).inc()
    if run.stop_requested_at and run.finished_at:
        STOP_LATENCY.labels(prior_state=run.stop_prior_state or "unknown").observe(
            (run.finished_at - run.stop_requested_at).total_seconds())
