"""The in-process scheduler: at start-up one job mends clocks an older
version left running; one interval job sweeps due deadlines, one
delivers the outbox, and one cron job per kind of report stores the reports
for the outbox (schedulers/reports.py), also run at start-up and hourly to
catch up with a report missed while down. An hourly job deletes processed
callbacks older than CALLBACK_RETENTION_DAYS; one every six hours clears
the attachment store of files no ticket uses (bot/attachments.py `prune`).
With DIRECTORY_SYNC_CRON and DIRECTORY_SYNC_MAPPING, a cron job syncs the
staff from WeChat Work (bot/directory_sync.py).

APScheduler 3.11 with its memory job store only ticks; the state (deadlines,
notifications) lives in the database, so a restart loses nothing and several
replicas can tick at once (see STACK.md). The scheduler starts in a
cleanup_ctx after the ORM, in the same task, so its jobs see the ORM context.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog
from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.attachments import Attachments
from bot.clock import Clock, utcnow
from bot.keys import ATTACHMENTS, CLOCK, LEDGER, ROBOT_CONNECTION, SETTINGS, STORAGE, WECOM
from bot.ledger import Ledger
from bot.notify import Transport
from bot.notify.email import EmailTransport
from bot.notify.sms import SmsTransport, sms_provider
from bot.notify.wecom import (
    AppTransport,
    CrisisTransport,
    GroupTransport,
    RobotPusher,
    RobotTransport,
    WeComSender,
)
from bot.settings import Settings
from bot.storage import Storage
from bot.survey import SurveyLinks
from bot.wecom.client import WeComClient
from schedulers.outbox import RetryPolicy, deliver_backlog
from schedulers.reports import deliver_reports, due_period, first_day, report_trigger
from schedulers.sweeper import sweep
from webhooks.callback import forget_callbacks

log = structlog.get_logger(__name__)

# A job still running at shutdown gets this long to finish before the ORM closes.
_SHUTDOWN_GRACE_SECONDS = 30
# How often a missed or failed report is looked for after the start-up check.
_REPORT_CATCHUP_SECONDS = 3600
# How often processed callbacks older than CALLBACK_RETENTION_DAYS are deleted.
_FORGET_CALLBACKS_SECONDS = 3600
# How often the attachment store is cleared of files no ticket uses: each
# round walks the whole store.
_PRUNE_ATTACHMENTS_SECONDS = 6 * 3600


def transports_for(
    settings: Settings, wecom: WeComSender | None, *, clock: Clock = utcnow,
    pusher: RobotPusher | None = None,
) -> dict[str, Transport]:
    """The transport of each medium that is configured; rows of the others wait.
    `clock` stamps the cards the app sends (their response_code lasts 72 h);
    `pusher` is the robot's long connection, tried first for group notices."""
    transports: dict[str, Transport] = {
        "sms": SmsTransport(sms_provider(settings), SurveyLinks.from_settings(settings))}
    if settings.smtp_host:
        transports["email"] = EmailTransport(settings)
    if wecom is not None:
        transports["group"] = GroupTransport(wecom, pusher=pusher, zone=settings.zone,
                                             clock=clock)
        transports["app"] = AppTransport(wecom, zone=settings.zone, clock=clock)
        transports["robot"] = RobotTransport(wecom)
        transports["crisis"] = CrisisTransport(wecom, zone=settings.zone)
    return transports


def _job(name: str, work: Callable[[], Awaitable[object]],
         running: set[asyncio.Task], storage: Storage | None = None
         ) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        if storage is not None and (problem := storage.file_problem()) is not None:
            # The SQLite file was deleted or replaced: what a round would do
            # (send a notice, apply a deadline) would be recorded in a file
            # that is gone. Skip until the bot is restarted on the real one.
            log.error("scheduled_job_skipped", job=name, error=problem)
            return
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
    settings: Settings, ledger: Ledger, clock: Clock, transports: dict[str, Transport],
    storage: Storage | None = None, attachments: Attachments | None = None,
) -> tuple[AsyncIOScheduler, set[asyncio.Task]]:
    """Start the sweep, outbox and callback-forgetting jobs (and, given the
    store, the attachments' clean-up) on the running loop; returns the
    scheduler and the set of job runs in progress. With `storage`, the jobs
    pause while the SQLite file is lost."""
    retry = RetryPolicy.from_settings(settings)
    running: set[asyncio.Task] = set()

    async def sweep_round() -> None:
        await sweep(ledger, now=clock())

    async def outbox_round() -> None:
        await deliver_backlog(transports, clock=clock, retry=retry, zone=settings.zone,
                              concurrency=settings.outbox_concurrency)

    async def forget_round() -> None:
        keep = timedelta(days=settings.callback_retention_days)
        forgotten = await forget_callbacks(before=clock() - keep)
        if forgotten:
            log.info("callbacks_forgotten", count=forgotten)

    scheduler = AsyncIOScheduler(timezone="UTC")
    options = {"coalesce": True, "max_instances": 1, "misfire_grace_time": None}
    scheduler.add_job(_job("sweep", sweep_round, running, storage), "interval", id="sweep",
                      seconds=settings.sweep_interval_seconds, **options)
    scheduler.add_job(_job("outbox", outbox_round, running, storage), "interval", id="outbox",
                      seconds=settings.outbox_interval_seconds, **options)
    scheduler.add_job(_job("forget_callbacks", forget_round, running, storage), "interval",
                      id="forget_callbacks", seconds=_FORGET_CALLBACKS_SECONDS, **options)
    if attachments is not None:
        kept = attachments  # narrowed for the closure

        async def prune_round() -> None:
            await kept.prune(now=clock(), rules=ledger.policies.current.attachments)

        scheduler.add_job(_job("prune_attachments", prune_round, running, storage), "interval",
                          id="prune_attachments", seconds=_PRUNE_ATTACHMENTS_SECONDS, **options)
    _add_report_jobs(scheduler, settings, ledger, clock, running, options)
    scheduler.start()
    return scheduler, running


