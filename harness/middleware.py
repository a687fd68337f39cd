"""Middleware of our own."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse

logger = logging.getLogger(__name__)


class SyncMiddleware:
    """A sync-only middleware that only passes the request on (its work is in a hook such as
    process_exception). Sync-only keeps the chain in one thread (OneThreadMiddlewareChain)."""

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)


class OneThreadMiddlewareChain(SyncMiddleware):
    """Innermost and sync-only, so Django runs the whole middleware chain in one thread.

    Django adapts each middleware to its neighbour's mode. With WhiteNoise (sync-only) near the top and the
    async-capable middleware below it, every `process_request`/`process_response` of the latter hopped
    between the event loop and a thread: ~19 hops per API request, each waiting for a busy loop. Being
    sync-only here makes everything above us run sync: 3 hops per request (in, out to the view, back).
    """


class DatabaseOutageMiddleware(SyncMiddleware):
    """A request that meets an unreachable database (PostgreSQL restarting, its connections killed) is
    answered 503 in the form its client understands — JSON `{"error": "store_unavailable"}` on the API and
    for htmx (whose page shows its retryable error state), a short page otherwise — never a 500. Nothing
    here touches the database: the answer must not fail the same way."""

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, (OperationalError, InterfaceError)):
            return None
        logger.warning("database unavailable during %s %s", request.method, request.path, exc_info=exception)
        if request.path.startswith("/api/") or getattr(request, "htmx", False):  # django-htmx's detection
            return JsonResponse({"error": "store_unavailable", "detail": STORE_UNAVAILABLE}, status=503,
                                headers={"Retry-After": "1"})
        return HttpResponse(OUTAGE_PAGE, status=503, headers={"Retry-After": "5"})


STORE_UNAVAILABLE = "the database is unavailable for a moment: nothing was changed; retry"
OUTAGE_PAGE = (
    "<!doctype html><html lang=en><meta charset=utf-8><title>Unavailable for a moment · Agent harness</title>"
    "<h1>Unavailable for a moment</h1><p>The server cannot reach its database. Nothing was changed. "
    "This page will work again shortly: <a href=\"\">reload it</a>.</p></html>"
)
