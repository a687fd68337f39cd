"""ASGI entry point: HTTP (Django), WebSocket (`harness/routing.py`: the portal's socket and the JSON API's),
and the `orchestrator` channel for the turn-loop worker. Importing it changes nothing process-wide; servers
tune the process at start (`harness/process.py`)."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "harness.settings")

from channels.routing import ChannelNameRouter, ProtocolTypeRouter, URLRouter  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402

django_asgi_app = get_asgi_application()

from harness.routing import websocket_urlpatterns  # noqa: E402
from orchestrator.worker import OrchestratorConsumer  # noqa: E402
from orchestrator.wakeups import ORCHESTRATOR_CHANNEL  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": URLRouter(websocket_urlpatterns),
        "channel": ChannelNameRouter({ORCHESTRATOR_CHANNEL: OrchestratorConsumer.as_asgi()}),
    }
)
