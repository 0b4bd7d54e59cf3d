"""R22, a complaint about an employee, end to end through the WeChat Work
emulator: the groups (where that employee may sit) read nothing of the
customer or the complaint, handlers read it one to one with whom it is about,
and the employee never receives, sees or decides an approval of the ticket,
not even as someone's delegate; a refusal never says whom it is about."""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from openpyxl import load_workbook

from bot.domain.approvals import decide_compensation, role_above
from bot.domain.enums import Role, Status
from bot.domain.ticket import Refused
from bot.domain.transitions import decide_staged_closure
from bot.intake import open_complaint
from bot.keys import LEDGER, WECOM
from bot.render.privacy import mask_phone
from bot.reports.figures import Scope, build_report
from bot.reports.render import workbook
from models import ApprovalRequest, Notification, Ticket, TicketEvent
from schedulers.runner import transports_for
from schedulers.sweeper import sweep
from tests.conftest import T0, TOKEN, WeComWorld
from tests.factories import CALL_CENTRE, SH_STAFF, make_ticket
from tests.test_approvals import app_replies
from tests.test_commands import complaint
from tests.test_conversation import PHONE, Conversation, cards, posts

SH, EAST = "wrGRP-SH001", "wrGRP-EAST"
H = timedelta(hours=1)
ABOUT_CHEN = "接待员陈专员态度恶劣，当众辱骂"
# What a group must not read of a complaint about 陈专员.
SECRETS = ("李先生", mask_phone(PHONE), "沪A12345", "辱骂", "陈专员", "sh.chen")


@pytest.fixture
async def talk(wecom: WeComWorld, clock: list[datetime]) -> Conversation:
    transports = transports_for(wecom.settings, wecom.bot.app[WECOM], clock=lambda: clock[0])
    return Conversation(wecom, clock, transports)


def to_member(sends: list[dict[str, Any]], userid: str) -> list[dict[str, Any]]:
    """Every app message sent to the member (markdown or card)."""
    return [r for r in sends
            if r["path"].endswith("message/send") and r["json"]["touser"] == userid]


def shown(reply: dict[str, Any]) -> str:
    return json.dumps(reply, ensure_ascii=False)


async def test_r22_groups_read_nothing_of_the_customer_handlers_read_it_one_to_one(
    talk: Conversation,
) -> None:
    # A major complaint (闹事) about 陈专员: notice and alert in the dealer's group,
    # alert in the region's group, cards and alerts to people one to one.
    n = await talk.complaint(about_staff="sh.chen", description=ABOUT_CHEN,
                             flags=["disturbance"])
    sent = await talk.deliver()
    group, region = posts(sent, "hook-sh001"), posts(sent, "hook-east")
    assert len(group) == 2 and len(region) == 1
    for post in group + region:
        assert f"#{n}" in post and f"/show {n}" in post
        assert not [s for s in SECRETS if s in post], post
    assert "重大投诉" in group[1]
    # Handlers one to one: the customer, and whom the complaint is about.
    [card] = cards(sent, "sh.zhang")
    assert "李先生" in shown(card) and "被投诉员工：陈专员（sh.chen）" in card["sub_title_text"]
    alert = "\n".join(app_replies(sent, "sh.wu"))
    assert "李先生" in alert and "辱骂" in alert and "被投诉员工：陈专员（sh.chen）" in alert
    assert to_member(sent, "sh.chen") == []

    # /show typed in the group: neither the markdown nor the card tells.
    in_group = await talk.say("sh.zhang", SH, f"/show {n}")
    assert f"#{n}" in shown(in_group) and f"/show {n}" in shown(in_group)
    assert not [s for s in SECRETS if s in shown(in_group)], in_group
    # A click on that card in the group answers with a card that does not tell either.
    task_id = in_group["template_card"]["task_id"]
    answer = await talk.emulator.robot_click("sh.zhang", SH, task_id, f"respond:{n}")
    assert answer["template_card"]["button_list"][0]["text"] == "已处理"
    assert not [s for s in SECRETS if s in shown(answer)], answer
    # One to one the handler reads it all.
    private = shown(await talk.say("sh.zhang", None, f"/show {n}"))
    assert "李先生" in private and mask_phone(PHONE) in private and ABOUT_CHEN in private
    assert "被投诉员工：陈专员（sh.chen）" in private


