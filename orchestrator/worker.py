"""The Channels worker consumer on the named channel `orchestrator`.

`manage.py serve` runs it inside Daphne's process; scaled out it is `manage.py runworker orchestrator`.
Handlers only hand work to the executor pool and return, so messages (a stop above all) never wait
behind a running turn.
"""

from __future__ import annotations

from channels.consumer import AsyncConsumer

from .engine.pool import get_pool


class OrchestratorConsumer(AsyncConsumer):
    async def _pool(self):
        pool = get_pool()
        if not pool.channel_name:
            pool.channel_name = self.channel_name
        pool.start_recovery()
        return pool

    async def worker_boot(self, message: dict) -> None:
        await self._pool()

    async def run_start(self, message: dict) -> None:
        (await self._pool()).ensure_driving(message["run_id"])

    async def run_wake(self, message: dict) -> None:
        (await self._pool()).ensure_driving(message["run_id"])

    async def run_stop(self, message: dict) -> None:
        pool = await self._pool()
        if not pool.signal_stop(message["run_id"]):
            # Parked, or its wake-up beat its start: drive it so it reaches `stopped` now.
            pool.ensure_driving(message["run_id"])
