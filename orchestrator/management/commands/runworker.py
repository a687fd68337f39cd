"""`manage.py runworker orchestrator`: Channels' runworker with the orchestrator's worker, which boots the
consumer at start-up (heartbeat + recovery) and survives channel layer outages."""

from __future__ import annotations

from channels.management.commands.runworker import Command as ChannelsRunworker
from channels.routing import get_default_application
from django.conf import settings
from prometheus_client import start_http_server

from harness.process import configure_server_process
from orchestrator.worker import OrchestratorWorker


class Command(ChannelsRunworker):
    worker_class = OrchestratorWorker

    def handle(self, *args, **options):
        get_default_application()  # loaded (and cached) before the start-up heap is frozen
        configure_server_process(drives_runs=True)
        if settings.HARNESS_METRICS_PORT:  # scraped per worker instance (docs/operations.md)
            start_http_server(settings.HARNESS_METRICS_PORT, addr=settings.HARNESS_METRICS_ADDR)
        return super().handle(*args, **options)
