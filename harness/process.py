"""Process-wide tuning for a process that serves: `manage.py serve`, `manage.py runworker`, and Daphne through
`harness/asgi_server.py`. Called once by those entry points, never at import, so importing the project (as
tests do) changes nothing about the interpreter."""

from __future__ import annotations

import gc
import sys

# One process runs the event loop, the engine's database thread and the request threads, and they take
# turns holding the GIL. A thread that wants it waits for the holder to release it — at the latest after the
# switch interval, 5 ms by default: a stop request arriving while the engine is busy paid that several times
# over (request thread → loop → request thread). 1 ms keeps those hand-offs short.
SWITCH_INTERVAL_SECONDS = 0.001


def configure_server_process(*, drives_runs: bool = False) -> None:
    """Call once, after start-up imports (the application loaded), before serving. `drives_runs`: the process
    runs the worker, so it will call models: their SDKs are loaded now, to be frozen with the rest."""
    keep_request_bodies_raw()
    if drives_runs:
        from orchestrator.providers.registry import load_sdks

        load_sdks()
    # Everything loaded at start-up lives as long as the process: freeze it out of the garbage collector, so
    # a full collection no longer rescans ~90k start-up objects (a 50 ms pause every few seconds under load).
    gc.collect()
    gc.freeze()
    # (The collector's thresholds stay CPython's. Raised to (20000, 20, 20) they took the 200-run Markdown fan-out's
    # p99 from ~400 to ~35 ms, but in a soak RSS and open descriptors kept climbing — 520 MiB and 1,600 fds at
    # 12 minutes against a flat 250 MiB and ~400: sockets and files held by cycles waited too long. See
    # docs/performance.md.)
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)


def keep_request_bodies_raw() -> None:
    """Twisted, under Daphne, parses a POST's multipart/form-data body into `request.args` — which Daphne
    never reads (it hands the raw body to the application) — and answers one it cannot parse with a bare
    400 before Django sees it. Twisted's own `parsePOSTFormSubmission` switch turns that parsing off, so every
    body reaches our parsers and gets the documented JSON error."""
    from daphne.http_protocol import WebRequest

    original = WebRequest.__init__
    if getattr(original, "keeps_bodies_raw", False):
        return

    def __init__(self, *args, **kwargs) -> None:
        original(self, *args, **kwargs)
        self._parsePOSTFormSubmission = False

    __init__.keeps_bodies_raw = True
    WebRequest.__init__ = __init__
