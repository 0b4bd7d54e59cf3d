"""Approval cards (R19 staged closure, R25 compensation) and how people read a
request: the button_interaction card the approver gets, with the ticket in
brief, its history in brief, the reason and 批准 / 驳回 buttons; once decided,
the same card says who decided, on whose behalf, and when.

A card's task_id is `ticket<N>-apr<R>-<random>`: it names the ticket (so the
outbox records the copy and later changes of the ticket update it, see
bot/card_copies.py) and the request (so the update shows the request, not
the ticket card)."""

from __future__ import annotations

import re
import secrets
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from bot.domain.approvals import yuan
from bot.domain.enums import Role
from bot.domain.ticket import Ticket
from bot.ledger import snapshot
from bot.render.cards import check_card
from bot.render.chat import owner_text, scrub, short_time
from models import ApprovalRequest, Dealer, Staff, TicketEvent
from models import Ticket as TicketRow

KIND_LABELS = {"staged_closure": "阶段性结案", "compensation": "赔偿"}
STATUS_LABELS = {"open": "待审批", "approved": "已批准", "rejected": "已驳回",
                 "cancelled": "已撤销"}
APPROVE, REJECT = "approve", "reject"
"""The actions of the two buttons; keys are `approve:<request id>`, `reject:<request id>`."""

_TASK = re.compile(r"^ticket(\d+)-apr(\d+)-")
# The history in brief: the steps that tell an approver how the case went.
_STEPS = {
    "dispatched": "派单", "responded": "响应", "first_solution": "首次方案",
    "solution_revised": "修改方案", "followup": "回访", "escalated": "升级",
    "disputed": "异议", "marked_major": "重大", "resolved": "已处理",
    "staged_closure_requested": "申请结案", "staged_closure_rejected": "驳回结案",
    "staged_closure_approved": "阶段性结案", "reopened": "重新打开",
    "compensation_requested": "申请赔偿", "compensation_approved": "赔偿获批",
}
_HISTORY_STEPS = 4
_ROW_VALUE = 26
_SUB_TITLE = 112


def approval_task_id(number: int, request_id: int) -> str:
    """A fresh task_id for one card of request `request_id` on ticket `number`."""
    return f"ticket{number}-apr{request_id}-{secrets.token_hex(4)}"


def request_of_task(task_id: str) -> int | None:
    """The request an approval card's task_id names; None for other cards."""
    match = _TASK.match(task_id)
    return int(match.group(2)) if match else None


def request_title(req: ApprovalRequest) -> str:
    """赔偿申请 ¥2,000.00 / 阶段性结案申请: what the request asks, in a few words."""
    title = f"{KIND_LABELS.get(req.kind, req.kind)}申请"
    if req.amount is not None:
        title += f" {yuan(Decimal(req.amount))}"
    return title


def decision_text(
    req: ApprovalRequest, zone: ZoneInfo, names: dict[str, str], *, brief: bool = False
) -> str:
    """已批准：林二级经理（代 高高级经理） 03-02 09:30, or 待审批; `brief`
    gives the time of day only (a card's greyed-out button)."""
    label = STATUS_LABELS.get(req.status, req.status)
    if req.decided_at is None:
        return label
    if req.status == "cancelled":
        # Nobody decided: the ticket moved on (bot/domain/approvals.py), and
        # the reason says how.
        at = req.decided_at.astimezone(zone)
        return (f"{label} {at.strftime('%H:%M')}" if brief
                else f"{label}（{req.decision_reason}） {short_time(req.decided_at, zone)}")
    who = names.get(req.decided_by or "", req.decided_by or "")
    if req.decided_on_behalf_of:
        on_behalf = req.decided_on_behalf_of
        who += f"（代 {names.get(on_behalf, on_behalf)}）"
    at = (req.decided_at.astimezone(zone).strftime("%H:%M") if brief
          else short_time(req.decided_at, zone))
    return f"{label}：{who} {at}"


