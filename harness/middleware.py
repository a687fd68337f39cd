"""Middleware of our own."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse


class OneThreadMiddlewareChain:
    """Innermost and sync-only, so Django runs the whole middleware chain in one thread.

    Django adapts each middleware to its neighbour's mode. With WhiteNoise (sync-only) near the top and the
    async-capable middleware below it, every `process_request`/`process_response` of the latter hopped
    between the event loop and a thread: ~19 hops per API request, each waiting for a busy loop. Being
    sync-only here makes everything above us run sync: 3 hops per request (in, out to the view, back).
    """

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)
