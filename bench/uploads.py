"""Uploads and downloads through a real `manage.py serve` (Daphne) over HTTP: the time of a raw-body upload
(`POST /api/sessions/<id>/files?name=…`: the body over loopback, the temporary file, the copy into the
workspace, the note's transaction) and of its download, at 1 MiB and at the default limit (25 MiB); and how
soon an over-limit body is refused. Targets: a 25 MiB upload p50 ≤ 1 s, its download p50 ≤ 1 s.

    .venv/bin/python bench/uploads.py            # 10 of each (~30 s)
    .venv/bin/python bench/uploads.py --quick    # 3 of each
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent)]

from common import PERCENTILE_METHOD, RESULTS, code_version, finish, fmt, serve_env, summary, table  # noqa: E402
from devtools.api import call  # noqa: E402
from devtools.facts import cpu_model  # noqa: E402
from devtools.serve import Serve  # noqa: E402

DEFAULT_JSON = RESULTS / "uploads.json"
SIZES = {"1 MiB": 1024**2, "25 MiB": 25 * 1024**2}
TARGET_MS = 1000


def _request(url: str, token: str, body: bytes | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET",
                                     headers={"Authorization": f"Bearer {token}",
                                              "Content-Type": "application/octet-stream"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read()


def timed(url: str, token: str, body: bytes | None = None) -> tuple[int, bytes, float]:
    started = time.perf_counter()
    status, answer = _request(url, token, body)
    return status, answer, (time.perf_counter() - started) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()
    trials = 3 if args.quick else 10
    with tempfile.TemporaryDirectory(prefix="bench-uploads-") as tmp:
        server = Serve(serve_env(Path(tmp)), Path(tmp) / "serve.log")
        server.migrate()
        token = server.manage("create_api_token", "bench").strip()
        server.start()
        try:
            base = server.base_url
            session_id = call(base, token, "POST", "/api/sessions", {"title": "uploads"})[1]["id"]
            files = f"{base}/api/sessions/{session_id}/files"
            results: dict[str, dict] = {}
            for label, size in SIZES.items():
                body = os.urandom(size)
                uploads, downloads = [], []
                for _ in range(trials):
                    status, _, elapsed = timed(f"{files}?name=bench.bin", token, body)
                    assert status == 201, status
                    uploads.append(elapsed)
                    status, got, elapsed = timed(f"{files}/bench.bin", token)
                    assert status == 200 and got == body, status
                    downloads.append(elapsed)
                results[label] = {"upload_ms": summary(uploads), "download_ms": summary(downloads)}
            over = [timed(f"{files}?name=over.bin", token, b"x" * (SIZES["25 MiB"] + 1)) for _ in range(trials)]
            assert all(status == 413 for status, _, _ in over)
            results["over the limit (refused 413)"] = {"upload_ms": summary([elapsed for _, _, elapsed in over])}
        finally:
            server.stop()
    rows = [[label, fmt(r["upload_ms"]["p50"]), fmt(r["upload_ms"]["max"]),
             fmt(r.get("download_ms", {}).get("p50")), fmt(r.get("download_ms", {}).get("max"))]
            for label, r in results.items()]
    text = table(["body", "upload p50 ms", "upload max ms", "download p50 ms", "download max ms"], rows)
    print(text)
    passes = {"upload_25": results["25 MiB"]["upload_ms"]["p50"] <= TARGET_MS,
              "download_25": results["25 MiB"]["download_ms"]["p50"] <= TARGET_MS}
    output = {"benchmark": "uploads", "when": datetime.datetime.now(datetime.UTC).isoformat(), "trials": trials,
              "cpu": cpu_model(), "code": code_version(), "percentiles": PERCENTILE_METHOD, "results": results,
              "passes": passes}
    return finish(args.json, output, text, all_pass=all(passes.values()), strict=args.strict)


if __name__ == "__main__":
    sys.exit(main())