def approval_card(
    req: ApprovalRequest,
    ticket: Ticket,
    zone: ZoneInfo,
    *,
    task_id: str,
    dealer_name: str,
    names: dict[str, str],
    history: str,
) -> dict[str, Any]:
    """The request as a button_interaction card (no customer details: approval
    cards are forwarded and shown)."""
    number = ticket.number
    requester = names.get(req.requested_by, req.requested_by)
    rows = []
    if req.amount is not None:
        rows.append(_row("金额", yuan(Decimal(req.amount))))
    rows += [
        _row("车辆", " ".join(v for v in (ticket.car_model, ticket.plate) if v)),
        _row("经销商", dealer_name or ticket.dealer_code),
        _row("状态", f"{ticket.status.label}（{owner_text(ticket)}）"),
        _row("经过", history),
    ]
    approver = names.get(req.approver_userid, req.approver_userid)
    role = Role(req.approver_role).label
    rows.append(_row("审批", decision_text(req, zone, names) if req.decided_at
                     else f"{approver}（{role}）"))
    reason = f"原因：{scrub(req.reason, ticket)}"
    if req.decision_reason:
        heading = "撤销" if req.status == "cancelled" else "意见"
        reason += f"｜{heading}：{scrub(req.decision_reason, ticket)}"
    card: dict[str, Any] = {
        "card_type": "button_interaction",
        "source": {"desc": "投诉审批"},
        "main_title": {
            "title": f"#{number} {request_title(req)}",
            "desc": _cut(f"申请人 {requester} · {short_time(req.requested_at, zone)}", 30),
        },
        "sub_title_text": _cut(reason, _SUB_TITLE),
        "horizontal_content_list": rows,
        "task_id": task_id,
        "button_list": [
            {"text": "批准", "style": 1, "key": f"{APPROVE}:{req.id}"},
            {"text": "驳回", "style": 2, "key": f"{REJECT}:{req.id}"},
        ],
    }
    if req.status != "open":
        card["replace_text"] = decision_text(req, zone, names, brief=True)
    check_card(card)
    return card


async def staff_names(userids: list[str | None]) -> dict[str, str]:
    """userid to name for the people a request mentions."""
    wanted = [u for u in userids if u]
    if not wanted:  # most tickets are about no one: no query
        return {}
    return dict(await Staff.filter(userid__in=wanted).values_list("userid", "name"))


async def history_in_brief(number: int, zone: ZoneInfo) -> str:
    """The last steps of ticket `number`: 派单 03-01 → 升级 03-02 → …"""
    events = await TicketEvent.filter(ticket_id=number, kind__in=list(_STEPS)).order_by(
        "-id").limit(_HISTORY_STEPS).values_list("kind", "at")
    steps = [f"{_STEPS[kind]} {at.astimezone(zone).strftime('%m-%d')}"
             for kind, at in reversed(events)]
    return "→".join(steps)


async def request_card(req: ApprovalRequest, zone: ZoneInfo, *, task_id: str) -> dict[str, Any]:
    """Request `req`'s card as it stands now."""
    row = await TicketRow.get(id=req.ticket_id)  # type: ignore[attr-defined]
    ticket = snapshot(row)
    dealer = await Dealer.get_or_none(code=ticket.dealer_code)
    names = await staff_names([req.requested_by, req.approver_userid, req.decided_by,
                               req.decided_on_behalf_of])
    history = await history_in_brief(row.id, zone)
    return approval_card(req, ticket, zone, task_id=task_id, names=names, history=history,
                         dealer_name=dealer.name if dealer else "")


async def card_for_task(task_id: str, zone: ZoneInfo) -> dict[str, Any] | None:
    """The current card of the approval card `task_id`; None when the task_id
    is not an approval card's (the outbox then sends the ticket's card)."""
    request_id = request_of_task(task_id)
    if request_id is None:
        return None
    req = await ApprovalRequest.get_or_none(id=request_id)
    return await request_card(req, zone, task_id=task_id) if req else None


def _row(keyname: str, value: str) -> dict[str, str]:
    return {"keyname": keyname, "value": _cut(value or "—", _ROW_VALUE)}


def _cut(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
