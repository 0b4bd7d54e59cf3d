"""GET /healthz: is the process up, does its database take writes, is the
clock keeping up (the oldest due deadline not yet applied), and has any
notice been given up (dead letters).

The public answer names the part that is down, never the cause: the cause
(a driver's error, with addresses) goes to the log and `complaintbot check`.
`storage_guarded` is the refusal intake wraps itself in (issue 13).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from bot.directory import unroutable_count
from bot.keys import CLOCK, SETTINGS, STORAGE
from bot.storage import RETRY_AFTER_SECONDS, storage_fault
from models import Notification
from schedulers.sweeper import oldest_overdue

log = structlog.get_logger(__name__)


async def healthz(request: web.Request) -> web.Response:
    """503 when the database cannot store (the heartbeat write fails or times
    out, the SQLite file was deleted or replaced) or a due deadline has waited
    longer than HEALTH_MAX_OVERDUE_SECONDS; 200 "degraded" while dead
    notifications wait for a person; else 200 "ok"."""
    storage = request.app[STORAGE]
    now = request.app[CLOCK]()
    cause = await storage.probe(now)
    if cause is None:
        try:
            overdue = await oldest_overdue(now)
            dead = await Notification.filter(status="dead").count()
            unroutable = await unroutable_count()
        except Exception as exc:  # any driver error means "down" to an operator
            cause = f"{type(exc).__name__}: {exc}"
    if cause is not None:
        log.warning("healthz_database_down", error=cause)
        return web.json_response({"status": "error", "database": "down"}, status=503)
    seconds = int(overdue.total_seconds()) if overdue is not None else 0
    body: dict[str, object] = {"status": "ok", "database": "ok",
                               "oldest_overdue_seconds": seconds, "dead_notifications": dead}
    if seconds > request.app[SETTINGS].health_max_overdue_seconds:
        log.warning("healthz_sweep_behind", oldest_overdue_seconds=seconds)
        return web.json_response({**body, "status": "error"}, status=503)
    if dead:
        # A notice nobody will get until a person retries it: not an outage,
        # so 200 (the load balancer keeps the replica), but say so.
        log.warning("healthz_dead_notifications", dead=dead)
        body["status"] = "degraded"
    if unroutable:
        # R20: notices nobody could receive (the directory lacks a handler or
        # a group) leave the bot working but degraded until the directory is fixed.
        body["status"] = "degraded"
        body["unroutable_notices"] = unroutable
    return web.json_response(body)


def storage_refusal() -> web.Response:
    """503 with Retry-After: nothing was stored, try again later."""
    return web.json_response(
        {"error": "系统暂时无法保存，请稍后重试", "retry_after_seconds": RETRY_AFTER_SECONDS},
        status=503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def storage_guarded(handler: Handler) -> Handler:
    """Wrap a handler that stores: refuse (503, Retry-After) when the SQLite
    file is lost, before it runs and before a success is answered, and when it
    fails because the database cannot store (a full disk, a lost connection),
    so no answer acknowledges what was not kept and no other 5xx escapes."""

    @functools.wraps(handler)
    async def guarded(request: web.Request) -> web.StreamResponse:
        storage = request.app[STORAGE]
        try:
            storage.guard()
            response = await handler(request)
            if response.status < 300:
                storage.guard()  # a write into a deleted file "succeeds"
            return response
        except web.HTTPException:
            raise
        except Exception as exc:
            cause = storage_fault(exc)
            if cause is None:
                # Not recognised: ask the database itself before calling it a bug.
                cause = await storage.probe()
                if cause is None:
                    raise
            log.error("storage_refused", path=request.path, error=cause)
            return storage_refusal()

    return guarded


def setup(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