def _add_report_jobs(scheduler: AsyncIOScheduler, settings: Settings, ledger: Ledger,
                     clock: Clock, running: set[asyncio.Task], options: dict) -> None:
    """Each kind of report on its cron schedule, and a catch-up of both."""
    schedules = {"weekly": settings.report_weekly_cron, "monthly": settings.report_monthly_cron}
    triggers = {kind: report_trigger(crontab, settings.zone)
                for kind, crontab in schedules.items() if crontab}
    locks = {kind: asyncio.Lock() for kind in triggers}  # the cron and the catch-up

    async def report_round(kind: str) -> None:
        now = clock()
        period = due_period(kind, triggers[kind], now, settings.zone)  # type: ignore[arg-type]
        if period is not None:
            async with locks[kind]:
                await deliver_reports(period, now=now, policy=ledger.policies.current,
                                      zone=settings.zone,
                                      cpu_share=settings.report_renderer_cpu_share)

    async def catch_up() -> None:
        for kind in triggers:
            await report_round(kind)

    for kind, trigger in triggers.items():
        scheduler.add_job(_job(f"report_{kind}", lambda k=kind: report_round(k), running),
                          trigger, id=f"report_{kind}", **options)
    if triggers:
        first = datetime.now(UTC) + timedelta(seconds=settings.report_catchup_delay_seconds)
        scheduler.add_job(_job("report_catchup", catch_up, running), "interval",
                          id="report_catchup", seconds=_REPORT_CATCHUP_SECONDS,
                          next_run_time=first, **options)


def _add_directory_sync_job(scheduler: AsyncIOScheduler, settings: Settings, ledger: Ledger,
                            wecom: WeComClient, running: set[asyncio.Task]) -> None:
    """The directory sync on its cron schedule; the mapping file is read at
    each run, so an edit needs no restart (a broken one fails that run, logged)."""
    from bot.directory_sync import load_mapping, sync_directory

    async def sync_round() -> None:
        mapping = load_mapping(Path(settings.directory_sync_mapping))
        report = await sync_directory(wecom, mapping, ledger)
        if report.changed or report.skipped:
            log.info("directory_sync_report", report=str(report))

    scheduler.add_job(_job("directory_sync", sync_round, running),
                      report_trigger(settings.directory_sync_cron, settings.zone),
                      id="directory_sync", coalesce=True, max_instances=1,
                      misfire_grace_time=None)


async def scheduler_context(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx entry: run the jobs while the app runs (append after the ORM's
    and the WeChat Work client's, whose one client and pacing it shares)."""
    settings = app[SETTINGS]
    wecom = app[WECOM] if settings.wecom_configured else None
    transports = transports_for(settings, wecom, clock=app[CLOCK],
                                pusher=app.get(ROBOT_CONNECTION))
    # The first start is the deployment's first day: no reports of earlier periods.
    await first_day(app[CLOCK](), settings.zone)
    scheduler, running = start_scheduler(settings, app[LEDGER], app[CLOCK], transports,
                                         app[STORAGE], app[ATTACHMENTS])
    ledger, clock = app[LEDGER], app[CLOCK]

    async def mend_clocks() -> None:
        await ledger.mend_clocks(now=clock())

    # Once at start-up, in the background: clocks left running by an older
    # version (bot/ledger.py `mend_clocks`) stop showing as overdue.
    scheduler.add_job(_job("mend_clocks", mend_clocks, running, app[STORAGE]), "date",
                      id="mend_clocks")
    if wecom is not None and settings.directory_sync_cron and settings.directory_sync_mapping:
        _add_directory_sync_job(scheduler, settings, app[LEDGER], wecom, running)
    log.info("scheduler_started", media=sorted(transports),
             sweep_seconds=settings.sweep_interval_seconds,
             outbox_seconds=settings.outbox_interval_seconds)
    try:
        yield
    finally:
        scheduler.shutdown(wait=False)
        if running:
            await asyncio.wait(running, timeout=_SHUTDOWN_GRACE_SECONDS)
        for transport in transports.values():
            close = getattr(transport, "close", None)
            if close is not None:  # the SMTP connections kept open
                await close()
