"""The clock: apply every deadline that has fallen due, exactly once.

Deadlines are rows (models.Deadline), written by the ledger with every change.
A sweep takes the due ones oldest first and applies each through the ledger,
like any other change, in one transaction that also marks the row applied. So
a sweep that runs again, or late after downtime, applies each deadline once:
one action per deadline, never one per missed tick.

Two replicas may sweep at the same time on PostgreSQL. Each deadline's
transaction first locks its ticket with SKIP LOCKED (the ticket, not the
deadline: commands lock the ticket and then touch its deadlines, and taking
the locks in the same order means a sweep and a command never deadlock), then
re-reads the deadline: if the other replica applied it meanwhile, it is no
longer pending and is left alone. A deadline whose ticket is busy is looked at
again before the sweep ends. On SQLite one process is the rule.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import structlog
from tortoise.transactions import in_transaction

from bot.domain.enums import Clock, Status
from bot.domain.ticket import SYSTEM, Refused
from bot.domain.transitions import deadline_due
from bot.ledger import Ledger, snapshot
from models import Deadline
from models import Ticket as TicketRow

log = structlog.get_logger(__name__)

# Rows passed over because their ticket was locked are looked at again this
# many times in one sweep, after a short pause; what is still busy waits for
# the next sweep.
_ROUNDS = 3
_PAUSE_SECONDS = 0.05
# Due rows fetched per query.
_BATCH = 100


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


async def sweep(ledger: Ledger, *, now: datetime, limit: int = 500) -> list[SweepAction]:
    """Apply up to `limit` deadlines due at `now`, oldest first; return what was done."""
    actions: list[SweepAction] = []
    passed: list[int] = []  # due rows whose ticket another transaction held just now
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
                .exclude(id__in=passed)
                .order_by("due_at", "id")
                .limit(min(_BATCH, limit - len(actions)))
                .values_list("id", "ticket_id")
            )
            if not batch:
                break
            for deadline_id, number in batch:
                action = await _apply_one(ledger, deadline_id, number, now)
                if action == "busy":
                    passed.append(deadline_id)
                elif action != "gone":
                    actions.append(action)
    return actions


async def _apply_one(
    ledger: Ledger, deadline_id: int, number: int, now: datetime
) -> SweepAction | Literal["busy", "gone"]:
    """One deadline in one transaction: "busy" when another transaction holds
    its ticket, "gone" when it is no longer pending (applied by a replica, or
    made moot by a change since it was chosen)."""
    async with in_transaction():
        locked = await (
            TicketRow.filter(id=number).select_for_update(skip_locked=True, no_key=True).first()
        )
        if locked is None:
            return "busy"
        # Read again under the ticket's lock: a replica may have applied it, or a
        # command made it moot, since the candidate was chosen.
        row = await Deadline.filter(id=deadline_id, state="pending").first()
        if row is None:
            return "gone"
        ticket = snapshot(locked)
        policy = await ledger.policies.get(ticket.policy_version)
        clock, due_at = row.clock, row.due_at
        try:
            outcome = await ledger.apply(
                number,
                lambda t: deadline_due(t, clock, due_at, policy, now),
                actor=SYSTEM,
                source="clock",
                now=now,
                cause=(clock, due_at),
            )
        except Refused as exc:
            log.warning("deadline_refused", ticket=number, clock=clock.value,
                        due_at=due_at.isoformat(), reason=exc.reason)
            await Deadline.filter(id=deadline_id).update(state="refused", finished_at=now)
            return SweepAction(deadline_id, number, clock, due_at, "refused", exc.reason,
                               ticket.status)
        # The ledger's reconcile may have cancelled this row as moot (an escalation
        # replaces every clock); it was applied, and says so.
        await Deadline.filter(id=deadline_id).update(state="applied", finished_at=now)
    log.info("deadline_applied", ticket=number, clock=clock.value, due_at=due_at.isoformat(),
             late_seconds=int((now - due_at).total_seconds()))
    return SweepAction(deadline_id, number, clock, due_at, "applied", outcome.event,
                       outcome.ticket.status)


async def oldest_overdue(now: datetime) -> timedelta | None:
    """How long the oldest due deadline has waited unapplied; None when none waits."""
    oldest = await (
        Deadline.filter(state="pending", due_at__lte=now)
        .order_by("due_at")
        .first()
        .values_list("due_at", flat=True)
    )
    return now - oldest if oldest is not None else None
