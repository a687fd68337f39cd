"""`GET /metrics`: this web process's Prometheus metrics (orchestrator/metrics.py).

With HARNESS_METRICS_TOKEN set, a scraper sends it as `Authorization: Bearer <token>`; without it, only
loopback clients are answered (a scraper on the same host, or through a local proxy). Everyone else gets
the API's JSON error. Workers serve theirs on HARNESS_METRICS_PORT (manage.py runworker).
"""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from harness.api.responses import error_response
from orchestrator import metrics, selectors

LOOPBACK = {"127.0.0.1", "::1"}


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    token = settings.HARNESS_METRICS_TOKEN
    if token:
        sent = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if not hmac.compare_digest(sent.encode(), token.encode()):
            return error_response(401, "unauthenticated", "send the metrics token as `Authorization: Bearer …`")
    elif request.META.get("REMOTE_ADDR") not in LOOPBACK:
        return error_response(403, "forbidden",
                              "metrics are served to loopback clients unless HARNESS_METRICS_TOKEN is set")
    for state, count in selectors.live_runs_by_state().items():
        metrics.RUNS_LIVE.labels(state=state).set(count)
    return HttpResponse(generate_latest(), content_type=CONTENT_TYPE_LATEST)
