"""The outbox worker: deliver notification rows, none lost, none twice.

A change writes its notifications in its own transaction (bot.ledger). The
worker claims due rows in a short transaction (SKIP LOCKED on PostgreSQL, so
replicas take different rows), marking them "sending" under a lease, and
commits; only then does it render and send each one, outside any transaction
(SMTP or an HTTP call must never hold a lock or, on SQLite, the database).
The result is recorded per row: "sent", or back to "pending" with exponential
backoff, or "dead" once it has had OUTBOX_MAX_TRIES tries and been queued for
OUTBOX_GIVE_UP_AFTER_SECONDS (a day: a WeChat Work outage of hours must not
leave notices for a person to revive), or at once for an error that says
retrying cannot help. Dead rows show on /healthz, /metrics and /outbox. A
send a rate limit holds back (`retry_after`) waits its turn without using a
try. A worker that dies mid-send leaves its rows "sending"; when the
lease lapses they are claimed again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import structlog
from tortoise.expressions import F, Q
from tortoise.transactions import in_transaction

from bot.metrics import OUTBOX_FAILURES
from bot.notify import Transport
from bot.render.notices import SHANGHAI, render
from bot.settings import Settings
from models import Notification

log = structlog.get_logger(__name__)

# What `complaintbot outbox list` shows: everything not yet delivered or given up.
UNDELIVERED = ("pending", "sending", "dead")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a notification is tried."""

    max_tries: int = 8
    backoff: timedelta = timedelta(seconds=30)
    backoff_cap: timedelta = timedelta(hours=1)
    lease: timedelta = timedelta(minutes=5)
    give_up_after: timedelta = timedelta(hours=24)

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        """The OUTBOX_* settings."""
        return cls(
            max_tries=settings.outbox_max_tries,
            backoff=timedelta(seconds=settings.outbox_backoff_seconds),
            backoff_cap=timedelta(seconds=settings.outbox_backoff_cap_seconds),
            lease=timedelta(seconds=settings.outbox_lease_seconds),
            give_up_after=timedelta(seconds=settings.outbox_give_up_after_seconds),
        )

    def exhausted(self, tries: int, queued_at: datetime, now: datetime) -> bool:
        """True when a row that failed its `tries`-th try is given up: both
        the tries and the time since it was queued are used up."""
        return tries >= self.max_tries and now - queued_at >= self.give_up_after

    def delay(self, tries: int) -> timedelta:
        """The wait after the `tries`-th failed try: backoff, 2×, 4×, … up to the cap."""
        return min(self.backoff_cap, self.backoff * 2 ** max(0, tries - 1))


@dataclass
class DeliveryStats:
    """What one delivery round did."""

    claimed: int = 0
    sent: int = 0
    retrying: int = 0
    paced: int = 0
    dead: int = 0
    errors: list[str] = field(default_factory=list)


async def _claim(
    media: list[str], now: datetime, limit: int, lease: timedelta
) -> list[Notification]:
    """Take up to `limit` due rows for this worker; each claim counts as a try."""
    due = Q(status="pending", next_attempt_at__lte=now) | Q(status="sending", lease_until__lte=now)
    async with in_transaction():
        rows = await (
            Notification.filter(due, medium__in=media)
            .order_by("next_attempt_at", "id")
            .limit(limit)
            .select_for_update(skip_locked=True, no_key=True)
        )
        if rows:
            await Notification.filter(id__in=[r.id for r in rows]).update(
                status="sending", lease_until=now + lease, tries=F("tries") + 1
            )
    for row in rows:
        row.status, row.lease_until, row.tries = "sending", now + lease, row.tries + 1
    return rows


