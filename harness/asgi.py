"""ASGI entry point: HTTP (Django), WebSocket (`harness/routing.py`: the portal's socket and the JSON API's),
and the `orchestrator` channel for the turn-loop worker."""

import gc
import os
import sys

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

# Everything loaded at start-up lives as long as the process: freeze it out of the garbage collector, so a
# full collection no longer rescans ~90k start-up objects (a 50 ms pause every few seconds under load).
gc.collect()
gc.freeze()

# One process runs the event loop, the engine's database thread and the request threads, and they take
# turns holding the GIL. A thread that wants it waits for the holder to release it — at the latest after
# the switch interval, 5 ms by default: a stop request arriving while the engine is busy paid that several
# times over (request thread → loop → request thread). 1 ms keeps those hand-offs short.
sys.setswitchinterval(0.001)
