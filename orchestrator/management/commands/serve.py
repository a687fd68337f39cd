"""`manage.py serve [ADDR:PORT]`: HTTP, WebSocket and the orchestrator worker in one process.

Daphne and a Channels `Worker` share one event loop (and so one in-memory channel layer): Daphne's
`ready_callable` runs after it has set its asyncio loop and before the reactor starts, and there we
schedule the worker. Scaled out, run Daphne and `manage.py runworker orchestrator` separately instead.
"""

from __future__ import annotations

import asyncio
import logging

from django.core.management.base import BaseCommand, CommandError

logger = logging.getLogger("orchestrator.serve")

# The largest WebSocket message Daphne reads (deploy passes the same to `daphne`, docs/deploy.md).
WEBSOCKET_MAX_MESSAGE_BYTES = 4 * 1024 * 1024


def parse_address(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise CommandError(f"{value!r} is not ADDR:PORT")
    return host or "127.0.0.1", int(port)


class Command(BaseCommand):
    help = "Serve the portal, the APIs and the orchestrator worker in one process (default 127.0.0.1:8000)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("address", nargs="?", default="127.0.0.1:8000", help="ADDR:PORT to listen on")

    def handle(self, *args, **options) -> None:
        # Daphne's server module installs Twisted's asyncio reactor; import it before anything else does.
        from daphne.server import Server
        from channels.layers import get_channel_layer
        from channels.routing import get_default_application
        from harness.process import configure_server_process
        from orchestrator.tools.registry import get_registry
        from orchestrator.wakeups import ORCHESTRATOR_CHANNEL
        from orchestrator.worker import OrchestratorWorker

        host, port = parse_address(options["address"])
        # (A model configuration it cannot use was refused by the system checks before handle() ran.)
        get_registry()
        application = get_default_application()
        layer = get_channel_layer()
        worker = OrchestratorWorker(application=application, channels=[ORCHESTRATOR_CHANNEL], channel_layer=layer)

        def start_worker() -> None:
            loop = asyncio.get_event_loop()
            task = loop.create_task(worker.handle())
            task.add_done_callback(_log_worker_exit)
            # What Worker.run() would also do: reap finished consumer instances and log their exceptions.
            loop.create_task(worker.application_checker()).add_done_callback(_log_worker_exit)
            self.stdout.write(f"Serving on http://{host}:{port}/ (HTTP, WebSocket, orchestrator worker)")
            self.stdout.flush()

        server = Server(
            application=application,
            endpoints=[f"tcp:port={port}:interface={host}"],
            signal_handlers=True,
            ready_callable=start_worker,
            websocket_timeout=-1,
            # Frames past the API's 64 KiB get an error frame; past this hard limit the socket is closed.
            websocket_max_message_size=WEBSOCKET_MAX_MESSAGE_BYTES,
            websocket_max_frame_size=WEBSOCKET_MAX_MESSAGE_BYTES,
            verbosity=options["verbosity"],
        )
        configure_server_process(drives_runs=True)
        server.run()


def _log_worker_exit(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("the orchestrator worker stopped", exc_info=task.exception())
