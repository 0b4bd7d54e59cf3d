"""The clock: apply every deadline that has fallen due, exactly once.

Deadlines are rows (models.Deadline), written by the ledger with every change.
A sweep takes the due ones oldest first and applies them through the ledger,
like any other change, in transactions of up to 25 deadlines (of distinct
tickets) that also mark the rows applied. So a sweep that runs again, or late
after downtime, applies each deadline once: one action per deadline, never one
per missed tick. Batching is what makes a sweep cheap (about 1 ms per deadline
on this 2-core machine, bench/RESULTS.md); a batch that fails unexpectedly is
retried one deadline at a time, so a row that cannot be applied is logged and
passed over without holding back the rest.

Two replicas may sweep at the same time on PostgreSQL. Each transaction first
locks its tickets with SKIP LOCKED (the tickets, not the deadlines: commands
lock the ticket and then touch its deadlines, and taking the locks in the same
order means a sweep and a command never deadlock), then re-reads the
deadlines: one the other replica applied meanwhile is no longer pending and is
left alone. A deadline whose ticket is busy is looked at again before the
sweep ends. On SQLite one process is the rule.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from tortoise.transactions import in_transaction

from bot.db import fetch_rows
from bot.domain.enums import Clock, Status
from bot.domain.ticket import SYSTEM, Refused
from bot.domain.transitions import deadline_due
from bot.ledger import Change, Ledger, UnderPolicy, snapshot
from models import Deadline
from models import Ticket as TicketRow

log = structlog.get_logger(__name__)

# Rows passed over because their ticket was locked are looked at again this
# many times in one sweep, after a short pause; what is still busy waits for
# the next sweep.
_ROUNDS = 3
_PAUSE_SECONDS = 0.05
# Due rows fetched per query, and applied per transaction: a transaction holds
# its tickets (and on SQLite the database) for a few ms per deadline.
_BATCH = 100
_PER_TRANSACTION = 25


@dataclass(frozen=True)
class SweepAction:
    """One deadline the sweep dealt with: `applied` through the ledger (`detail`
    is the history event), or `refused` when the rules no longer allow it
    (`detail` is why; the row is finished as "refused", not retried forever)."""

    deadline_id: int
    ticket: int
    clock: Clock
    due_at: datetime
    result: str
    detail: str
    status: Status

    def describe(self) -> str:
        """One line for people: `#1024 响应 due 2026-03-02T03:00:00+00:00: applied …`."""
        return (f"#{self.ticket} {self.clock.label} due {self.due_at.isoformat()}: "
                f"{self.result} {self.detail} → {self.status.label}")


async def sweep(ledger: Ledger, *, now: datetime, limit: int = 500,
                on_progress: Callable[[int], None] | None = None) -> list[SweepAction]:
    """Apply up to `limit` deadlines due at `now`, oldest first; return what was
    done. `on_progress` is told the number done after each batch (the CLI's
    progress line)."""
    actions: list[SweepAction] = []
    # Tickets passed over: another transaction held them just now, or one of
    # their deadlines failed. None of their deadlines is applied in the rest of
    # the round, so a later one never overtakes an earlier one (a resolution
    # escalating before the follow-up nudge would make that nudge moot).
    passed: set[int] = set()
    for round_ in range(_ROUNDS):
        if round_:
            if not passed:
                break
            # Their tickets were busy (a command, another replica): look once more.
            passed.clear()
            await asyncio.sleep(_PAUSE_SECONDS)
        while len(actions) < limit:
            # One query per batch, not per deadline: each row is re-read under its
            # ticket's lock before it is applied, so a stale batch applies nothing twice.
            batch = await (
                Deadline.filter(state="pending", due_at__lte=now)
                .exclude(ticket_id__in=passed)
                .order_by("due_at", "id")
                .limit(min(_BATCH, limit - len(actions)))
                .values_list("id", "ticket_id")
            )
            if not batch:
                break
            # One deadline per ticket per transaction, the oldest: a later one of
            # the same ticket is chosen again next batch, when the first one's
            # change may have made it moot.
            chosen: dict[int, int] = {}
            for deadline_id, number in batch:
                chosen.setdefault(number, deadline_id)
            numbers = list(chosen)
            for start in range(0, len(numbers), _PER_TRANSACTION):
                part = {n: chosen[n] for n in numbers[start:start + _PER_TRANSACTION]}
                done, busy = await _apply_isolated(ledger, part, now)
                actions.extend(done)
                passed.update(busy)
                if on_progress is not None:
                    on_progress(len(actions))
    return actions


async def _apply_isolated(
    ledger: Ledger, chosen: dict[int, int], now: datetime
) -> tuple[list[SweepAction], list[int]]:
    """Apply a batch; when it fails unexpectedly, apply its deadlines one by
    one, so one that cannot be applied is logged and its ticket passed over,
    and does not hold back the others. Returns what was done and the tickets
    passed over."""
    try:
        return await _apply_batch(ledger, chosen, now)
    except Exception:
        if len(chosen) == 1:
            (number, deadline_id), = chosen.items()
            log.exception("deadline_failed", ticket=number, deadline=deadline_id)
            return [], [number]
    actions: list[SweepAction] = []
    passed: list[int] = []
    for number, deadline_id in chosen.items():
        done, busy = await _apply_isolated(ledger, {number: deadline_id}, now)
        actions.extend(done)
        passed.extend(busy)
    return actions, passed


def _breach(clock: Clock, due_at: datetime, now: datetime) -> UnderPolicy:
    return UnderPolicy(lambda ticket, policy: deadline_due(ticket, clock, due_at, policy, now))


async def _apply_batch(
    ledger: Ledger, chosen: dict[int, int], now: datetime
) -> tuple[list[SweepAction], list[int]]:
    """Deadlines of distinct tickets (ticket → deadline id) in one transaction:
    what was done, and the tickets another transaction held.
    A deadline no longer pending (a replica applied it, or a change since it
    was chosen made it moot) is left alone."""
    async with in_transaction():
        locked = {
            row.id: row
            for row in await TicketRow.filter(id__in=list(chosen)).select_for_update(
                skip_locked=True, no_key=True)
        }
        busy = [number for number in chosen if number not in locked]
        # Read again under the tickets' locks. By id alone: with `state` in the
        # query SQLite walks the (state, due_at) index over every pending row.
        pending = {
            d.id: d
            for d in await Deadline.filter(id__in=[chosen[number] for number in locked])
            if d.state == "pending"
        }
        changes = [
            Change(number, _breach(deadline.clock, deadline.due_at, now),
                   cause=(deadline.clock, deadline.due_at))
            for number in locked
            if (deadline := pending.get(chosen[number])) is not None
        ]
        results = await ledger.apply_many(changes, actor=SYSTEM, source="clock", now=now)
        actions: list[SweepAction] = []
        for change in changes:
            deadline = pending[chosen[change.number]]
            result = results[change.number]
            if isinstance(result, Refused):
                actions.append(SweepAction(deadline.id, change.number, deadline.clock,
                                           deadline.due_at, "refused", result.reason,
                                           snapshot(locked[change.number]).status))
            else:
                actions.append(SweepAction(deadline.id, change.number, deadline.clock,
                                           deadline.due_at, "applied", result.event,
                                           result.ticket.status))
        # Applied: the ticket runs on (overdue) unless the change's reconcile
        # cancelled the row as moot (an escalation replaces every clock), then
        # it was applied and is over: ended. A refused one is finished too,
        # not retried forever.
        applied_ids = [a.deadline_id for a in actions if a.result == "applied"]
        if applied_ids:
            await fetch_rows(
                "UPDATE deadline SET state = CASE state WHEN 'cancelled' THEN 'ended' "
                "ELSE 'applied' END, finished_at = ? "
                f"WHERE id IN ({', '.join('?' * len(applied_ids))})", [now, *applied_ids])
        refused_ids = [a.deadline_id for a in actions if a.result == "refused"]
        if refused_ids:
            await Deadline.filter(id__in=refused_ids).update(state="refused", finished_at=now)
    for a in actions:
        if a.result == "applied":
            log.info("deadline_applied", ticket=a.ticket, clock=a.clock.value,
                     due_at=a.due_at.isoformat(),
                     late_seconds=int((now - a.due_at).total_seconds()))
        else:
            log.warning("deadline_refused", ticket=a.ticket, clock=a.clock.value,
                        due_at=a.due_at.isoformat(), reason=a.detail)
    return actions, busy


async def oldest_overdue(now: datetime) -> timedelta | None:
    """How long the oldest due deadline has waited unapplied; None when none waits."""
    oldest = await (
        Deadline.filter(state="pending", due_at__lte=now)
        .order_by("due_at")
        .first()
        .values_list("due_at", flat=True)
    )
    return now - oldest if oldest is not None else None
