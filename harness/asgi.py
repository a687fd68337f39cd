"""ASGI entry point: HTTP (Django), and the `orchestrator` channel for the turn-loop worker.

WebSocket routes (the portal and the JSON API) are added by the live-portal work.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "harness.settings")

from channels.routing import ChannelNameRouter, ProtocolTypeRouter  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402

django_asgi_app = get_asgi_application()

from orchestrator.worker import OrchestratorConsumer  # noqa: E402
from orchestrator.wakeups import ORCHESTRATOR_CHANNEL  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "channel": ChannelNameRouter({ORCHESTRATOR_CHANNEL: OrchestratorConsumer.as_asgi()}),
    }
)
