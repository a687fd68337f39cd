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


def api_view(*methods: str, prepare: Callable | None = None) -> Callable:
    """Authenticate, allow only `methods`, and turn CommandError/ServiceError into JSON 4xx responses.

    `prepare(request, *args, **kwargs)`, if given, runs once the caller is authenticated and before the CSRF
    check (which reads `request.POST`): an upload checks the caller's role and reads its body there, within
    its limit (`harness/uploads.py`)."""

    def decorator(view: Callable) -> Callable:
        @csrf_exempt
        @wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if request.method not in methods:
                response = error_response(405, "method_not_allowed", f"use {' or '.join(methods)}")
                response["Allow"] = ", ".join(methods)
                return response
            try:
                return _authenticated(request, *args, **kwargs)
            except CommandError as exc:
                return error_response(exc.status, exc.code, exc.detail)
            except ServiceError as exc:
                return error_response(exc.status, exc.code, exc.detail)

        def _authenticated(request: HttpRequest, *args, **kwargs) -> HttpResponse:
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
            elif not request.user.is_authenticated:
                return error_response(401, "unauthenticated", "send Authorization: Bearer <token> or log in")
            if prepare is not None:
                prepare(request, *args, **kwargs)
            if not header and request.method not in SAFE_METHODS and (failure := _csrf_failure(request)):
                return error_response(403, "csrf_failed", failure)
            return view(request, *args, **kwargs)

        return wrapper

    return decorator
