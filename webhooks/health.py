"""GET /healthz: is the process up, its database reachable, and is the clock
keeping up (the oldest due deadline not yet applied)."""

from __future__ import annotations

import structlog
from aiohttp import web
from tortoise import connections

from bot.directory import unroutable_count
from bot.keys import CLOCK, SETTINGS
from schedulers.sweeper import oldest_overdue

log = structlog.get_logger(__name__)


async def healthz(request: web.Request) -> web.Response:
    """200 with the database state when it answers, 503 when it does not or when
    a due deadline has waited longer than HEALTH_MAX_OVERDUE_SECONDS."""
    try:
        await connections.get("default").execute_query("SELECT 1")
        overdue = await oldest_overdue(request.app[CLOCK]())
    except Exception as exc:  # any driver error means "unreachable" to an operator
        log.warning("healthz_database_unreachable", error=str(exc))
        return web.json_response({"status": "error", "database": str(exc)}, status=503)
    seconds = int(overdue.total_seconds()) if overdue is not None else 0
    if seconds > request.app[SETTINGS].health_max_overdue_seconds:
        log.warning("healthz_sweep_behind", oldest_overdue_seconds=seconds)
        return web.json_response({"status": "error", "database": "ok",
                                  "oldest_overdue_seconds": seconds}, status=503)
    # R20: notices nobody could receive (the directory lacks a handler or a
    # group) leave the bot working but degraded until the directory is fixed.
    unroutable = await unroutable_count()
    if unroutable:
        return web.json_response({"status": "degraded", "database": "ok",
                                  "oldest_overdue_seconds": seconds,
                                  "unroutable_notices": unroutable})
    return web.json_response({"status": "ok", "database": "ok",
                              "oldest_overdue_seconds": seconds})


def setup(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
