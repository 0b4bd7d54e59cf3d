"""Approvals from chat cards, end to end through the WeChat Work emulator:
staged closure (R19), compensation (R25), delegation and major complaints
(R7-R9). Each step asserts what people see (cards, their updates, replies,
group posts) and what the ticket's history and the request row record."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest

from bot.keys import WECOM
from models import ApprovalRequest, Delegation, Ticket, TicketEvent
from schedulers.runner import transports_for
from tests.conftest import WeComWorld
from tests.test_conversation import Conversation, cards, posts, text, updates

EAST = "wrGRP-EAST"
SH = "wrGRP-SH001"


@pytest.fixture
async def talk(wecom: WeComWorld, clock: list[datetime]) -> Conversation:
    transports = transports_for(wecom.settings, wecom.bot.app[WECOM], clock=lambda: clock[0])
    return Conversation(wecom, clock, transports)


def app_replies(sends: list[dict[str, Any]], userid: str) -> list[str]:
    """Markdown the app sent to the member."""
    return [r["json"]["markdown"]["content"] for r in sends
            if r["path"].endswith("message/send") and r["json"]["touser"] == userid
            and r["json"]["msgtype"] == "markdown"]


async def kinds(number: int) -> list[str]:
    return list(await TicketEvent.filter(ticket_id=number).order_by("id")
                .values_list("kind", flat=True))


async def escalated_ticket(talk: Conversation) -> int:
    """A complaint local media picked up: escalated, owned by region EAST (R4)."""
    number = await talk.complaint(channel="local_media")
    await talk.deliver()
    return number


async def test_r19_staged_closure_requests_decisions_and_reopen(talk: Conversation) -> None:
    n = await escalated_ticket(talk)
    emu = talk.emulator

    # The region asks; the first request goes to the second-level manager only.
    reply = await talk.says("east.he", EAST, f"/stage {n} 客户诉求明显不合理")
    assert f"#{n}" in reply and "阶段性结案" in reply
    sent = await talk.deliver()
    [card] = cards(sent, "east.lin")
    assert cards(sent, "east.gao") == []
    first = await ApprovalRequest.get(ticket_id=n)
    assert (first.kind, first.approver_userid, first.status) == ("staged_closure", "east.lin",
                                                                 "open")
    assert card["main_title"]["title"] == f"#{n} 阶段性结案申请"
    assert "客户诉求明显不合理" in card["sub_title_text"]
    assert [b["key"] for b in card["button_list"]] == [f"approve:{first.id}",
                                                       f"reject:{first.id}"]
    assert "何区域" in card["main_title"]["desc"]
    assert any(r["keyname"] == "经过" and "派单" in r["value"]
               for r in card["horizontal_content_list"])
    assert (await Ticket.get(id=n)).status.value == "staged_closure_pending"

    # Someone else clicks the card: refused with a reply, nothing changes.
    talk.later(5)
    await emu.app_click("east.gao", card["task_id"], f"approve:{first.id}")
    sent = await talk.deliver()
    [refusal] = app_replies(sent, "east.gao")
    assert f"#{n}" in refusal and "须由 林二级经理 审批" in refusal
    assert (await ApprovalRequest.get(id=first.id)).status == "open"

    # 驳回 asks for the reason; the typed /reject records it.
    talk.later(5)
    await emu.app_click("east.lin", card["task_id"], f"reject:{first.id}")
    sent = await talk.deliver()
    [ask] = app_replies(sent, "east.lin")
    assert f"/reject {n}" in ask
    assert (await ApprovalRequest.get(id=first.id)).status == "open"
    await emu.app_message("east.lin", f"/reject {n} 协商记录不全")
    sent = await talk.deliver()
    [update] = updates(sent, "east.lin")
    assert update["task_id"] == card["task_id"]
    assert update["replace_text"].startswith("已驳回：林二级经理")
    [post] = posts(sent, "hook-east")
    assert f"#{n}" in post and "驳回" in post and "协商记录不全" in post
    first = await ApprovalRequest.get(id=first.id)
    assert (first.status, first.decided_by, first.decision_reason) == (
        "rejected", "east.lin", "协商记录不全")
    assert (await Ticket.get(id=n)).status.value == "dispatched"

    # The second request goes to the senior manager, who approves on the card.
    talk.later(60)
    await talk.says("east.he", EAST, f"阶段性结案 {n} 客户坚持退车，已三次协商")
    sent = await talk.deliver()
    [card2] = cards(sent, "east.gao")
    assert cards(sent, "east.lin") == []
    second = await ApprovalRequest.filter(ticket_id=n).order_by("-id").first()
    assert second is not None and second.approver_userid == "east.gao"
    talk.later(5)
    assert await emu.app_click("east.gao", card2["task_id"], f"approve:{second.id}") == ""
    sent = await talk.deliver()
    [update] = updates(sent, "east.gao")
    assert update["replace_text"] == "已批准：高高级经理 10:15"
    [post] = posts(sent, "hook-east")
    assert f"#{n}" in post and "已批准" in post and "高高级经理" in post
    assert (await Ticket.get(id=n)).status.value == "staged_closed"

    # A double click is applied once, and says so.
    talk.later(1)
    await emu.app_click("east.gao", card2["task_id"], f"approve:{second.id}")
    sent = await talk.deliver()
    [again] = app_replies(sent, "east.gao")
    assert f"#{n}" in again and "已批准：高高级经理" in again and "无需再次操作" in again
    # The first, rejected request's card clicked again: a clear reply.
    await emu.app_click("east.lin", card["task_id"], f"approve:{first.id}")
    sent = await talk.deliver()
    [stale] = app_replies(sent, "east.lin")
    assert "已驳回：林二级经理" in stale and "无需再次操作" in stale
    assert (await kinds(n)).count("staged_closure_approved") == 1

    # A staged-closed ticket can be reopened.
    talk.later(60)
    reply = await talk.says("east.he", EAST, f"/reopen {n} 客户再次投诉")
    assert f"#{n}" in reply and "重新打开" in reply
    assert (await Ticket.get(id=n)).status.value == "dispatched"
    assert await kinds(n) == [
        "dispatched", "staged_closure_requested", "staged_closure_rejected",
        "staged_closure_requested", "staged_closure_approved", "reopened"]


@pytest.mark.parametrize(("amount", "approver"), [
    ("2000", "sh.wu"), ("2000.01", "east.lin"), ("20000", "east.lin"), ("20000.01", "east.gao"),
])
async def test_r25_compensation_band_boundaries_reach_the_right_approver(
    talk: Conversation, amount: str, approver: str
) -> None:
    n = await talk.complaint()
    await talk.deliver()
    reply = await talk.says("sh.zhang", SH, f"/compensate {n} {amount} 维修期间代步车费用")
    assert f"#{n}" in reply and "R25" in reply
    sent = await talk.deliver()
    [card] = cards(sent, approver)
    req = await ApprovalRequest.get(ticket_id=n)
    assert (req.approver_userid, req.amount) == (approver, Decimal(amount))
    assert f"¥{Decimal(amount):,.2f}" in card["main_title"]["title"]
    others = {"sh.wu", "east.lin", "east.gao"} - {approver}
    assert all(cards(sent, other) == [] for other in others)


async def test_r25_approved_compensation_is_recorded_and_shown(talk: Conversation) -> None:
    n = await talk.complaint()
    await talk.deliver()
    await talk.says("sh.zhang", SH, f"赔偿 {n} 1500 更换变速箱期间的交通费")
    [card] = cards(await talk.deliver(), "sh.wu")
    req = await ApprovalRequest.get(ticket_id=n)
    talk.later(10)
    await talk.emulator.app_click("sh.wu", card["task_id"], f"approve:{req.id}")
    sent = await talk.deliver()
    [update] = updates(sent, "sh.wu")
    assert update["replace_text"] == "已批准：吴总 09:10"
    [post] = posts(sent, "hook-sh001")
    assert f"#{n}" in post and "赔偿申请已批准" in post and "¥1,500.00" in post
    event = await TicketEvent.get(ticket_id=n, kind="compensation_approved")
    assert (event.actor, event.data["amount"]) == ("sh.wu", "1500.00")
    shown = await talk.say("sh.zhang", SH, f"/show {n}")
    assert shown["template_card"]["sub_title_text"].startswith("赔偿 ¥1,500.00 已批准")


@pytest.mark.parametrize("amount", ["10000000000", "1e10", "1000000.01"])
async def test_r10_compensation_above_the_policy_limit_is_refused_with_the_reason(
    talk: Conversation, amount: str
) -> None:
    """The policy's limits.compensation (1,000,000 yuan) bounds a request: the
    reply says why, and no request is stored (PostgreSQL could not hold 10^10)."""
    n = await talk.complaint()
    await talk.deliver()
    reply = await talk.says("sh.zhang", SH, f"/compensate {n} {amount} 维修期间代步车费用")
    assert f"#{n}" in reply and "超过单笔上限 ¥1,000,000.00" in reply
    assert await ApprovalRequest.filter(ticket_id=n).count() == 0
    assert "compensation_requested" not in await kinds(n)


@pytest.mark.parametrize("day", ["9999-12-31", "2026-06-30"])
async def test_r10_delegation_beyond_the_policy_limit_is_refused_with_the_reason(
    talk: Conversation, day: str
) -> None:
    """/delegate runs at most limits.delegation (90 days) ahead; 9999-12-31
    used to overflow into the generic apology."""
    await talk.emulator.app_message("east.lin", f"/delegate @hq.deng until {day}")
    [refusal] = app_replies(await talk.deliver(), "east.lin")
    assert "委托期限最长 90 天" in refusal and day in refusal
    assert await Delegation.all().count() == 0


async def test_r19_delegate_decides_on_behalf_of_the_approver(talk: Conversation) -> None:
    await talk.emulator.app_message("east.lin", "/delegate @hq.deng until 2026-03-06")
    [ok] = app_replies(await talk.deliver(), "east.lin")
    assert "邓二级经理" in ok and "2026-03-06" in ok
    n = await escalated_ticket(talk)
    await talk.says("east.he", EAST, f"/stage {n} 客户失联且诉求不合理")
    sent = await talk.deliver()
    [lin_card], [deng_card] = cards(sent, "east.lin"), cards(sent, "hq.deng")
    req = await ApprovalRequest.get(ticket_id=n)
    talk.later(30)
    await talk.emulator.app_click("hq.deng", deng_card["task_id"], f"approve:{req.id}")
    sent = await talk.deliver()
    for userid, card in (("east.lin", lin_card), ("hq.deng", deng_card)):
        [update] = updates(sent, userid)
        assert update["task_id"] == card["task_id"]
        assert "邓二级经理（代 林二级经理）" in text(update)
    req = await ApprovalRequest.get(id=req.id)
    assert (req.decided_by, req.decided_on_behalf_of) == ("hq.deng", "east.lin")
    event = await TicketEvent.get(ticket_id=n, kind="staged_closure_approved")
    assert (event.actor, event.data["on_behalf_of"]) == ("hq.deng", "east.lin")


async def test_r8_major_marked_in_chat_then_acknowledged(talk: Conversation) -> None:
    n = await talk.complaint()
    await talk.deliver()
    reply = await talk.says("sh.zhou", SH, f"/major {n} 客户在展厅闹事")
    assert f"#{n}" in reply and "重大投诉" in reply
    sent = await talk.deliver()
    assert any(f"#{n}" in p for p in posts(sent, "hook-sh001"))
    assert any(f"#{n}" in p for p in posts(sent, "hook-east"))
    assert app_replies(sent, "sh.wu") or cards(sent, "sh.wu")
    refused = await talk.says("sh.zhou", SH, f"/ack {n}")
    assert "品牌事业部" in refused
    assert (await Ticket.get(id=n)).major_acknowledged_at is None
    assert await kinds(n) == ["dispatched", "marked_major"]
