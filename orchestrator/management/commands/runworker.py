"""`manage.py runworker orchestrator`: Channels' runworker with the orchestrator's worker, which boots the
consumer at start-up (heartbeat + recovery) and survives channel layer outages."""

from __future__ import annotations

from channels.management.commands.runworker import Command as ChannelsRunworker

from orchestrator.worker import OrchestratorWorker


class Command(ChannelsRunworker):
    worker_class = OrchestratorWorker
