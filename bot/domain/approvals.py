"""Who approves what (R19, R25): pure look-ups in the policy's authority tables."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from bot.domain.enums import OwnerLevel, Role, Status
from bot.domain.permissions import Action, check, refuse_subject
from bot.domain.policy import Policy
from bot.domain.ticket import Actor, Audience, Medium, Notice, Outcome, Refused, Ticket

_OWNER_GROUP = {
    OwnerLevel.DEALER: Audience.DEALER_GROUP,
    OwnerLevel.REGION: Audience.REGION_GROUP,
    OwnerLevel.HQ: Audience.HQ_GROUP,
}


# R22: who stands in when the approver is the employee the complaint is about.
_ROLE_ABOVE = {
    Role.DEALER_MANAGER: Role.DEALER_GM,
    Role.DEALER_GM: Role.SECOND_LEVEL_MANAGER,
    Role.SECOND_LEVEL_MANAGER: Role.SENIOR_MANAGER,
}


def role_above(role: Role) -> Role | None:
    """R22: the next approving role up from `role`; None above the senior manager."""
    return _ROLE_ABOVE.get(role)


def pass_over_subject(ticket: Ticket, kind: str, role: Role) -> Outcome:
    """R22: a request of `kind` went past the employee the complaint is about
    to `role`. A staged closure's decision reminder (R19) follows it there."""
    if kind == "staged_closure":
        ticket = replace(ticket, stage_approver=role)
    return Outcome(ticket, "approval_passed_over", {"kind": kind, "approver_role": role.value})


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
    owner's group is told, with the amount when approved. Never on a closed
    ticket (its open requests end with it: `ending_reason`), never by the
    employee the complaint is about, even as a delegate (R22)."""
    if ticket.status.is_final:
        raise Refused(f"{_label(ticket)} 当前状态为「{ticket.status.label}」，不能再审批赔偿。")
    refuse_subject(actor, ticket)
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


_KIND_LABELS = {"staged_closure": "阶段性结案", "compensation": "赔偿"}
_ENDED_BY_STATUS = {
    Status.CLOSED: "已结案",
    Status.STAGED_CLOSED: "已阶段性结案",
    Status.CLOSED_UNREACHABLE: "已结案（无法联系客户）",
    Status.CANCELLED: "已撤销",
}


@dataclass(frozen=True)
class OpenRequest:
    """An approval request still waiting for its decision, as far as its end matters."""

    id: int
    kind: str


def ending_reason(before: Ticket, after: Ticket) -> str | None:
    """Why a change of the ticket ends its open approval requests, or None
    when it does not: a request asks about the ticket as it was, so closing,
    cancelling, reopening, moving it to another owner or another handler
    leaves nothing to decide. The reason (Chinese, with the ticket number) is
    what the approver reads on the card and when trying to decide."""
    label = _label(after)
    if after.status.is_final and not before.status.is_final:
        return f"{label} {_ENDED_BY_STATUS[after.status]}"
    if before.status.is_final and not after.status.is_final:
        return f"{label} 已重新打开"
    if after.owner_level is not before.owner_level:
        return f"{label} 已升级至{after.owner_level.label}处理"
    if (after.dealer_code, after.region_code) != (before.dealer_code, before.region_code):
        return f"{label} 已改派至经销商 {after.dealer_code}"
    if before.assignee is not None and after.assignee != before.assignee:
        return f"{label} 已改派给其他处理人"
    return None


def ended_requests(
    before: Ticket,
    after: Ticket,
    pending: Sequence[OpenRequest],
    *,
    opened: OpenRequest | None = None,
) -> dict[int, str]:
    """The open requests (`pending`) a change of the ticket ends, each with the
    reason: all of them when `ending_reason` says so, and, when the change
    opens request `opened`, the older ones of its kind, which it supersedes."""
    reason = ending_reason(before, after)
    ended: dict[int, str] = {}
    for req in pending:
        if opened is not None and req.id == opened.id:
            continue
        if reason is not None:
            ended[req.id] = reason
        elif opened is not None and req.kind == opened.kind:
            ended[req.id] = (f"{_label(after)} 已有新的{_KIND_LABELS.get(req.kind, req.kind)}"
                             f"申请（审批单 {opened.id}）")
    return ended