async def test_r22_an_employee_without_a_directory_account_is_named_by_name_and_role(
    talk: Conversation,
) -> None:
    n = await talk.complaint(about_staff_name="王顾问", about_staff_role="销售顾问",
                             description="销售顾问王顾问承诺的赠品未兑现")
    sent = await talk.deliver()
    [post] = posts(sent, "hook-sh001")
    assert f"#{n}" in post
    assert not [s for s in ("王顾问", "李先生", "赠品") if s in post], post
    row = await Ticket.get(id=n)
    assert (row.about_staff, row.about_staff_name, row.about_staff_role) == (
        None, "王顾问", "销售顾问")
    response = await talk.world.bot.get(f"/api/complaints/{n}",
                                        headers={"Authorization": f"Bearer {TOKEN}"})
    body = await response.json()
    assert (body["about_staff_name"], body["about_staff_role"]) == ("王顾问", "销售顾问")
    private = shown(await talk.say("sh.zhang", None, f"/show {n}"))
    assert "被投诉员工：王顾问（销售顾问）" in private and "赠品" in private
    in_group = shown(await talk.say("sh.zhang", SH, f"/show {n}"))
    assert "王顾问" not in in_group and "赠品" not in in_group


async def test_r22_a_delegate_who_is_the_subject_never_gets_sees_or_decides_the_approval(
    talk: Conversation,
) -> None:
    # 吴总 (GM, who approves up to ¥2,000) delegates to 周经理 while away; the
    # complaint is about 周经理.
    await talk.emulator.app_message("sh.wu", "/delegate @sh.zhou until 2026-03-06")
    await talk.deliver()
    n = await talk.complaint(about_staff="sh.zhou", description="部门负责人周经理拒绝处理")
    await talk.deliver()
    await talk.says("sh.zhang", SH, f"/compensate {n} 1500 代步车费用")
    sent = await talk.deliver()
    [card] = cards(sent, "sh.wu")
    assert to_member(sent, "sh.zhou") == []
    req = await ApprovalRequest.get(ticket_id=n)
    assert req.approver_userid == "sh.wu"

    # Neither the card's button nor the command lets 周经理 decide, and the
    # answers do not say why.
    talk.later(5)
    await talk.emulator.app_click("sh.zhou", card["task_id"], f"approve:{req.id}")
    [refusal] = app_replies(await talk.deliver(), "sh.zhou")
    assert f"#{n}" in refusal and "须由 吴总 审批" in refusal
    await talk.emulator.app_message("sh.zhou", f"/approve {n}")
    [refusal] = app_replies(await talk.deliver(), "sh.zhou")
    assert refusal == f"⛔ #{n} 没有待您审批的申请。"
    await talk.emulator.app_message("sh.zhou", f"/reject {n} 不同意")
    [refusal] = app_replies(await talk.deliver(), "sh.zhou")
    assert refusal == f"⛔ #{n} 没有待您审批的申请。"
    assert (await ApprovalRequest.get(id=req.id)).status == "open"
    for reply in app_replies(await talk.deliver(), "sh.zhou"):
        assert "涉及" not in reply and "R22" not in reply

    # 吴总 decides it himself.
    await talk.emulator.app_click("sh.wu", card["task_id"], f"approve:{req.id}")
    await talk.deliver()
    req = await ApprovalRequest.get(id=req.id)
    assert (req.status, req.decided_by, req.decided_on_behalf_of) == ("approved", "sh.wu", None)


async def test_r22_an_approval_the_subject_alone_would_decide_goes_one_role_up(
    talk: Conversation,
) -> None:
    # A compensation within the GM's band, on a complaint about the GM: the
    # second-level manager gets it and decides it.
    n = await talk.complaint(about_staff="sh.wu", description="总经理吴总拒绝退款")
    await talk.deliver()
    reply = await talk.says("sh.zhang", SH, f"/compensate {n} 1500 代步车费用")
    # The group is not told who approves: above the GM's band it would say whom
    # the complaint is about.
    assert f"#{n}" in reply and "按赔偿审批权限表，已送有审批权限的人审批" in reply
    assert "林" not in reply and "二级经理" not in reply and "总经理" not in reply
    sent = await talk.deliver()
    [card] = cards(sent, "east.lin")
    assert to_member(sent, "sh.wu") == []
    req = await ApprovalRequest.get(ticket_id=n)
    assert (req.approver_userid, req.approver_role) == ("east.lin", "second_level_manager")
    await talk.emulator.app_click("east.lin", card["task_id"], f"approve:{req.id}")
    await talk.deliver()
    assert (await ApprovalRequest.get(id=req.id)).status == "approved"

    # A staged closure that would go to the second-level manager, on a complaint
    # about him: the senior manager gets it and decides it.
    m = await talk.complaint(channel="local_media", about_staff="east.lin",
                             vin="LFV2A21K6A3077777", plate="沪B77777")
    await talk.deliver()
    await talk.says("east.he", EAST, f"/stage {m} 客户诉求明显不合理")
    sent = await talk.deliver()
    [card] = cards(sent, "east.gao")
    assert to_member(sent, "east.lin") == []
    req = await ApprovalRequest.get(ticket_id=m)
    assert (req.approver_userid, req.approver_role) == ("east.gao", "senior_manager")
    await talk.emulator.app_click("east.gao", card["task_id"], f"approve:{req.id}")
    await talk.deliver()
    assert (await ApprovalRequest.get(id=req.id)).status == "approved"
    assert (await Ticket.get(id=m)).status.value == "staged_closed"


