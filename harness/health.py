"""`GET /healthz`: is this process able to serve? Database, channel layer, and live orchestrator workers.

200 when all three are fine, 503 otherwise, with the reason per check. For load balancers and monitors:
no login, and nothing in it is secret. It also reports how agents' commands run (`sandbox`): that does not
make the server unhealthy, since everything but the shell tool works without it; nor do MCP servers this
process cannot reach (`mcp.warnings`).
"""

from __future__ import annotations

import asyncio
import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from orchestrator.engine.lease import live_workers
from orchestrator.mcp.manager import mcp_health
from orchestrator.sandbox import sandbox_state

logger = logging.getLogger(__name__)

LAYER_TIMEOUT_SECONDS = 2.0


def _database() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        return {"ok": True, "vendor": connection.vendor}
    except Exception as exc:
        logger.warning("health: database unreachable", exc_info=True)
        return {"ok": False, "error": type(exc).__name__}


async def _round_trip() -> None:
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "health.ping"})
    await layer.receive(channel)


def _channel_layer() -> dict:
    layer = get_channel_layer()
    if layer is None:
        return {"ok": False, "error": "not configured"}
    try:
        async_to_sync(asyncio.wait_for)(_round_trip(), LAYER_TIMEOUT_SECONDS)
        return {"ok": True, "backend": type(layer).__name__}
    except Exception as exc:
        logger.warning("health: channel layer unreachable", exc_info=True)
        return {"ok": False, "backend": type(layer).__name__, "error": type(exc).__name__}


def _workers(database_ok: bool) -> dict:
    if not database_ok:
        return {"ok": False, "error": "unknown (database unreachable)"}
    try:
        alive = live_workers()
    except Exception as exc:  # e.g. a database not migrated yet: unhealthy, said plainly, never a 500
        logger.warning("health: worker heartbeats unreadable", exc_info=True)
        return {"ok": False, "error": type(exc).__name__}
    return {"ok": alive > 0, "alive": alive}


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    database = _database()
    checks = {"database": database, "channel_layer": _channel_layer(), "workers": _workers(database["ok"])}
    healthy = all(check["ok"] for check in checks.values())
    body = {"status": "ok" if healthy else "unavailable", "checks": checks, "sandbox": sandbox_state().as_health()}
    if (mcp := mcp_health()) is not None:
        body["mcp"] = mcp  # servers that cannot be reached are warnings: runs go on with the other tools
    return JsonResponse(body, status=200 if healthy else 503)
