"""The one way in for every change to a ticket.

A chat command, an API call and a due deadline all end here: load the ticket
under a row lock, call a pure domain function, and store the new snapshot,
one history event, the deadlines the new state sets and the outbox rows of
the notices, all in one transaction. Nothing here sends anything.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import structlog
from tortoise.transactions import in_transaction

from bot.card_copies import refresh_copies
from bot.directory import recipients_for
from bot.domain.calendar import first_attempt
from bot.domain.deadlines import Deadline as DomainDeadline
from bot.domain.deadlines import pending_deadlines
from bot.domain.enums import Clock, Flag, Slot
from bot.domain.ticket import Actor, ContactAttempt, Outcome, Refused, Solution, Ticket
from bot.policy import Policy
from bot.policy_book import PolicyBook
from models import Deadline, Notification, TicketEvent
from models import Ticket as TicketRow

log = structlog.get_logger(__name__)

Transition = Callable[[Ticket], Outcome]

# Snapshot fields stored under another name or in another shape.
_SPECIAL = {"number", "policy_version", "flags", "attempts", "solution"}
_FIELDS = [f.name for f in dataclasses.fields(Ticket) if f.name not in _SPECIAL]


class NotFound(Refused):
    """No ticket with that number."""


def snapshot(row: TicketRow) -> Ticket:
    """The pure snapshot of a stored ticket."""
    values: dict[str, Any] = {name: getattr(row, name) for name in _FIELDS}
    values["number"] = row.id
    values["policy_version"] = row.policy_id  # type: ignore[attr-defined]
    values["flags"] = frozenset(Flag(f) for f in row.flags)
    values["attempts"] = tuple(
        ContactAttempt(at=datetime.fromisoformat(a["at"]), slot=Slot(a["slot"]))
        for a in row.attempts
    )
    values["solution"] = Solution(**row.solution) if row.solution else None
    return Ticket(**values)


def _row_values(ticket: Ticket) -> dict[str, Any]:
    values: dict[str, Any] = {name: getattr(ticket, name) for name in _FIELDS}
    values["policy_id"] = ticket.policy_version
    values["flags"] = sorted(f.value for f in ticket.flags)
    values["attempts"] = [{"at": a.at.isoformat(), "slot": a.slot.value} for a in ticket.attempts]
    values["solution"] = dataclasses.asdict(ticket.solution) if ticket.solution else None
    return values


def _dedupe_key(*parts: object) -> str:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()


class Ledger:
    """Applies transitions to stored tickets. One instance per process."""

    def __init__(self, policies: PolicyBook) -> None:
        self.policies = policies

    async def open(
        self, outcome: Outcome, *, actor: Actor, source: str, now: datetime
    ) -> Outcome:
        """Store a new ticket from a dispatch outcome; the result carries its number."""
        async with in_transaction():
            row = await TicketRow.create(**_row_values(outcome.ticket))
            outcome = dataclasses.replace(
                outcome, ticket=dataclasses.replace(outcome.ticket, number=row.id)
            )
            await self._record(row, outcome, actor=actor, source=source, now=now, cause=None)
        log.info("ticket_dispatched", ticket=row.id, category=row.category.value, source=source)
        return outcome

    async def apply(
        self,
        number: int,
        transition: Transition,
        *,
        actor: Actor,
        source: str,
        now: datetime,
        cause: tuple[Clock, datetime] | None = None,
    ) -> Outcome:
        """Apply one transition to ticket `number` atomically; Refused leaves it as it was."""
        # Whatever is logged while the ticket changes (notices, card copies) names it.
        with structlog.contextvars.bound_contextvars(ticket=number):
            return await self._apply(number, transition, actor=actor, source=source, now=now,
                                     cause=cause)

    async def _apply(
        self,
        number: int,
        transition: Transition,
        *,
        actor: Actor,
        source: str,
        now: datetime,
        cause: tuple[Clock, datetime] | None,
    ) -> Outcome:
        async with in_transaction():
            row = await TicketRow.select_for_update(no_key=True).get_or_none(id=number)
            if row is None:
                raise NotFound(f"没有编号为 #{number} 的投诉。")
            before = snapshot(row)
            outcome = transition(before)
            row.update_from_dict(_row_values(outcome.ticket))
            await row.save()
            event = await self._record(row, outcome, actor=actor, source=source, now=now,
                                       cause=cause)
            if outcome.ticket != before:
                # Cards already sent for the ticket show the change (bot/card_copies.py).
                await refresh_copies(number, event_id=event.id, now=now)
        log.info("ticket_changed", ticket=number, change=outcome.event, actor=actor.userid,
                 source=source, status=outcome.ticket.status.value)
        return outcome

    async def _record(
        self,
        row: TicketRow,
        outcome: Outcome,
        *,
        actor: Actor,
        source: str,
        now: datetime,
        cause: tuple[Clock, datetime] | None,
    ) -> TicketEvent:
        event = await TicketEvent.create(
            ticket=row,
            at=now,
            kind=outcome.event,
            actor=actor.userid,
            actor_name=actor.name,
            source=source,
            data=outcome.data,
        )
        policy = await self.policies.get(outcome.ticket.policy_version)
        await self._reconcile_deadlines(row, pending_deadlines(outcome.ticket, policy), now)
        origin = f"{cause[0].value}@{cause[1].isoformat()}" if cause else f"event{event.id}"
        await self._enqueue(row, event, outcome, origin, now, policy, by_deadline=bool(cause))
        return event

    async def _reconcile_deadlines(
        self, row: TicketRow, wanted: Iterable[DomainDeadline], now: datetime
    ) -> None:
        """Store exactly the wanted set: cancel the moot, add the new, keep the rest."""
        wanted_keys = {(d.clock, d.due_at) for d in wanted}
        existing = await Deadline.filter(ticket_id=row.id)
        have = {(d.clock, d.due_at) for d in existing}
        moot = [
            d.id
            for d in existing
            if d.state == "pending" and (d.clock, d.due_at) not in wanted_keys
        ]
        if moot:
            await Deadline.filter(id__in=moot).update(state="cancelled", finished_at=now)
        new = [
            Deadline(ticket_id=row.id, clock=clock, due_at=due_at)
            for clock, due_at in sorted(wanted_keys - have, key=lambda k: k[1])
        ]
        if new:
            await Deadline.bulk_create(new)

    async def _enqueue(
        self, row: TicketRow, event: TicketEvent, outcome: Outcome, origin: str, now: datetime,
        policy: Policy, *, by_deadline: bool,
    ) -> None:
        rows: list[Notification] = []
        for notice in outcome.notices:
            recipients = await recipients_for(notice.audience, notice.medium, outcome.ticket)
            if not recipients:
                log.warning("notice_unroutable", ticket=row.id, kind=notice.kind,
                            audience=notice.audience.value, medium=notice.medium.value)
            for recipient in recipients or [""]:
                rows.append(
                    Notification(
                        ticket_id=row.id,
                        event_id=event.id,
                        kind=notice.kind,
                        medium=notice.medium.value,
                        audience=notice.audience.value,
                        recipient=recipient,
                        dedupe_key=_dedupe_key(
                            row.id, origin, notice.kind, recipient, notice.medium
                        ),
                        status="pending" if recipient else "unroutable",
                        # Quiet hours hold e-mails and nudges back (bot/domain/calendar.py).
                        next_attempt_at=first_attempt(now, notice.medium, policy.calendar,
                                                      caused_by_deadline=by_deadline),
                        created_at=now,
                    )
                )
        if rows:
            await Notification.bulk_create(rows, ignore_conflicts=True)

