"""The deadlines each state sets (R11-R18, R23, R9, R19, the store's confirmation).

`pending_deadlines` is a pure function of the ticket: after every change the
ledger stores exactly this set, so a change that makes a deadline moot cancels
it, and one that moves the clock (escalation, reopening) replaces it. Clocks
the policy's business calendar names count working time only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.domain.calendar import add_working_time
from bot.domain.enums import Category, Clock, Source, Status
from bot.domain.policy import Policy
from bot.domain.ticket import Ticket


@dataclass(frozen=True, order=True)
class Deadline:
    due_at: datetime
    clock: Clock


def _after(start: datetime, duration: timedelta, clock: Clock, policy: Policy) -> Deadline:
    """The deadline `duration` after `start`: working time for the clocks the
    calendar names, elapsed time for the others."""
    if clock in policy.calendar.working_time_clocks:
        return Deadline(add_working_time(start, duration, policy.calendar), clock)
    return Deadline(start + duration, clock)


def pending_deadlines(ticket: Ticket, policy: Policy) -> list[Deadline]:
    """Every deadline the ticket should have pending now, soonest first."""
    found: list[Deadline] = []
    if ticket.major and ticket.major_since and ticket.major_acknowledged_at is None:
        found.append(_after(ticket.major_since, policy.major_warning, Clock.MAJOR_WARNING, policy))
    if ticket.status.is_final:
        return sorted(found)
    if ticket.source is Source.STORE and ticket.confirmed_at is None:
        # 4S-store rules: the call centre confirms what a store recorded itself.
        found.append(_after(ticket.dispatched_at, policy.store_confirm, Clock.STORE_CONFIRM,
                            policy))
    if ticket.status is Status.RESOLVED:
        assert ticket.resolved_at is not None
        found.append(_after(ticket.resolved_at, policy.clocks.callback, Clock.CALLBACK, policy))
        return sorted(found)
    if ticket.status is Status.STAGED_CLOSURE_PENDING:
        # The owner's clocks wait for the approver; only the approver is reminded.
        assert ticket.stage_requested_at is not None
        reminder = policy.staged_closure.decision_reminder
        found.append(_after(ticket.stage_requested_at, reminder, Clock.STAGED_DECISION, policy))
        return sorted(found)

    start = ticket.owner_since
    if ticket.category is Category.GENERAL:
        clocks = policy.clocks.general
        if ticket.owner_responded_at is None:
            found.append(_after(start, clocks.response, Clock.RESPONSE, policy))
        if ticket.owner_solution_at is None:
            found.append(_after(start, clocks.first_solution, Clock.FIRST_SOLUTION, policy))
            found.append(_after(start, clocks.solution_email, Clock.SOLUTION_EMAIL, policy))
        if ticket.followup_count == 0:
            found.append(_after(start, clocks.followup, Clock.FOLLOWUP, policy))
        found.append(_after(start, clocks.resolution, Clock.RESOLUTION, policy))
        if ticket.no_agreement_at is not None:
            found.append(_after(ticket.no_agreement_at, policy.no_agreement.decide_within,
                                Clock.NO_AGREEMENT, policy))
    else:
        owner = (
            policy.clocks.escalated
            if ticket.category is Category.ESCALATED
            else policy.clocks.important
        )
        if ticket.owner_responded_at is None:
            found.append(_after(start, owner.response, Clock.RESPONSE, policy))
        if ticket.owner_solution_at is None:
            found.append(_after(start, owner.solution_email, Clock.SOLUTION_EMAIL, policy))
    return sorted(found)
