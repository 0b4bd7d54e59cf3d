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
worker that dies mid-send leaves its rows "sending"; when the lease lapses
they are claimed again.

A round reads what its rows' messages need in one query per table and
renders only the parts each medium sends. Each recipient's rows go out in
order, many recipients at once (OUTBOX_CONCURRENCY per medium). Before
anything is rendered, a recipient with send limits (WeChat Work's: a group's
are those of the channel its posts take, see GroupTransport.room) is asked
for room: rows it has no room for wait their turn without using a try, their
wake-up spread a little. A busy group (its waiting notices would use more
than half of what its limit lets through in a minute) gets them merged into
one digest post (bot/render/digest.py), at most one every few seconds, so
its limit lasts the minute; the rows are marked "digested", and if the
digest fails they are retried from the database like any row.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import structlog
from tortoise.expressions import F, Q
from tortoise.transactions import in_transaction

from bot.metrics import OUTBOX_FAILURES
from bot.notify import DigestTransport, Transport
from bot.render.digest import digest_posts
from bot.render.notices import SHANGHAI, Prefetched, parts_for, render
from bot.settings import Settings
from bot.wecom.pacing import Room
from models import Notification

log = structlog.get_logger(__name__)

# What `complaintbot outbox list` shows: everything not yet delivered or given up.
UNDELIVERED = ("pending", "sending", "dead")
# A row delivered as a line of a group's digest post, not as a post of its own.
DIGESTED = "digested"
# Rows claimed per round. Each round waits for its slowest recipient before
# the next claims: a larger batch keeps more sends under way (200 drained
# bench/outbox.py's backlog faster than 100).
BATCH = 200
# A held row waits at least this long, and up to this fraction longer (jitter).
_HOLD_FLOOR_SECONDS = 1.0
_JITTER = 0.2


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
    digested: int = 0
    digests: int = 0
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


@dataclass
class _Round:
    """One delivery round's shared state: its clock and the rows' prefetched
    context."""

    stats: DeliveryStats
    now: datetime
    retry: RetryPolicy
    zone: ZoneInfo
    started: float
    prefetched: Prefetched

    async def record_sent(self, rows: list[Notification], status: str = "sent") -> None:
        """Mark rows delivered, at once: a crash after a send and before its
        record would send it again."""
        await Notification.filter(id__in=[r.id for r in rows]).update(
            status=status, sent_at=self.now, lease_until=None)


async def deliver_due(
    transports: Mapping[str, Transport],
    *,
    now: datetime,
    limit: int = BATCH,
    retry: RetryPolicy = RetryPolicy(),
    zone: ZoneInfo = SHANGHAI,
    concurrency: int = 8,
) -> DeliveryStats:
    """Deliver up to `limit` due notifications of the media that have a transport.

    Rows of a medium with no transport (e-mail without SMTP_HOST, say) stay
    pending until one is configured. Each recipient's rows go out in order;
    up to `concurrency` recipients of each medium are served at once."""
    stats = DeliveryStats()
    loop = asyncio.get_running_loop()
    # The lease runs from `now`: time is counted from before the claim, not
    # from after the reads that follow it, or a lease would look longer than it is.
    started = loop.time()
    rows = await _claim(list(transports), now, limit, retry.lease)
    stats.claimed = len(rows)
    if not rows:
        return stats
    lanes: dict[tuple[str, str], list[Notification]] = {}
    for row in rows:
        lanes.setdefault((row.medium, row.recipient), []).append(row)
    for medium, transport in transports.items():
        prepare = getattr(transport, "prepare", None)
        if prepare is not None:
            await prepare({recipient for m, recipient in lanes if m == medium})
    state = _Round(stats, now, retry, zone, started,
                   await Prefetched.load([r for r in rows if r.payload is None]))
    # Each medium in its own turns, side by side: a WeChat Work outage that
    # makes every call wait out its timeout does not hold back e-mail and SMS.
    # A transport that can only send so many at once (SMTP connections) says
    # so: rows wait here for a turn, where their lease is checked, not inside it.
    turns = {medium: asyncio.Semaphore(min(concurrency, getattr(t, "concurrency", concurrency)))
             for medium, t in transports.items()}
    await asyncio.gather(*(
        _deliver_lane(batch, transports[medium], turns[medium], state)
        for (medium, _), batch in lanes.items()
    ))
    return stats


