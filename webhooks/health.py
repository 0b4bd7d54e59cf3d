"""GET /healthz: is the process up and its database reachable."""

from __future__ import annotations

import structlog
from aiohttp import web
from tortoise import connections

log = structlog.get_logger(__name__)


async def healthz(request: web.Request) -> web.Response:
    """200 with the database state when it answers, 503 when it does not."""
    try:
        await connections.get("default").execute_query("SELECT 1")
    except Exception as exc:  # any driver error means "unreachable" to an operator
        log.warning("healthz_database_unreachable", error=str(exc))
        return web.json_response({"status": "error", "database": str(exc)}, status=503)
    return web.json_response({"status": "ok", "database": "ok"})


def setup(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
