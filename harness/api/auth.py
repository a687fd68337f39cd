"""API authentication: `Authorization: Bearer <token>`, or the portal's session cookie with CSRF."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.csrf import csrf_exempt

from orchestrator.services.errors import ServiceError
from orchestrator.services.tokens import user_for_token

from harness import throttle
from harness.client_commands import CommandError

from .responses import error_response

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def _csrf_failure(request: HttpRequest) -> str | None:
    response = CsrfViewMiddleware(lambda r: HttpResponse()).process_view(request, None, (), {})
    return None if response is None else "CSRF check failed"


def api_view(*methods: str) -> Callable:
    """Authenticate, allow only `methods`, and turn CommandError/ServiceError into JSON 4xx responses."""

    def decorator(view: Callable) -> Callable:
        @csrf_exempt
        @wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if request.method not in methods:
                response = error_response(405, "method_not_allowed", f"use {' or '.join(methods)}")
                response["Allow"] = ", ".join(methods)
                return response
            header = request.headers.get("Authorization", "")
            if header:
                scheme, _, token = header.partition(" ")
                user = user_for_token(token.strip()) if scheme.lower() == "bearer" and token.strip() else None
                if user is None:
                    # Counted, and past the limit refused with 429. Only failures pay for the throttle: a
                    # valid token (256 random bits: never guessed) costs no extra query, a stop included.
                    if throttle.token_failed(request):
                        return throttle.rate_limited_response()
                    return error_response(401, "unauthenticated", "invalid bearer token")
                request.user = user
            elif request.user.is_authenticated:
                if request.method not in SAFE_METHODS and (failure := _csrf_failure(request)):
                    return error_response(403, "csrf_failed", failure)
            else:
                return error_response(401, "unauthenticated", "send Authorization: Bearer <token> or log in")
            try:
                return view(request, *args, **kwargs)
            except CommandError as exc:
                return error_response(exc.status, exc.code, exc.detail)
            except ServiceError as exc:
                return error_response(exc.status, exc.code, exc.detail)

        return wrapper

    return decorator