async def deliver_backlog(
    transports: Mapping[str, Transport], *, clock: Callable[[], datetime], limit: int = BATCH,
    retry: RetryPolicy = RetryPolicy(), zone: ZoneInfo = SHANGHAI, concurrency: int = 8,
    rounds: int = 50,
) -> DeliveryStats:
    """Rounds back to back while each finds a full batch (at most `rounds`):
    a backlog drains at the speed of the sends, not one batch per tick."""
    total = DeliveryStats()
    for _ in range(rounds):
        stats = await deliver_due(transports, now=clock(), limit=limit, retry=retry, zone=zone,
                                  concurrency=concurrency)
        for name in ("claimed", "sent", "retrying", "paced", "dead", "digested", "digests"):
            setattr(total, name, getattr(total, name) + getattr(stats, name))
        total.errors.extend(stats.errors)
        if stats.claimed < limit:
            break
    return total


async def _deliver_lane(rows: list[Notification], transport: Transport,
                        turn: asyncio.Semaphore, state: _Round) -> None:
    """One recipient's rows, in order: those its limits hold back are put back
    unrendered; a busy group gets its waiting notices as one digest."""
    async with turn:
        rows = await _keep_lease(rows, state)
        if not rows:
            return
        paced = getattr(transport, "room", None)
        room = await paced(rows[0].recipient) if paced is not None else None
        if room is not None and room.free == 0:
            await _hold(rows, room.wait, state, spread=True)
            return
        if room is not None and hasattr(transport, "post_digest"):
            digestible = [r for r in rows
                          if r.payload is None and r.ticket_id is not None]  # type: ignore[attr-defined]
            if digestible and room.free - len(rows) < room.count / 2:
                if await _digest_in_turn(digestible, room, transport, state):  # type: ignore[arg-type]
                    rows = [r for r in rows if r not in digestible]
                    if not rows:
                        return
                    room = await paced(rows[0].recipient)  # type: ignore[misc]
        free = len(rows) if room is None else room.free
        for index, row in enumerate(rows):
            if index >= free:  # the room is used up: how long until the next
                wait = (await paced(row.recipient)).wait  # type: ignore[misc]
            elif index and not await _keep_lease([row], state):
                continue  # the send before was slow enough for another replica to take it
            else:
                wait = await _deliver_one(row, transport, state)
            if wait is not None:
                # The limit is reached, or the send was paced: this row and the rest wait.
                await _hold(rows[index:], wait, state, spread=True)
                return


async def _digest_in_turn(rows: list[Notification], room: Room, transport: DigestTransport,
                          state: _Round) -> bool:
    """A busy group: its posts as they are would leave less than half of its
    shortest window's limit. Its notices go out at most once every
    2 × window / limit (6 s for a webhook's 20 a minute, 4 s for the robot's
    30 pushes a minute into a chat), so the half left
    lasts the window and a post never waits for the window's end; when more
    than one waits, as one digest. Rows that come before their group's turn
    wait for it, all until the same moment, so they go out together. False
    when there is a single row whose turn it is (sent as it is)."""
    spacing = 2 * room.seconds / room.count
    if room.since_last is not None and room.since_last < spacing:
        await _hold(rows, spacing - room.since_last, state, spread=False)
        return True
    if len(rows) == 1:
        return False
    await _deliver_digest(rows, transport, state)
    return True


async def _keep_lease(rows: list[Notification], state: _Round) -> list[Notification]:
    """The rows still this worker's, as their turn comes: a round slow enough
    for their lease to lapse (an SMTP server that hangs) may have let another
    replica take them, and it sends them, not this one. When less than half
    the lease is left, the rows are renewed, and those the renewal took are
    the ones kept. A row's lease_until is the worker's token: the rows passed
    were claimed, and renewed, together (a lane's, or one of them)."""
    token = rows[0].lease_until
    ids = [r.id for r in rows]
    elapsed = timedelta(seconds=asyncio.get_running_loop().time() - state.started)
    left = token - (state.now + elapsed)  # type: ignore[operator]
    if left >= state.retry.lease / 2:
        ours = Notification.filter(id__in=ids, status="sending", lease_until=token)
        kept = set(await ours.values_list("id", flat=True))
    else:
        renewed = state.now + elapsed + state.retry.lease
        await Notification.filter(id__in=ids, status="sending", lease_until=token).update(
            lease_until=renewed)
        kept = set(await Notification.filter(id__in=ids, lease_until=renewed)
                   .values_list("id", flat=True))
        for row in rows:
            row.lease_until = renewed
    for row in rows:
        if row.id not in kept:
            log.warning("notification_lease_lost", id=row.id, kind=row.kind, medium=row.medium)
    return [row for row in rows if row.id in kept]


