"""The in-process scheduler: one interval job sweeps due deadlines, one
delivers the outbox.

APScheduler 3.11 with its memory job store only ticks; the state (deadlines,
notifications) lives in the database, so a restart loses nothing and several
replicas can tick at once (see STACK.md). The scheduler starts in a
cleanup_ctx after the ORM, in the same task, so its jobs see the ORM context.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import structlog
from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.app import CLOCK, LEDGER, SETTINGS, WECOM
from bot.clock import Clock, utcnow
from bot.ledger import Ledger
from bot.notify import Transport
from bot.notify.email import EmailTransport
from bot.notify.sms import SmsTransport, sms_provider
from bot.notify.wecom import AppTransport, GroupTransport, RobotTransport, WeComSender
from bot.settings import Settings
from schedulers.outbox import RetryPolicy, deliver_due
from schedulers.sweeper import sweep

log = structlog.get_logger(__name__)

# A job still running at shutdown gets this long to finish before the ORM closes.
_SHUTDOWN_GRACE_SECONDS = 30


def transports_for(
    settings: Settings, wecom: WeComSender | None, *, clock: Clock = utcnow
) -> dict[str, Transport]:
    """The transport of each medium that is configured; rows of the others wait.
    `clock` stamps the cards the app sends (their response_code lasts 72 h)."""
    transports: dict[str, Transport] = {"sms": SmsTransport(sms_provider(settings))}
    if settings.smtp_host:
        transports["email"] = EmailTransport(settings)
    if wecom is not None:
        transports["group"] = GroupTransport(wecom)
        transports["app"] = AppTransport(wecom, zone=settings.zone, clock=clock)
        transports["robot"] = RobotTransport(wecom)
    return transports


def _job(name: str, work: Callable[[], Awaitable[object]],
         running: set[asyncio.Task]) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        task = asyncio.current_task()
        assert task is not None
        running.add(task)
        try:
            await work()
        except Exception:  # a failed round is logged; the next tick tries again
            log.exception("scheduled_job_failed", job=name)
        finally:
            running.discard(task)

    return run


def start_scheduler(
    settings: Settings, ledger: Ledger, clock: Clock, transports: dict[str, Transport]
) -> tuple[AsyncIOScheduler, set[asyncio.Task]]:
    """Start the sweep and outbox jobs on the running loop; returns the scheduler
    and the set of job runs in progress."""
    retry = RetryPolicy.from_settings(settings)
    running: set[asyncio.Task] = set()

    async def sweep_round() -> None:
        await sweep(ledger, now=clock())

    async def outbox_round() -> None:
        await deliver_due(transports, now=clock(), retry=retry, zone=settings.zone)

    scheduler = AsyncIOScheduler(timezone="UTC")
    options = {"coalesce": True, "max_instances": 1, "misfire_grace_time": None}
    scheduler.add_job(_job("sweep", sweep_round, running), "interval", id="sweep",
                      seconds=settings.sweep_interval_seconds, **options)
    scheduler.add_job(_job("outbox", outbox_round, running), "interval", id="outbox",
                      seconds=settings.outbox_interval_seconds, **options)
    scheduler.start()
    return scheduler, running


async def scheduler_context(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx entry: run the jobs while the app runs (append after the ORM's
    and the WeChat Work client's, whose one client and pacing it shares)."""
    settings = app[SETTINGS]
    wecom = app[WECOM] if settings.wecom_configured else None
    transports = transports_for(settings, wecom, clock=app[CLOCK])
    scheduler, running = start_scheduler(settings, app[LEDGER], app[CLOCK], transports)
    log.info("scheduler_started", media=sorted(transports),
             sweep_seconds=settings.sweep_interval_seconds,
             outbox_seconds=settings.outbox_interval_seconds)
    try:
        yield
    finally:
        scheduler.shutdown(wait=False)
        if running:
            await asyncio.wait(running, timeout=_SHUTDOWN_GRACE_SECONDS)
