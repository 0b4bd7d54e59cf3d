"""Scheduled reports (R24): each week and each month, every dealer group gets
its dealer's figures, every region group its dealers ranked, HQ the regions;
the managers of each get the workbook by e-mail. Each report goes out once per
period, across restarts and replicas.

A run works out the period whose delivery time has come (the last one the cron
schedule fired for), and for every scope someone receives (a group bound to it
or a manager with an e-mail address) that has no `ReportRun` for the period
yet: computes and renders the report outside any transaction (every unit's
figures at once, in a child process, see below), then in one transaction
stores the run with its outbox rows (markdown and chart for each
group, the workbook for each manager). The run's unique key is the claim: when
another replica committed the same report first, the insert fails and this
one's work is dropped and it leaves the rest of the period to the other.
Sending is the outbox worker's, with its retries.

Because a run only does what is missing, running it again is harmless: the
scheduler also runs it at start-up and hourly, which delivers a report missed
while the bot was down, or one whose computation failed.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import multiprocessing
import os
import resource
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ProcessPoolExecutor
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import structlog
from apscheduler.triggers.cron import CronTrigger
from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from bot.db import current_database_url, open_database
from bot.domain.enums import Role
from bot.domain.policy import Policy
from bot.reports.figures import (
    Kind,
    Limits,
    Period,
    PeriodFigures,
    Reach,
    Scope,
    history_of,
    parse_period,
    period_figures,
    ticket_pages,
    volume_histories,
)
from bot.reports.render import ReportBook, chart, markdown_summary
from models import Deployment, GroupChat, Notification, ReportRun, Staff, Ticket

log = structlog.get_logger(__name__)

# Who is e-mailed the workbook of each level of report.
MANAGER_ROLES: dict[str, tuple[Role, ...]] = {
    "dealer": (Role.DEALER_MANAGER, Role.DEALER_GM),
    "region": (Role.SECOND_LEVEL_MANAGER, Role.SENIOR_MANAGER),
    "brand": (Role.SECOND_LEVEL_MANAGER, Role.SENIOR_MANAGER),  # HQ's own (no region)
}
# Which groups receive each level of report.
_GROUP_KIND = {"dealer": "dealer", "region": "region", "hq": "brand"}
_LEVEL_ORDER = {"dealer": 0, "region": 1, "brand": 2}
# A group robot's markdown message holds at most 4096 bytes.
MARKDOWN_MAX_BYTES = 4096
# The longest a schedule may go without firing and still be caught up with.
_LOOKBACK = timedelta(days=40)
# The renderer's CPU priority below the bot's (nice increment): callbacks first.
_RENDERER_NICENESS = 10
_T = TypeVar("_T")


def report_trigger(crontab: str, zone: ZoneInfo) -> CronTrigger:
    """The schedule of one kind of report: a crontab line in the configured zone."""
    return CronTrigger.from_crontab(crontab, timezone=zone)


def due_period(kind: Kind, trigger: CronTrigger, now: datetime, zone: ZoneInfo
               ) -> Period | None:
    """The period whose report is due at `now`: the last complete one as of the
    schedule's latest firing (None when it did not fire in the last 40 days).
    Before Monday 09:00 that is still the week before last, already sent."""
    fired = None
    upcoming = trigger.get_next_fire_time(None, now - _LOOKBACK)
    while upcoming is not None and upcoming <= now:
        fired = upcoming
        upcoming = trigger.get_next_fire_time(upcoming, upcoming + timedelta(seconds=1))
    return parse_period(kind, None, fired, zone) if fired else None


@dataclass
class Audience:
    """Who receives one scope's report."""

    groups: list[str] = field(default_factory=list)  # chatids
    emails: list[str] = field(default_factory=list)


async def audiences() -> dict[Scope, Audience]:
    """Every scope with a group bound to it or a manager with an e-mail address,
    dealers first, then regions, then the brand."""
    found: dict[Scope, Audience] = {}
    groups = await GroupChat.filter(kind__in=list(_GROUP_KIND)).order_by("id").values(
        "chatid", "kind", "dealer__code", "region__code")
    for group in groups:
        level = _GROUP_KIND[group["kind"]]
        code = group[f"{level}__code"] if level != "brand" else ""
        if code is None:
            continue  # a dealer or region group not bound yet
        found.setdefault(Scope(level, code), Audience()).groups.append(  # type: ignore[arg-type]
            group["chatid"])
    roles = {role for level_roles in MANAGER_ROLES.values() for role in level_roles}
    managers = await Staff.filter(~Q(email=""), active=True, role__in=roles).order_by(
        "id").values("email", "role", "dealer__code", "region__code")
    for person in managers:
        dealer, region = person["dealer__code"], person["region__code"]
        scope = (Scope("dealer", dealer) if dealer else
                 Scope("region", region) if region else Scope("brand"))
        if person["role"] in MANAGER_ROLES[scope.level]:
            emails = found.setdefault(scope, Audience()).emails
            if person["email"] not in emails:
                emails.append(person["email"])
    return dict(sorted(found.items(), key=lambda item: (_LEVEL_ORDER[item[0].level],
                                                         item[0].code)))


