"""GET /metrics: the Prometheus text format (bot/metrics.py names the metrics).

Unauthenticated like /healthz: bind HTTP_HOST to an internal address, or let
the reverse proxy keep /metrics inside. No customer data is in it.
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from tortoise.functions import Count

from bot.domain.ticket import Medium
from bot.keys import CLOCK, SETTINGS
from bot.metrics import exposition
from bot.storage import free_space, sqlite_path
from models import Deadline, Notification
from schedulers.outbox import UNDELIVERED
from schedulers.sweeper import oldest_overdue


async def metrics(request: web.Request) -> web.Response:
    """The counters of this process, the queue gauges read from the database
    now, and the free space of the disks the bot writes to."""
    now = request.app[CLOCK]()
    overdue = await oldest_overdue(now)
    due = await Deadline.filter(state="pending", due_at__lte=now).count()
    counted = await (
        Notification.filter(status__in=UNDELIVERED)
        .annotate(rows=Count("id"))
        .group_by("medium", "status")
        .values_list("medium", "status", "rows")
    )
    # Every medium and status is reported, 0 included, so an alert sees the queue empty.
    depth = {(medium.value, status): 0 for medium in Medium for status in UNDELIVERED}
    depth.update({(medium, status): rows for medium, status, rows in counted})
    settings = request.app[SETTINGS]
    folders = {"attachments": settings.attachments_dir.absolute()}
    if (database := sqlite_path(settings.database_url)) is not None:
        folders["database"] = database.absolute().parent
    body = exposition(
        oldest_overdue_seconds=overdue.total_seconds() if overdue is not None else 0.0,
        deadlines_due=due,
        outbox_depth=depth,
        # In a thread: a hung network mount must not hold the event loop.
        free_bytes={store: await asyncio.to_thread(free_space, folder)
                    for store, folder in folders.items()},
    )
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def setup(app: web.Application) -> None:
    app.router.add_get("/metrics", metrics)
