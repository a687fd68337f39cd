"""What the benchmarks share: the repository's paths, the server's management commands, percentiles and
tables, and facts about the machine and the code measured. (Import it after putting the repository root on
sys.path, as the benchmarks do: free ports come from the test fixtures' `tests.servers`.)"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
from pathlib import Path

from tests.servers import free_port  # noqa: F401  (re-exported: one way to pick a port)

ROOT = Path(__file__).resolve().parent.parent
MANAGE = ROOT / "manage.py"


def script_text(script: dict) -> str:
    """A message the scripted model plays (`script:{json}`)."""
    return "script:" + json.dumps(script)


def nearest_rank(values: list[float], pct: float) -> float | None:
    """pK is the ⌈K/100·n⌉-th smallest sample."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(pct / 100 * len(ordered))) - 1]


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(headers: list[str], rows: list[list[str]]) -> str:
    """A Markdown table, columns padded to their widest cell."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def manage(env: dict, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(MANAGE), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    if result.returncode != 0:
        raise SystemExit(f"manage.py {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result.stdout


def stop_server(proc: subprocess.Popen | None) -> None:
    """SIGINT (a clean shutdown), then SIGTERM, then SIGKILL; only this one process."""
    if proc is None or proc.poll() is not None:
        return
    for action, grace in ((lambda: proc.send_signal(signal.SIGINT), 10), (proc.terminate, 5), (proc.kill, 5)):
        action()
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no server log)"


def cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def git(*args: str) -> str | None:
    """A git command's output in the repository, or None (not a checkout, no git, an error)."""
    try:
        result = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


PERCENTILE_METHOD = "nearest-rank: pK = ceil(K/100*n)-th smallest sample"


def write_results(path: Path, output: dict, *, all_pass: bool, strict: bool) -> int:
    """Write the run's JSON and say where; the exit status (1 only when `strict` and a target was missed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(output, indent=2, default=str) + "\n")
    print(f"results written to {path}")
    return 1 if strict and not all_pass else 0