def _still_ours(rows: list[Notification]) -> Q:
    """The rows, as long as they are this worker's (a row's lease_until is its
    token): putting back one whose lease lapsed and another worker took, maybe
    sent already, would have it sent again."""
    by_token: dict[datetime | None, list[int]] = {}
    for row in rows:
        by_token.setdefault(row.lease_until, []).append(row.id)
    return Q(*(Q(id__in=ids, status="sending", lease_until=token)
               for token, ids in by_token.items()), join_type="OR")


async def _hold(rows: list[Notification], wait: float, state: _Round, *, spread: bool) -> None:
    """Put rows a limit holds back in the queue again, not counting the try,
    until the limit has room. With `spread`, their wake-up is a little later
    at random, so the rows of many recipients held at once do not all wake
    together."""
    if not rows:
        return
    if spread:
        wait = max(wait, _HOLD_FLOOR_SECONDS)
        wait += random.uniform(0, wait * _JITTER)
    state.stats.paced += len(rows)
    await Notification.filter(_still_ours(rows)).update(
        status="pending", next_attempt_at=state.now + timedelta(seconds=wait),
        lease_until=None, tries=F("tries") - 1,
    )
    log.info("notification_paced", ids=[r.id for r in rows], medium=rows[0].medium,
             retry_after=round(wait, 1))


async def _deliver_one(row: Notification, transport: Transport,
                       state: _Round) -> float | None:
    """Render and send one row and record what happened; when a rate limit
    held it back, the seconds to wait (the caller puts it and the rest back)."""
    try:
        message = await render(row, zone=state.zone, now=state.now, prefetched=state.prefetched,
                               parts=parts_for(row.medium))
        await transport.deliver(row, message)
    except Exception as exc:  # any failure of any adapter is recorded on the row
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            return float(retry_after)
        await _failed([row], exc, state)
        return None
    state.stats.sent += 1
    await state.record_sent([row])
    log.info("notification_sent", id=row.id, ticket=row.ticket_id,  # type: ignore[attr-defined]
             kind=row.kind, medium=row.medium, tries=row.tries)
    return None


async def _deliver_digest(rows: list[Notification], transport: DigestTransport,
                          state: _Round) -> None:
    """Merge a group's waiting notices into digest posts (as few as the
    markdown limit allows). A post that goes out marks its rows "digested";
    one that fails leaves its rows to be retried from the database, merged
    again with whatever waits then."""
    rendered: list[tuple[Notification, str]] = []
    for row in rows:
        try:
            message = await render(row, zone=state.zone, now=state.now,
                                   prefetched=state.prefetched, parts=parts_for(row.medium))
        except Exception as exc:  # a row that cannot be rendered fails alone
            await _failed([row], exc, state)
            continue
        rendered.append((row, message.markdown))
    posts = digest_posts([(row.ticket_id, markdown)  # type: ignore[attr-defined]
                          for row, markdown in rendered], transport.DIGEST_BYTES)
    for number, post in enumerate(posts):
        carried = [rendered[i][0] for i in post.carries]
        try:
            await transport.post_digest(carried[0].recipient, post.markdown)
        except Exception as exc:
            retry_after = getattr(exc, "retry_after", None)
            if retry_after is not None:
                rest = [rendered[i][0] for later in posts[number:] for i in later.carries]
                await _hold(rest, retry_after, state, spread=True)
                return
            await _failed(carried, exc, state)
            continue
        state.stats.digests += 1
        state.stats.digested += len(carried)
        await state.record_sent(carried, status=DIGESTED)
        log.info("notification_digest_sent", recipient=carried[0].recipient,
                 ids=[r.id for r in carried],
                 tickets=[r.ticket_id for r in carried])  # type: ignore[attr-defined]


async def _failed(rows: list[Notification], exc: Exception, state: _Round) -> None:
    """Record a failed try: back in the queue with backoff, or dead once
    retrying is used up or cannot help."""
    error = f"{type(exc).__name__}: {exc}"[:2000]
    stats, retry, now = state.stats, state.retry, state.now
    stats.errors.append(error)
    for row in rows:
        OUTBOX_FAILURES.labels(medium=row.medium).inc()
        if getattr(exc, "retryable", True) and not retry.exhausted(
            row.tries, row.created_at, now
        ):
            stats.retrying += 1
            await Notification.filter(_still_ours([row])).update(
                status="pending", next_attempt_at=now + retry.delay(row.tries),
                lease_until=None, last_error=error,
            )
            log.warning("notification_retry", id=row.id, kind=row.kind, medium=row.medium,
                        tries=row.tries, error=error)
        else:
            stats.dead += 1
            await Notification.filter(_still_ours([row])).update(
                status="dead", lease_until=None, last_error=error
            )
            log.error("notification_dead", id=row.id, kind=row.kind, medium=row.medium,
                      tries=row.tries, error=error)


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
