"""Who approves what (R19, R25): pure look-ups in the policy's authority tables."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from bot.domain.enums import OwnerLevel, Role
from bot.domain.permissions import Action, check
from bot.domain.policy import Policy
from bot.domain.ticket import Actor, Audience, Medium, Notice, Outcome, Refused, Ticket

_OWNER_GROUP = {
    OwnerLevel.DEALER: Audience.DEALER_GROUP,
    OwnerLevel.REGION: Audience.REGION_GROUP,
    OwnerLevel.HQ: Audience.HQ_GROUP,
}


def compensation_approver(amount: Decimal, policy: Policy) -> Role:
    """R25: the role of the first band whose upper bound covers the amount (in yuan)."""
    if amount <= 0:
        raise Refused("赔偿金额须大于 0 元。")
    for band in policy.compensation:
        if band.up_to is None or amount <= band.up_to:
            return band.role
    highest = policy.compensation[-1].up_to
    raise Refused(f"赔偿金额 {amount} 元超出权限核决表的上限 {highest} 元，请联系本部。")


def _label(ticket: Ticket) -> str:
    return f"#{ticket.number}" if ticket.number else "该投诉"


def yuan(amount: Decimal) -> str:
    """An amount as people read it: ¥20,000.00."""
    return f"¥{amount:,.2f}"


def request_compensation(
    ticket: Ticket, actor: Actor, amount: Decimal, reason: str, policy: Policy, now: datetime
) -> Outcome:
    """R25: ask for a compensation; the authority table names who approves it.

    The ticket itself does not change; the request is an event of its history."""
    check(actor, ticket, Action.COMPENSATE)
    if ticket.status.is_final:
        raise Refused(f"{_label(ticket)} 当前状态为「{ticket.status.label}」，不能申请赔偿。")
    if not reason.strip():
        raise Refused("申请赔偿须说明原因。")
    ceiling = policy.limits.compensation
    if amount > ceiling:
        raise Refused(f"{_label(ticket)} 申请的赔偿金额 {yuan(amount)} 超过单笔上限 "
                      f"{yuan(ceiling)}，请核对金额；确需更多请联系本部。")
    role = compensation_approver(amount, policy)
    data = {"amount": str(amount), "reason": reason, "approver_role": role.value}
    return Outcome(ticket, "compensation_requested", data)


def decide_compensation(
    ticket: Ticket,
    actor: Actor,
    *,
    approve: bool,
    amount: Decimal,
    approver_role: Role,
    requested_by: str,
    reason: str,
    now: datetime,
    on_behalf_of: str | None = None,
) -> Outcome:
    """R25: the holder of the approving role (or their delegate) decides; the
    owner's group is told, with the amount when approved."""
    if actor.userid == requested_by:
        raise Refused("不能审批自己提交的申请。")
    if actor.role is not approver_role and on_behalf_of is None:
        raise Refused(f"此申请须由{approver_role.label}审批。")
    event = "compensation_approved" if approve else "compensation_rejected"
    data = {"amount": str(amount), "reason": reason, "on_behalf_of": on_behalf_of,
            "approver_role": approver_role.value}
    notices = (Notice(kind=event, audience=_OWNER_GROUP[ticket.owner_level],
                      medium=Medium.GROUP),)
    return Outcome(ticket, event, data, notices)
