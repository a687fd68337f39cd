"""`/metrics` (harness/metrics_view.py): Prometheus text for loopback scrapers, or for the token's holder when
HARNESS_METRICS_TOKEN is set; the API's JSON error for anyone else. Workers serve theirs on a port."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from django.test import Client

from devtools.servers import free_port
from devtools.waiting import wait_for
from tests.factories import make_run
from orchestrator.models import RunState

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
NAMES = ("harness_stop_latency_seconds", "harness_stop_ack_seconds", "harness_first_token_seconds",
         "harness_runs_finished_total", "harness_runs_live", "harness_tool_calls_total",
         "harness_tool_duration_seconds", "harness_model_errors_total", "harness_lease_takeovers_total",
         "harness_ws_connections")


def test_loopback_scrapers_get_every_metric_and_live_runs_by_state(session):
    make_run(session, RunState.AWAITING_APPROVAL)
    response = Client().get("/metrics")  # the test client is 127.0.0.1
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    assert all(f"# HELP {name} " in text for name in NAMES)
    assert 'harness_runs_live{state="awaiting_approval"} 1.0' in text
    assert 'harness_runs_live{state="assistant_streaming"} 0.0' in text


def test_others_need_the_token(settings):
    far = {"REMOTE_ADDR": "10.1.2.3"}
    refused = Client().get("/metrics", **far)
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
    settings.HARNESS_METRICS_TOKEN = "scrape-secret-1"
    assert Client().get("/metrics").status_code == 401  # with a token set, loopback needs it too
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong", **far).status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret-1", **far).status_code == 200


def test_a_worker_serves_its_metrics_on_its_port(tmp_path):
    port = free_port()
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'worker.sqlite3'}",
           "HARNESS_METRICS_PORT": str(port), "DJANGO_SETTINGS_MODULE": "harness.settings"}
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True,
                   timeout=120)
    worker = subprocess.Popen([sys.executable, "manage.py", "runworker", "orchestrator"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def scraped() -> str | None:
            assert worker.poll() is None, "the worker exited"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
                    return response.read().decode()
            except OSError:
                return None

        text = wait_for(scraped, 30, what="the worker's metrics")
        assert "# HELP harness_runs_finished_total " in text and "# HELP harness_lease_takeovers_total " in text
    finally:
        worker.terminate()
        worker.wait(timeout=10)
