"""What happens around an approval besides the decision: the clocks a rejected
staged closure gives back (issue 12 item 1), the owning department's managers
for HQ tickets (item 5), and requests that end with their ticket's state
(item 6). End to end through the WeChat Work emulator, on SQLite and
PostgreSQL; each step asserts what people see."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from bot.domain.approvals import (
    OpenRequest,
    decide_compensation,
    ended_requests,
    ending_reason,
)
from bot.domain.enums import Category, OwnerLevel, Role, Status
from bot.domain.policy import Policy
from bot.domain.ticket import Refused
from bot.keys import LEDGER
from models import ApprovalRequest, Notification, Ticket
from schedulers.sweeper import sweep
from tests.conftest import T0, TOKEN
from tests.factories import CALL_CENTRE, make_ticket
from tests.test_approvals import app_replies, talk
from tests.test_conversation import Conversation, cards, posts, updates

__all__ = ["talk"]  # the fixture, shared with tests/test_approvals.py

EAST, SH, HQ = "wrGRP-EAST", "wrGRP-SH001", "wrGRP-HQ"


async def shown(talk: Conversation, number: int) -> dict[str, Any]:
    """The ticket as the API gives it."""
    response = await talk.world.bot.get(f"/api/complaints/{number}",
                                        headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status == 200, await response.text()
    return await response.json()


async def test_r1_rejected_staged_closure_rearms_every_clock(talk: Conversation) -> None:
    n = await talk.complaint()
    await talk.deliver()
    talk.later(5)
    assert f"#{n}" in await talk.says("east.he", EAST, f"/escalate {n} 客户要求区域介入")
    talk.later(5)
    assert f"#{n}" in await talk.says("east.he", EAST, f"/respond {n} 已联系客户")
    before = (await shown(talk, n))["deadlines"]
    assert before, "an escalated ticket that has responded waits for its solution (R18)"
    talk.later(5)
    await talk.says("east.he", EAST, f"/stage {n} 客户诉求明显不合理")
    # While the approver decides, only the approver's reminder runs.
    assert [d["clock"] for d in (await shown(talk, n))["deadlines"]] == ["staged_decision"]
    await talk.deliver()
    talk.later(5)
    await talk.emulator.app_message("east.lin", f"/reject {n} 协商记录不全")
    [post] = posts(await talk.deliver(), "hook-east")
    assert f"#{n}" in post and "恢复计算" in post
    # The clocks are back as they were: the same deadlines, due at the same times.
    assert (await shown(talk, n))["deadlines"] == before
    # ... and they still fire: the R18 e-mail goes out when the solution is late.
    due = datetime.fromisoformat(before[0]["due_at"])
    talk.clock[0] = due + timedelta(minutes=1)
    actions = await sweep(talk.world.bot.app[LEDGER], now=talk.clock[0])
    assert [(a.ticket, a.clock.value, a.result) for a in actions] == [
        (n, before[0]["clock"], "applied")]


async def test_r5_hq_tickets_go_to_hq_managers(talk: Conversation) -> None:
    # An important complaint (central media) is owned by HQ from the start.
    n = await talk.complaint(channel="central_media")
    await talk.deliver()
    assert (await Ticket.get(id=n)).owner_level.value == "hq"
    # R18: the solution e-mail goes to HQ's senior manager, not the region's.
    row = await Ticket.get(id=n)
    await talk.says("hq.feng", HQ, f"/respond {n} 已联系客户")
    [deadline] = (await shown(talk, n))["deadlines"][-1:]
    assert deadline["clock"] == "solution_email"
    talk.clock[0] = datetime.fromisoformat(deadline["due_at"]) + timedelta(minutes=1)
    await sweep(talk.world.bot.app[LEDGER], now=talk.clock[0])
    mailed = set(await Notification.filter(
        ticket_id=row.id, kind="solution_overdue", medium="email").values_list(
        "recipient", flat=True))
    assert mailed == {"hq.cao@brand.example"}
    # R19: HQ's staged closure is approved by HQ's second-level manager.
    await talk.says("hq.feng", HQ, f"/stage {n} 客户诉求明显不合理")
    sent = await talk.deliver()
    req = await ApprovalRequest.get(ticket_id=n)
    assert req.approver_userid == "hq.deng"
    assert cards(sent, "hq.deng") and cards(sent, "east.lin") == []


async def test_r6_closing_a_ticket_cancels_its_open_requests(talk: Conversation) -> None:
    n = await talk.complaint()
    await talk.deliver()
    await talk.says("sh.zhang", SH, f"/respond {n} 已联系客户")
    await talk.says("sh.zhang", SH, f"赔偿 {n} 1500 更换变速箱期间的交通费")
    [card] = cards(await talk.deliver(), "sh.wu")
    req = await ApprovalRequest.get(ticket_id=n)
    # The call centre closes the ticket: the request ends with it, its card says so.
    talk.later(10)
    reply = await talk.says("cc.wang", "wrGRP-CC", f"/close {n} 满意度=5 客户满意")
    assert f"#{n}" in reply
    sent = await talk.deliver()
    req = await ApprovalRequest.get(id=req.id)
    assert req.status == "cancelled" and f"#{n}" in req.decision_reason
    [update] = updates(sent, "sh.wu")
    assert update["task_id"] == card["task_id"] and update["replace_text"].startswith("已撤销")
    # A later click, or /approve, is refused with the reason; nothing is approved.
    talk.later(10)
    await talk.emulator.app_click("sh.wu", card["task_id"], f"approve:{req.id}")
    [refusal] = app_replies(await talk.deliver(), "sh.wu")
    assert f"#{n}" in refusal and "已撤销" in refusal and "已结案" in refusal
    await talk.emulator.app_message("sh.wu", f"/approve {n}")
    [refusal] = app_replies(await talk.deliver(), "sh.wu")
    assert f"#{n}" in refusal and "已撤销" in refusal and "已结案" in refusal
    assert (await ApprovalRequest.get(id=req.id)).status == "cancelled"
    assert not await Notification.filter(ticket_id=n, kind="compensation_approved").exists()


async def test_r6_escalation_and_a_newer_request_cancel_open_requests(
    talk: Conversation,
) -> None:
    n = await talk.complaint()
    await talk.deliver()
    await talk.says("sh.zhang", SH, f"/respond {n} 已联系客户")
    await talk.says("sh.zhang", SH, f"赔偿 {n} 1500 交通费")
    [old_card] = cards(await talk.deliver(), "sh.wu")
    talk.later(5)
    await talk.says("sh.zhang", SH, f"赔偿 {n} 1800 交通费及误工")
    sent = await talk.deliver()
    [new_card] = cards(sent, "sh.wu")
    old, new = await ApprovalRequest.filter(ticket_id=n).order_by("id")
    assert (old.status, new.status) == ("cancelled", "open")
    assert f"审批单 {new.id}" in old.decision_reason
    [update] = updates(sent, "sh.wu")
    assert update["task_id"] == old_card["task_id"]
    assert update["replace_text"].startswith("已撤销")
    # Escalation hands the ticket to the region: the dealer's request ends.
    talk.later(5)
    await talk.says("east.he", EAST, f"/escalate {n} 客户要求区域介入")
    sent = await talk.deliver()
    new = await ApprovalRequest.get(id=new.id)
    assert new.status == "cancelled" and "升级" in new.decision_reason
    [update] = updates(sent, "sh.wu")
    assert update["task_id"] == new_card["task_id"]
    talk.later(5)
    await talk.emulator.app_click("sh.wu", new_card["task_id"], f"approve:{new.id}")
    [refusal] = app_replies(await talk.deliver(), "sh.wu")
    assert f"#{n}" in refusal and "升级" in refusal


async def test_r6_handing_the_ticket_to_another_handler_cancels_its_open_requests(
    talk: Conversation,
) -> None:
    n = await talk.complaint()
    await talk.deliver()
    await talk.says("sh.zhang", SH, f"/assign {n} @sh.zhang")
    await talk.says("sh.zhang", SH, f"赔偿 {n} 1500 交通费")
    [card] = cards(await talk.deliver(), "sh.wu")
    req = await ApprovalRequest.get(ticket_id=n)
    talk.later(5)
    reply = await talk.says("sh.zhang", SH, f"/assign {n} @sh.chen")
    assert f"#{n}" in reply
    sent = await talk.deliver()
    req = await ApprovalRequest.get(id=req.id)
    assert req.status == "cancelled" and req.decision_reason == f"#{n} 已改派给其他处理人"
    [update] = updates(sent, "sh.wu")
    assert update["task_id"] == card["task_id"] and update["replace_text"].startswith("已撤销")
    talk.later(5)
    await talk.emulator.app_click("sh.wu", card["task_id"], f"approve:{req.id}")
    [refusal] = app_replies(await talk.deliver(), "sh.wu")
    assert f"#{n}" in refusal and "已改派给其他处理人" in refusal
    assert (await ApprovalRequest.get(id=req.id)).status == "cancelled"


async def test_r6_a_card_decided_by_command_loses_its_buttons(talk: Conversation) -> None:
    n = await talk.complaint()
    await talk.deliver()
    await talk.says("sh.zhang", SH, f"赔偿 {n} 1500 交通费")
    [card] = cards(await talk.deliver(), "sh.wu")
    # A change of the ticket refreshed the card (using its code) before the decision.
    talk.later(5)
    await talk.says("sh.zhang", SH, f"/respond {n} 已联系客户")
    await talk.deliver()
    talk.later(5)
    await talk.emulator.app_message("sh.wu", f"/approve {n} 同意")
    await talk.deliver()
    req = await ApprovalRequest.get(ticket_id=n)
    assert req.status == "approved"
    # The next click on the card answers, and the card stops offering the buttons.
    talk.later(5)
    await talk.emulator.app_click("sh.wu", card["task_id"], f"approve:{req.id}")
    sent = await talk.deliver()
    [again] = app_replies(sent, "sh.wu")
    assert f"#{n}" in again and "已批准" in again
    [update] = updates(sent, "sh.wu")
    assert update["replace_text"].startswith("已批准")


# -- the pure rule: which open requests a change ends ------------------------

@pytest.mark.parametrize(("change", "reason"), [
    ({"status": Status.CLOSED}, "#1024 已结案"),
    ({"status": Status.CANCELLED}, "#1024 已撤销"),
    ({"status": Status.STAGED_CLOSED}, "#1024 已阶段性结案"),
    ({"owner_level": OwnerLevel.REGION, "category": Category.ESCALATED},
     "#1024 已升级至区域处理"),
    ({"dealer_code": "HZ001"}, "#1024 已改派至经销商 HZ001"),
    ({"assignee": "sh.chen"}, "#1024 已改派给其他处理人"),
    ({"followup_count": 1}, None),
    ({"status": Status.RESPONDED}, None),
])
def test_r6_which_changes_end_open_requests(
    policy: Policy, change: dict[str, Any], reason: str | None
) -> None:
    before = make_ticket(policy, T0, assignee="sh.zhang")
    after = replace(before, **change)
    pending = [OpenRequest(1, "compensation"), OpenRequest(2, "staged_closure")]
    assert ending_reason(before, after) == reason
    expected = {1: reason, 2: reason} if reason else {}
    assert ended_requests(before, after, pending) == expected


def test_r6_reopening_and_a_newer_request_end_open_requests(policy: Policy) -> None:
    closed = make_ticket(policy, T0, status=Status.STAGED_CLOSED)
    reopened = replace(closed, status=Status.DISPATCHED)
    assert ending_reason(closed, reopened) == "#1024 已重新打开"
    # A first assignment is no reassignment.
    ticket = make_ticket(policy, T0)
    assert ending_reason(ticket, replace(ticket, assignee="sh.zhang")) is None
    pending = [OpenRequest(1, "compensation"), OpenRequest(2, "staged_closure"),
               OpenRequest(3, "compensation")]
    assert ended_requests(ticket, ticket, pending, opened=OpenRequest(3, "compensation")) == {
        1: "#1024 已有新的赔偿申请（审批单 3）"}


def test_r6_no_compensation_is_approved_on_a_closed_ticket(policy: Policy) -> None:
    gm = replace(CALL_CENTRE, userid="sh.wu", role=Role.DEALER_GM, dealer_code="SH001")
    closed = make_ticket(policy, T0, status=Status.CLOSED)
    with pytest.raises(Refused, match="#1024 当前状态为「已结案」"):
        decide_compensation(closed, gm, approve=True, amount=Decimal("1500"),
                            approver_role=Role.DEALER_GM, requested_by="sh.zhang", reason="",
                            now=T0)