async def test_r22_a_staged_closure_passed_over_the_subject_is_reminded_to_the_role_above(
    talk: Conversation,
) -> None:
    m = await talk.complaint(channel="local_media", about_staff="east.lin")
    await talk.deliver()
    await talk.says("east.he", EAST, f"/stage {m} 客户诉求明显不合理")
    ticket = await Ticket.get(id=m)
    assert ticket.stage_approver == Role.SENIOR_MANAGER
    assert await TicketEvent.filter(ticket_id=m, kind="approval_passed_over").count() == 1
    # R19: undecided past its time, the reminder e-mail goes to who holds the
    # request (the senior manager), not to the employee complained about.
    await sweep(talk.world.bot.app[LEDGER], now=talk.clock[0] + timedelta(days=3))
    reminders = await Notification.filter(ticket_id=m, kind="staged_decision_overdue",
                                          medium="email")
    assert [r.recipient for r in reminders] == ["east.gao@brand.example"]


async def test_r22_a_refused_assign_does_not_say_whom_the_complaint_is_about(
    talk: Conversation,
) -> None:
    n = await talk.complaint(about_staff="sh.chen", description=ABOUT_CHEN)
    await talk.deliver()
    reply = await talk.says("sh.zhou", SH, f"/assign {n} @sh.chen")
    assert reply == f"⛔ 不能指派给 陈专员：其无权处理 #{n}，请指派其他同事。"
    assert (await Ticket.get(id=n)).assignee is None


def test_r22_the_domain_refuses_the_subject_a_decision_even_as_a_delegate(policy) -> None:
    t = make_ticket(policy, T0, about_staff="sh.zhang", status=Status.STAGED_CLOSURE_PENDING,
                    stage_approver=Role.SECOND_LEVEL_MANAGER)
    with pytest.raises(Refused, match="您不能审批 #1024 的申请"):
        decide_staged_closure(t, SH_STAFF, approve=True, requested_by="east.he", reason="",
                              now=T0, on_behalf_of="east.lin")
    with pytest.raises(Refused, match="您不能审批 #1024 的申请"):
        decide_compensation(t, SH_STAFF, approve=True, amount=Decimal(100),
                            approver_role=Role.DEALER_GM, requested_by="sh.chen", reason="",
                            now=T0, on_behalf_of="sh.wu")
    # The role a request passes to when the subject alone holds the approving one.
    assert [role_above(r) for r in (Role.DEALER_GM, Role.SECOND_LEVEL_MANAGER,
                                    Role.SENIOR_MANAGER)] == [
        Role.SECOND_LEVEL_MANAGER, Role.SENIOR_MANAGER, None]


async def test_r22_the_managers_workbook_does_not_name_the_customer_of_a_complaint_about_staff(
    ledger, policy,
) -> None:
    about = await open_complaint(
        complaint(about_staff="sh.zhou", description="部门负责人周经理拒绝处理"), ledger,
        actor=CALL_CENTRE, source="api", now=T0)
    other = await open_complaint(complaint(vin="LFV2A21K6A3077777"), ledger,
                                 actor=CALL_CENTRE, source="api", now=T0 + H)
    report = await build_report("weekly", "2026-W10", Scope.parse("dealer:SH001"), policy,
                                ZoneInfo("Asia/Shanghai"), T0 + 7 * 24 * H)
    book = load_workbook(io.BytesIO(workbook(report.figures, report.tickets,
                                             ZoneInfo("Asia/Shanghai"))))
    detail = {row[0]: row[7:9] for row in book["投诉明细"].iter_rows(min_row=2, values_only=True)}
    assert detail == {about.ticket.number: ("—", "—"),
                      other.ticket.number: ("李先生", mask_phone(PHONE))}
