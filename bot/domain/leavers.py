"""What becomes of a ticket when a person who works on it leaves the company
(directory sync): the region is told, and a ticket assigned to the leaver is
handed on as `leavers.reassign` in bot/policy.yaml says."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from bot.domain.enums import OwnerLevel, Role
from bot.domain.permissions import Action, may
from bot.domain.ticket import Actor, Audience, Medium, Notice, Outcome, Refused, Ticket

_HANDLER = {OwnerLevel.DEALER: Role.DEALER_STAFF, OwnerLevel.REGION: Role.REGION_STAFF,
            OwnerLevel.HQ: Role.HQ_STAFF}


def successor(ticket: Ticket, candidates: Sequence[Actor], leaver: str) -> Actor | None:
    """The first candidate (in the order given) who is a handler of the
    ticket's owner and may act on it: neither the leaver nor the employee
    complained about (R22), nor a manager or administrator."""
    role = _HANDLER[ticket.owner_level]
    for candidate in candidates:
        if candidate.userid != leaver and candidate.role is role \
                and may(candidate, ticket, Action.RESPOND):
            return candidate
    return None


def staff_left(
    ticket: Ticket,
    leaver: Actor,
    *,
    reassign: str,
    candidates: Sequence[Actor],
    approvals: Sequence[int],
    now: datetime,
) -> Outcome:
    """The ticket's record that `leaver` left: when they were its assignee it
    goes back to its owner's pool (`reassign` "pool") or to the first colleague
    who may handle it (`reassign` "colleague", else the pool); `approvals` are
    the ids of open approval requests addressed to the leaver. The region's
    group is told either way, the new assignee too."""
    was_assignee = ticket.assignee == leaver.userid
    if not was_assignee and not approvals:
        raise Refused(f"#{ticket.number} 与 {leaver.display} 无关。")
    heir = successor(ticket, candidates, leaver.userid) \
        if was_assignee and reassign == "colleague" else None
    updated = replace(ticket, assignee=heir.userid if heir else None) if was_assignee else ticket
    data = {
        "left": leaver.userid,
        "left_name": leaver.display,
        "was_assignee": was_assignee,
        "assignee": heir.userid if heir else None,
        "assignee_name": heir.display if heir else "",
        "approvals": list(approvals),
    }
    notices = [Notice("staff_left", Audience.REGION_GROUP, Medium.GROUP)]
    if heir is not None:
        notices.append(Notice("assigned", Audience.ASSIGNEE, Medium.APP))
    return Outcome(updated, "staff_left", data, tuple(notices))