@dataclass
class ReportStats:
    """What one run did: reports stored for delivery, already there, taken by
    another replica meanwhile (then it stops), failed to compute."""

    delivered: list[str] = field(default_factory=list)
    already: int = 0
    lost: int = 0
    failed: list[str] = field(default_factory=list)
    renderer_peak_mb: float | None = None  # the renderer process's peak memory


# -- the renderer process ----------------------------------------------------
#
# A run's figures, ticket lists, charts and workbooks are made in one child
# process with its own database connection: the grouped queries (seconds at
# 100,000 tickets), the ticket rows (a brand's month is 100,000+) and the
# drawing would otherwise hold the bot's event loop, its GIL and, on SQLite,
# its one connection away from callbacks, and the rows its memory. The child
# runs at a lower CPU priority, so callbacks come first on a busy machine.
# The bot only receives each scope's finished parts and stores them.


@dataclass
class _Session:
    """The state of one report run inside the renderer process: its own
    event loop and ORM context, and every unit's figures and history."""

    loop: asyncio.AbstractEventLoop
    context: contextvars.Context
    database: AsyncExitStack
    period: Period
    zone: ZoneInfo
    cpu_share: float = 1.0
    figures: PeriodFigures | None = None
    histories: dict[Scope, list[tuple[str, dict[str, int]]]] = field(default_factory=dict)

    def run(self, work: Coroutine[Any, Any, _T]) -> _T:
        """Run a coroutine on the session's loop, in its ORM context."""
        return self.loop.run_until_complete(self.loop.create_task(work, context=self.context))

    def rest(self, since: float) -> None:
        """Pause after the work begun at `since` (time.monotonic) so that the
        run uses at most `cpu_share` of the time: on a machine whose cores
        are all busy, even a niced process slows the bot's callbacks."""
        if self.cpu_share < 1:
            time.sleep((time.monotonic() - since) * (1 / self.cpu_share - 1))


_session: _Session | None = None  # in the renderer process: the run under way


def _open_session(database_url: str, period: Period, limits: Limits, zone: ZoneInfo,
                  now: datetime, cpu_share: float) -> None:
    """(Renderer process.) Open the database and compute every unit's figures
    of `period` and its history, in a fixed number of grouped queries."""
    global _session
    session = _Session(asyncio.new_event_loop(), contextvars.copy_context(), AsyncExitStack(),
                       period, zone, cpu_share)

    async def start() -> None:
        await session.database.enter_async_context(open_database(database_url, migrate=False))
        session.figures = await period_figures(period, limits, zone, Reach.everything(), now=now)
        session.histories = await volume_histories(period, zone, Reach.everything())

    _session = session
    since = time.monotonic()
    session.run(start())
    session.rest(since)


def _render_scope(scope: Scope) -> tuple[str, str, bytes, bytes]:
    """(Renderer process.) One scope's name, markdown, chart and workbook; the
    workbook's ticket rows stream from the database to its file a page at a time."""
    session = _session
    assert session is not None and session.figures is not None, "no report run is open"
    figures = session.figures.of(scope)
    history = history_of(session.histories, scope, session.period, session.zone)

    async def workbook() -> bytes:
        book = ReportBook(figures, session.zone)
        async for page in ticket_pages(session.period, scope):
            since = time.monotonic()
            book.add_tickets(page)
            session.rest(since)
        return book.finish()

    since = time.monotonic()
    png = chart(figures, history)
    session.rest(since)
    return (figures.scope_name, markdown_summary(figures, max_bytes=MARKDOWN_MAX_BYTES), png,
            session.run(workbook()))


def _close_session() -> float:
    """(Renderer process.) Close the run's database connection and loop;
    return the process's peak resident memory in MB (for the log)."""
    global _session
    session, _session = _session, None
    if session is not None:
        session.run(session.database.aclose())
        session.loop.close()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KB


def _renderer() -> ProcessPoolExecutor:
    """One process for a run's reports (see above). Spawned, not forked: the
    bot has threads."""
    return ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                               initializer=os.nice, initargs=(_RENDERER_NICENESS,))


async def _in_renderer(renderer: ProcessPoolExecutor, work: Callable[..., _T], *args: Any
                       ) -> _T:
    """Run `work(*args)` in the renderer process. Submitted from a thread: the
    first submission starts the process, which takes the caller ~0.2 s."""
    future = await asyncio.to_thread(renderer.submit, work, *args)
    return await asyncio.wrap_future(future)


