"""Process-wide tuning happens in the entry points that serve, never on import (each check runs a fresh
interpreter, so what it reads is what the import did)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
gc_thresholds: dict[str, tuple[int, int, int]] = {}
READ_STATE = ("import gc, json, sys; "
              "print(json.dumps([sys.getswitchinterval(), gc.get_freeze_count(), gc.get_threshold()]))")


def interpreter_state_after(statement: str, **env: str) -> tuple[float, int]:
    """The switch interval and the number of frozen objects after `statement` (`gc_thresholds`: the collector's)."""
    code = f"import os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'harness.settings'); {statement}; {READ_STATE}"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          check=True, env={**os.environ, **env})
    interval, frozen, thresholds = json.loads(done.stdout.strip().splitlines()[-1])
    gc_thresholds[statement] = tuple(thresholds)
    return interval, frozen


def test_importing_the_asgi_application_changes_nothing_process_wide():
    assert interpreter_state_after("import harness.asgi") == (0.005, 0)
    assert gc_thresholds["import harness.asgi"] == (700, 10, 10)


def test_the_daphne_entry_point_tunes_the_process():
    interval, frozen = interpreter_state_after("import harness.asgi_server")
    assert interval == 0.001 and frozen > 10_000  # the start-up heap, frozen out of the collector
    assert gc_thresholds["import harness.asgi_server"] == (700, 10, 10)  # CPython's: see docs/performance.md


def test_configure_server_process():
    interval, frozen = interpreter_state_after(
        "from harness.process import configure_server_process; configure_server_process()")
    assert interval == 0.001 and frozen > 0


def test_a_process_that_drives_runs_freezes_its_models_sdk_too():
    """The SDK of a configured model loads before the freeze, not at the first model call (where its ~50k
    objects would stay in the collector's oldest generation, rescanned by every full collection)."""
    openai_model = {"HARNESS_MODEL": "openai:gpt-4.1-mini", "OPENAI_API_KEY": "test-key"}
    configure = ("import django, sys; django.setup(); from harness.process import configure_server_process; "
                 "configure_server_process({}); assert ('openai' in sys.modules) is {}")
    _, web_only = interpreter_state_after(configure.format("", False), **openai_model)
    _, driving = interpreter_state_after(configure.format("drives_runs=True", True), **openai_model)
    assert driving > web_only + 10_000
