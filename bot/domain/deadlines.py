"""The deadlines each state sets (R11-R18, R23, R9, R19).

`pending_deadlines` is a pure function of the ticket: after every change the
ledger stores exactly this set, so a change that makes a deadline moot cancels
it, and one that moves the clock (escalation, reopening) replaces it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bot.domain.enums import Category, Clock, Status
from bot.domain.ticket import Ticket
from bot.policy import Policy


@dataclass(frozen=True, order=True)
class Deadline:
    due_at: datetime
    clock: Clock


def pending_deadlines(ticket: Ticket, policy: Policy) -> list[Deadline]:
    """Every deadline the ticket should have pending now, soonest first."""
    found: list[Deadline] = []
    if ticket.major and ticket.major_since and ticket.major_acknowledged_at is None:
        found.append(Deadline(ticket.major_since + policy.major_warning, Clock.MAJOR_WARNING))
    if ticket.status.is_final:
        return sorted(found)
    if ticket.status is Status.RESOLVED:
        assert ticket.resolved_at is not None
        found.append(Deadline(ticket.resolved_at + policy.clocks.callback, Clock.CALLBACK))
        return sorted(found)
    if ticket.status is Status.STAGED_CLOSURE_PENDING:
        # The owner's clocks wait for the approver; only the approver is reminded.
        assert ticket.stage_requested_at is not None
        due = ticket.stage_requested_at + policy.staged_closure.decision_reminder
        found.append(Deadline(due, Clock.STAGED_DECISION))
        return sorted(found)

    start = ticket.owner_since
    if ticket.category is Category.GENERAL:
        clocks = policy.clocks.general
        if ticket.owner_responded_at is None:
            found.append(Deadline(start + clocks.response, Clock.RESPONSE))
        if ticket.owner_solution_at is None:
            found.append(Deadline(start + clocks.first_solution, Clock.FIRST_SOLUTION))
            found.append(Deadline(start + clocks.solution_email, Clock.SOLUTION_EMAIL))
        if ticket.followup_count == 0:
            found.append(Deadline(start + clocks.followup, Clock.FOLLOWUP))
        found.append(Deadline(start + clocks.resolution, Clock.RESOLUTION))
    else:
        owner = (
            policy.clocks.escalated
            if ticket.category is Category.ESCALATED
            else policy.clocks.important
        )
        if ticket.owner_responded_at is None:
            found.append(Deadline(start + owner.response, Clock.RESPONSE))
        if ticket.owner_solution_at is None:
            found.append(Deadline(start + owner.solution_email, Clock.SOLUTION_EMAIL))
    return sorted(found)
