"""WebSocket routes: the portal's socket (browser: login session + Origin check) and the JSON API's socket
(programs: bearer token; programs send no Origin)."""

from __future__ import annotations

from channels.auth import AuthMiddlewareStack
from channels.security.websocket import AllowedHostsOriginValidator
from channels.generic.websocket import AsyncWebsocketConsumer
from django.urls import path, re_path

from harness.portal.consumers import PortalConsumer
from harness.portal.sidebar import SidebarConsumer
from harness.ws_api.auth import TokenAuthMiddleware
from harness.ws_api.consumers import ApiConsumer


class UnknownPathConsumer(AsyncWebsocketConsumer):
    """Any other path: accept, then close with 4404, so the client gets a code rather than a failed handshake."""

    async def connect(self) -> None:
        await self.accept()
        await self.close(code=4404)


websocket_urlpatterns = [
    path("ws/api/sessions/<str:session_id>/", TokenAuthMiddleware(ApiConsumer.as_asgi())),
    path(
        "ws/sessions/<str:session_id>/",
        AllowedHostsOriginValidator(AuthMiddlewareStack(PortalConsumer.as_asgi())),
    ),
    path("ws/sidebar/", AllowedHostsOriginValidator(AuthMiddlewareStack(SidebarConsumer.as_asgi()))),
    re_path(r"^.*$", UnknownPathConsumer.as_asgi()),
]
