"""Bearer-token authentication for the JSON WebSocket API (`Authorization` header only, never the URL)."""

from __future__ import annotations

from channels.db import database_sync_to_async
from django.contrib.auth.models import AnonymousUser

from orchestrator.services.tokens import user_for_token


def bearer_token(scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return None


class TokenAuthMiddleware:
    def __init__(self, inner) -> None:
        self.inner = inner

    async def __call__(self, scope, receive, send):
        token = bearer_token(scope)
        user = await database_sync_to_async(user_for_token)(token) if token else None
        return await self.inner({**scope, "user": user or AnonymousUser()}, receive, send)
