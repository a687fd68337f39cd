"""Process-wide tuning happens in the entry points that serve, never on import (each check runs a fresh
interpreter, so what it reads is what the import did)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
READ_STATE = "import gc, json, sys; print(json.dumps([sys.getswitchinterval(), gc.get_freeze_count()]))"


def interpreter_state_after(statement: str) -> tuple[float, int]:
    code = f"import os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'harness.settings'); {statement}; {READ_STATE}"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          check=True)
    interval, frozen = json.loads(done.stdout.strip().splitlines()[-1])
    return interval, frozen


def test_importing_the_asgi_application_changes_nothing_process_wide():
    assert interpreter_state_after("import harness.asgi") == (0.005, 0)


def test_the_daphne_entry_point_tunes_the_process():
    interval, frozen = interpreter_state_after("import harness.asgi_server")
    assert interval == 0.001 and frozen > 10_000  # the start-up heap, frozen out of the collector


def test_configure_server_process():
    interval, frozen = interpreter_state_after(
        "from harness.process import configure_server_process; configure_server_process()")
    assert interval == 0.001 and frozen > 0
