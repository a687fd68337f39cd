"""Run pytest against a throwaway PostgreSQL 15 cluster: `python -m tests.with_postgres [pytest args]`.

`make test` runs the engine and web suites a second time this way, so SQLite (the embedded default) and
PostgreSQL (scale-out) cannot drift apart.
"""

from __future__ import annotations

import os
import subprocess
import sys

from devtools.servers import PostgresServer


def main(argv: list[str]) -> int:
    server = PostgresServer().start()
    try:
        env = {**os.environ, "DATABASE_URL": server.url}
        return subprocess.call([sys.executable, "-m", "pytest", *argv], env=env)
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