def _dedupe_key(run: str, part: str, medium: str, recipient: str) -> str:
    key = f"report:{run}:{part}:{medium}:{recipient}"
    if len(key) > 255:  # a very long e-mail address: its digest names it
        key = f"report:{run}:{part}:{medium}:{hashlib.sha256(recipient.encode()).hexdigest()}"
    return key


async def _claim(period: Period, scope: Scope, audience: Audience, parts: tuple[str, bytes,
                 bytes], name: str, now: datetime) -> bool:
    """Store the run and its outbox rows in one transaction; False when another
    replica stored this report first."""
    markdown, png, xlsx = parts
    try:
        async with in_transaction():
            run = await ReportRun.create(
                kind=period.kind, period=period.label, scope_level=scope.level,
                scope_code=scope.code, scope_name=name, created_at=now, markdown=markdown,
                chart_png=png, workbook_xlsx=xlsx)
            # The run's id keeps a report stored afresh (its run deleted to
            # send it again, see docs/runbook.md) apart from the first one.
            label = f"{run.id}:{period.kind}:{period.label}:{scope}"
            sends = [("markdown", "group", chatid) for chatid in audience.groups]
            sends += [("image", "group", chatid) for chatid in audience.groups]
            sends += [("workbook", "email", address) for address in audience.emails]
            await Notification.bulk_create([
                Notification(kind=f"report_{period.kind}", medium=medium,
                             audience="group" if medium == "group" else "managers",
                             recipient=recipient,
                             dedupe_key=_dedupe_key(label, part, medium, recipient),
                             next_attempt_at=now, created_at=now,
                             payload={"report_run": run.id, "part": part})
                for part, medium, recipient in sends
            ])
    except IntegrityError:
        return False
    return True


async def first_day(now: datetime, zone: ZoneInfo) -> date:
    """The deployment's first day, stored the first time it is asked for (at
    start-up): the day of the oldest ticket when there are tickets (a bot
    upgraded in service keeps its reports), else today."""
    stored = await Deployment.get_or_none(id=1)
    if stored is not None:
        return stored.first_day
    oldest = await Ticket.all().order_by("dispatched_at").first().values("dispatched_at")
    day = min(now, oldest["dispatched_at"] if oldest else now).astimezone(zone).date()
    try:
        await Deployment.create(id=1, first_day=day, created_at=now)
    except IntegrityError:
        pass  # another replica stored it first: its day stands
    return (await Deployment.get(id=1)).first_day


async def deliver_reports(period: Period, *, now: datetime, policy: Policy, zone: ZoneInfo,
                          cpu_share: float = 1.0) -> ReportStats:
    """Store, for the outbox to send, every report of `period` not stored yet;
    none for a period that ended before the deployment's first day. The
    renderer uses at most `cpu_share` of one CPU (REPORT_RENDERER_CPU_SHARE)."""
    stats = ReportStats()
    if period.last_day < await first_day(now, zone):
        return stats
    done = set(await ReportRun.filter(kind=period.kind, period=period.label).values_list(
        "scope_level", "scope_code"))
    scopes = await audiences()
    todo = [(scope, audience) for scope, audience in scopes.items()
            if (scope.level, scope.code) not in done]
    stats.already = len(scopes) - len(todo)
    if not todo:
        return stats
    renderer = _renderer()
    try:
        await _in_renderer(renderer, _open_session, current_database_url(), period,
                           Limits.of(policy), zone, now, cpu_share)
    except Exception:
        log.exception("report_failed", kind=period.kind, period=period.label, scope="*")
        stats.failed.extend(str(scope) for scope, _ in todo)
    else:
        try:
            await _deliver_each(todo, period, now=now, stats=stats, renderer=renderer)
        finally:
            stats.renderer_peak_mb = round(await _in_renderer(renderer, _close_session), 1)
    finally:
        await asyncio.to_thread(renderer.shutdown)  # joins the process: not on the loop
    if stats.delivered or stats.failed:
        log.info("reports_stored", kind=period.kind, period=period.label,
                 delivered=len(stats.delivered), already=stats.already, lost=stats.lost,
                 failed=stats.failed, renderer_peak_mb=stats.renderer_peak_mb)
    return stats


async def _deliver_each(todo: list[tuple[Scope, Audience]], period: Period, *, now: datetime,
                        stats: ReportStats, renderer: ProcessPoolExecutor) -> None:
    for scope, audience in todo:
        try:
            name, *parts = await _in_renderer(renderer, _render_scope, scope)
        except Exception:  # one scope's failure must not hold back the others
            log.exception("report_failed", kind=period.kind, period=period.label,
                          scope=str(scope))
            stats.failed.append(str(scope))
            continue
        if not await _claim(period, scope, audience, tuple(parts), name, now):
            # Another replica is going through this period too, in the same
            # order: leave the rest to it (if it dies, the next check resumes).
            stats.lost += 1
            log.info("reports_left_to_another_replica", kind=period.kind, period=period.label,
                     scope=str(scope))
            break
        stats.delivered.append(str(scope))
