"""`manage.py check --deploy` is clean with the production settings of docs/deploy.md."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

from devtools.servers import sandbox_reachable_dir

ROOT = Path(__file__).resolve().parents[2]


def check_deploy(**env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, **env}
    environment.pop("DJANGO_SETTINGS_MODULE", None)
    return subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], cwd=ROOT,
                          env=environment, capture_output=True, text=True, timeout=120)


def test_production_settings_pass_the_deploy_checks(tmp_path):
    production = {
        "SECRET_KEY": secrets.token_urlsafe(50), "ALLOWED_HOSTS": "harness.example.com", "HARNESS_HTTPS": "true",
        "HARNESS_STATIC_FROM_FINDERS": "false", "DATABASE_URL": f"sqlite:///{tmp_path / 'x.sqlite3'}",
        # Where the sandbox's user can reach it, as a deployment's workspace root must be (docs/deploy.md).
        "HARNESS_WORKSPACE_ROOT": str(sandbox_reachable_dir("harness-deploy-ws-")),
    }
    result = check_deploy(**production)
    assert result.returncode == 0, result.stderr
    # The development defaults are what the checks exist to catch: they must fail.
    development = check_deploy(DATABASE_URL=f"sqlite:///{tmp_path / 'y.sqlite3'}")
    assert development.returncode != 0
    assert "SECRET_KEY" in development.stderr and "SECURE_HSTS_SECONDS" in development.stderr
