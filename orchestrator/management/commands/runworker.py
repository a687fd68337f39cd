"""`manage.py runworker orchestrator`: Channels' runworker with the orchestrator's worker, which boots the
consumer at start-up (heartbeat + recovery) and survives channel layer outages."""

from __future__ import annotations

from channels.management.commands.runworker import Command as ChannelsRunworker
from channels.routing import get_default_application

from harness.process import configure_server_process
from orchestrator.worker import OrchestratorWorker


class Command(ChannelsRunworker):
    worker_class = OrchestratorWorker

    def handle(self, *args, **options):
        get_default_application()  # loaded (and cached) before the start-up heap is frozen
        configure_server_process()
        return super().handle(*args, **options)
