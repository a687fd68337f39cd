"""Bearer-token authentication for the JSON WebSocket API (`Authorization` header only, never the URL)."""

from __future__ import annotations

from channels.db import database_sync_to_async
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.http import HttpRequest

from harness import throttle

from orchestrator.services.tokens import user_for_token


def bearer_token(scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return None


def _request_for(scope) -> HttpRequest:
    """What the login throttle (django-axes) reads of a request, from a socket's scope."""
    request = HttpRequest()
    request.method, request.path = "GET", scope.get("path", "")
    client = scope.get("client") or ("", 0)
    agent = next((value.decode("latin-1") for name, value in scope.get("headers", []) if name == b"user-agent"), "")
    request.META = {"REMOTE_ADDR": client[0], "HTTP_USER_AGENT": agent}
    return request


def _refused(token: str | None, scope) -> tuple[AbstractBaseUser | None, bool]:
    """(the token's user, whether this address is now over the bad-token limit)."""
    user = user_for_token(token) if token else None
    if token and user is None:
        return None, throttle.token_failed(_request_for(scope))
    return user, False


class TokenAuthMiddleware:
    """Puts the token's user in the scope; a bad token is counted by the throttle like one sent over HTTP,
    and past the limit the scope says `rate_limited` (the consumer closes with 4429)."""

    def __init__(self, inner) -> None:
        self.inner = inner

    async def __call__(self, scope, receive, send):
        user, rate_limited = await database_sync_to_async(_refused)(bearer_token(scope), scope)
        scope = {**scope, "user": user or AnonymousUser(), "rate_limited": rate_limited}
        return await self.inner(scope, receive, send)
