"""Settings from the environment, and the embedded SQLite configured for concurrent runs."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection

from pathlib import Path

from harness.settings import BASE_DIR, database_from_url


def test_sqlite_urls_relative_and_absolute():
    assert database_from_url("sqlite:///var/x.sqlite3")["NAME"] == str(BASE_DIR / "var/x.sqlite3")
    absolute = database_from_url("sqlite:////tmp/h.sqlite3")
    assert absolute["NAME"] == "/tmp/h.sqlite3"
    assert absolute["OPTIONS"]["transaction_mode"] == "IMMEDIATE"


def test_postgres_url():
    db = database_from_url("postgres://u%40x:p%2Fw@db.example:5433/harness?sslmode=require")
    assert (db["ENGINE"], db["NAME"], db["USER"], db["PASSWORD"], db["HOST"], db["PORT"]) == (
        "django.db.backends.postgresql", "harness", "u@x", "p/w", "db.example", "5433")
    assert db["OPTIONS"] == {"sslmode": "require"}


def test_unknown_scheme_is_a_clear_error():
    with pytest.raises(ImproperlyConfigured, match="mysql"):
        database_from_url("mysql://x/y")


@pytest.mark.django_db
def test_the_database_is_configured_for_concurrent_runs():
    if connection.vendor == "sqlite":
        # The embedded default: readers beside the writer (WAL), writers queue instead of failing.
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA journal_mode")
            assert cursor.fetchone()[0] == "wal"
            cursor.execute("PRAGMA busy_timeout")
            assert cursor.fetchone()[0] >= 5000
        assert connection.settings_dict["OPTIONS"]["transaction_mode"] == "IMMEDIATE"
    else:
        # Scale-out: PostgreSQL, with persistent connections health-checked before reuse (tests close them).
        assert connection.vendor == "postgresql"
        assert connection.settings_dict["CONN_HEALTH_CHECKS"]
        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version_num")
            assert int(cursor.fetchone()[0]) >= 150000


def test_settings_load_on_a_read_only_filesystem(tmp_path):
    """Settings create no directories: a process whose var directory cannot be created still starts."""
    import subprocess
    import sys

    read_only = "/proc/harness-var"  # cannot be created, even by root
    env = {"PATH": "/usr/bin:/bin", "HARNESS_VAR_DIR": read_only, "DJANGO_SETTINGS_MODULE": "harness.settings"}
    done = subprocess.run([sys.executable, "-c", "import django; django.setup(); print('ok')"], cwd=BASE_DIR,
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "ok", done.stderr
    assert not Path(read_only).exists()