async def deliver_due(
    transports: Mapping[str, Transport],
    *,
    now: datetime,
    limit: int = 100,
    retry: RetryPolicy = RetryPolicy(),
    zone: ZoneInfo = SHANGHAI,
) -> DeliveryStats:
    """Deliver up to `limit` due notifications of the media that have a transport.

    Rows of a medium with no transport (e-mail without SMTP_HOST, say) stay
    pending until one is configured."""
    stats = DeliveryStats()
    rows = await _claim(list(transports), now, limit, retry.lease)
    stats.claimed = len(rows)
    by_medium: dict[str, list[Notification]] = {}
    for row in rows:
        by_medium.setdefault(row.medium, []).append(row)
    started = asyncio.get_running_loop().time()
    # Each medium in its own turn, side by side: a WeChat Work outage that
    # makes every call wait out its timeout does not hold back e-mail and SMS.
    await asyncio.gather(*(
        _deliver_in_turn(batch, transports[medium], stats, now=now, started=started,
                         retry=retry, zone=zone)
        for medium, batch in by_medium.items()
    ))
    return stats


async def _deliver_in_turn(
    rows: list[Notification], transport: Transport, stats: DeliveryStats, *, now: datetime,
    started: float, retry: RetryPolicy, zone: ZoneInfo,
) -> None:
    """Send rows of one medium one after another, recording each result."""
    loop = asyncio.get_running_loop()
    for row in rows:
        # The claim's lease counts from the claim: renew it as each row's turn
        # comes, so a slow round never lets another replica take, and send
        # again, rows still queued here. A row it took already is left to it.
        elapsed = timedelta(seconds=loop.time() - started)
        if not await Notification.filter(id=row.id, status="sending", tries=row.tries).update(
            lease_until=now + elapsed + retry.lease
        ):
            log.warning("notification_lease_lost", id=row.id, kind=row.kind, medium=row.medium)
            continue
        try:
            message = await render(row, zone=zone, now=now)
            await transport.deliver(row, message)
        except Exception as exc:  # any failure of any adapter is recorded on the row
            retry_after = getattr(exc, "retry_after", None)
            if retry_after is not None:
                # A rate limit's turn to wait (bot/wecom/pacing.py): back in the
                # queue until then, and not counted as a try.
                stats.paced += 1
                await Notification.filter(id=row.id).update(
                    status="pending", next_attempt_at=now + timedelta(seconds=retry_after),
                    lease_until=None, tries=F("tries") - 1,
                )
                log.info("notification_paced", id=row.id, kind=row.kind, medium=row.medium,
                         retry_after=round(retry_after, 1))
                continue
            error = f"{type(exc).__name__}: {exc}"[:2000]
            stats.errors.append(error)
            OUTBOX_FAILURES.labels(medium=row.medium).inc()
            if getattr(exc, "retryable", True) and not retry.exhausted(
                row.tries, row.created_at, now
            ):
                stats.retrying += 1
                await Notification.filter(id=row.id).update(
                    status="pending", next_attempt_at=now + retry.delay(row.tries),
                    lease_until=None, last_error=error,
                )
                log.warning("notification_retry", id=row.id, kind=row.kind, medium=row.medium,
                            tries=row.tries, error=error)
            else:
                stats.dead += 1
                await Notification.filter(id=row.id).update(
                    status="dead", lease_until=None, last_error=error
                )
                log.error("notification_dead", id=row.id, kind=row.kind, medium=row.medium,
                          tries=row.tries, error=error)
            continue
        stats.sent += 1
        await Notification.filter(id=row.id).update(status="sent", sent_at=now, lease_until=None)
        log.info("notification_sent", id=row.id, ticket=row.ticket_id,  # type: ignore[attr-defined]
                 kind=row.kind, medium=row.medium, tries=row.tries)


async def undelivered(limit: int = 200) -> list[Notification]:
    """Rows not (yet) delivered: pending, being sent, or dead; oldest first."""
    return await Notification.filter(status__in=UNDELIVERED).order_by("id").limit(limit)


async def revive(notification_id: int, *, now: datetime) -> bool:
    """Put a dead notification back in the queue with a fresh set of tries;
    False when there is no dead row with that id."""
    changed = await Notification.filter(id=notification_id, status="dead").update(
        status="pending", tries=0, next_attempt_at=now, lease_until=None
    )
    return changed > 0
