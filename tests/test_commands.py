"""Chat commands as a person sees them: type a command, read the reply, find the
change stored (ticket row, history event) or, when refused, nothing stored.
On SQLite and PostgreSQL, through commands.router's entry points."""

from __future__ import annotations

import json
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from structlog.testing import capture_logs

from bot.directory import actor_for
from bot.domain.enums import Category, Clock, OwnerLevel, Status
from bot.domain.permissions import Action, may
from bot.intake import Complaint, open_complaint
from bot.ledger import Ledger, snapshot
from bot.policy_book import PolicyBook
from commands.base import ChatMessage, Context, Reply
from commands.command import Command
from commands.router import FAILURE, ROUTER, Router, handle_message
from models import Deadline, GroupChat, Notification, Staff, TicketEvent
from models import Ticket as TicketRow
from schedulers.sweeper import sweep
from tests.conftest import T0
from tests.factories import CALL_CENTRE, SH_STAFF

ZONE = ZoneInfo("Asia/Shanghai")
M = timedelta(minutes=1)
H = timedelta(hours=1)
PHONE, VIN = "13812345678", "LFV2A21K6A3012345"
PLAN = "诉求=更换变速箱 原因=阀体磨损 方案=免费更换阀体 并延保一年 接受=是 回访=是"


def complaint(**overrides: object) -> Complaint:
    body = {
        "customer_name": "李先生", "customer_phone": PHONE, "car_model": "速腾",
        "plate": "沪A12345", "vin": VIN, "channel": "phone",
        "description": "变速箱顿挫，多次维修未解决", "dealer_code": "SH001",
    }
    body.update(overrides)
    return Complaint.model_validate(body)


@pytest.fixture
def open_ticket(ledger):
    """Dispatch a complaint at T0; returns its number. Each call is a new vehicle."""
    made = iter(range(100))

    async def open_(**overrides: object) -> int:
        n = next(made)
        vehicle = {"vin": f"LFV2A21K6A30{n:05d}", "plate": f"沪B{n:05d}"} if n else {}
        out = await open_complaint(complaint(**{**vehicle, **overrides}), ledger,
                                   actor=CALL_CENTRE, source="api", now=T0)
        return out.ticket.number

    return open_


@pytest.fixture
def say(ledger, clock):
    """Type a command as `userid` (in group `chatid`, else one-to-one) at clock[0]."""

    async def say_(userid: str, text: str, chatid: str | None = None) -> Reply:
        ctx = Context(actor=await actor_for(userid), ledger=ledger, now=clock[0], zone=ZONE)
        msg = ChatMessage(userid=userid, text=text, channel="robot", chatid=chatid, msgid="m1")
        return await handle_message(msg, ctx)

    return say_


async def events(number: int) -> list[tuple[str, str, str]]:
    rows = await TicketEvent.filter(ticket_id=number).order_by("id")
    return [(e.kind, e.actor, e.source) for e in rows]


async def stored() -> tuple[int, ...]:
    return (await TicketEvent.all().count(), await Notification.all().count(),
            await Deadline.all().count(), await GroupChat.all().count())


async def test_help_lists_every_command_with_its_alias(say):
    reply = await say("sh.zhang", "/help")
    for command in ROUTER.commands:
        assert f"/{command.name}（{command.alias}）" in reply.markdown
    # /legal and /outbox (issues 12 and 13), /new, /confirm and /attach (issue 15)
    assert len(ROUTER.commands) == 28
    one = await say("sh.zhang", "帮助 响应")
    assert "/respond（响应）" in one.markdown and "用法：/respond 编号 [说明]" in one.markdown
    assert "用法：/plan 编号 诉求=" in (await say("sh.zhang", "/help /plan")).markdown
    assert "没有命令“/fly”" in (await say("sh.zhang", "/help /fly")).markdown


async def test_r12_respond_stamps_the_time_and_replies_from_the_outcome(say, open_ticket, clock):
    number = await open_ticket()
    clock[0] = T0 + 45 * M
    reply = await say("sh.zhang", f"/respond #{number} 已电话联系客户", chatid="wrGRP-SH001")
    assert reply.markdown.splitlines() == [
        f"✅ #{number} 已响应（张专员，03-02 09:45，用时 45 分钟）",
        "> 说明：已电话联系客户",
    ]
    row = await TicketRow.get(id=number)
    assert row.status is Status.RESPONDED and row.owner_responded_at == T0 + 45 * M
    assert row.assignee == "sh.zhang"
    assert (await events(number))[-1] == ("responded", "sh.zhang", "chat")


async def test_chinese_aliases_with_and_without_slash(say, open_ticket):
    first, second, third = await open_ticket(), await open_ticket(), await open_ticket()
    assert "已响应" in (await say("sh.zhang", f"响应 {first}")).markdown
    assert "已响应" in (await say("sh.zhang", f"/响应 #{second}")).markdown
    assert "已响应" in (await say("sh.chen", f"响应{third}")).markdown
    for number in (first, second, third):
        assert (await TicketRow.get(id=number)).owner_responded_at is not None
    assert "没有识别到命令" in (await say("sh.zhang", "响应一下")).markdown


async def test_r13_plan_takes_the_five_fields_in_chinese_or_english(say, open_ticket):
    first, second = await open_ticket(), await open_ticket()
    await say("sh.zhang", f"/respond {first}")
    await say("sh.zhang", f"/respond {second}")
    reply = await say("sh.zhang", f"/plan {first} {PLAN}")
    assert f"✅ #{first} 已提交首次方案（张专员" in reply.markdown
    assert "> 方案：免费更换阀体 并延保一年" in reply.markdown
    row = await TicketRow.get(id=first)
    assert row.status is Status.SOLUTION_PROPOSED
    assert row.solution == {"demand": "更换变速箱", "cause": "阀体磨损",
                            "solution": "免费更换阀体 并延保一年",
                            "customer_accepts": True, "return_visit": True}
    await say("sh.zhang", f"方案 #{second} demand=refund cause=worn valve body "
                          "solution=replace it accepts=no visit=yes")
    row = await TicketRow.get(id=second)
    assert row.solution["cause"] == "worn valve body" and row.solution["customer_accepts"] is False
    assert (await events(second))[-1] == ("first_solution", "sh.zhang", "chat")


async def test_r13_plan_with_missing_or_bad_fields_stores_nothing(say, open_ticket):
    number = await open_ticket()
    await say("sh.zhang", f"/respond {number}")
    before = await stored()
    missing = await say("sh.zhang", f"/plan {number} 诉求=退车 方案=协商 接受=否 回访=是")
    assert missing.markdown.startswith("❌ 首次方案缺少：原因。")
    assert "用法：/plan 编号 诉求=… 原因=… 方案=… 接受=是|否 回访=是|否" in missing.markdown
    bad = await say("sh.zhang", f"/plan {number} {PLAN.replace('接受=是', '接受=也许')}")
    assert "接受须填写“是”或“否”" in bad.markdown
    twice = await say("sh.zhang", f"/plan {number} {PLAN} 方案=另一个")
    assert "重复填写" in twice.markdown
    assert await stored() == before
    assert (await TicketRow.get(id=number)).solution is None


async def test_r14_the_third_followup_escalates_to_the_region(say, open_ticket):
    number = await open_ticket()
    await say("sh.zhang", f"/respond {number}")
    first = await say("sh.zhang", f"/followup {number} 客户情绪稳定")
    assert first.markdown.splitlines() == [
        f"✅ #{number} 已记录第 1 次回访（张专员，03-02 09:00）", "> 说明：客户情绪稳定"]
    await say("sh.zhang", f"回访 {number}")
    third = await say("sh.zhang", f"回访 {number}")
    assert f"#{number} 已记录第 3 次回访" in third.markdown
    assert "已升级为升级投诉，转区域负责" in third.markdown
    row = await TicketRow.get(id=number)
    assert row.followup_count == 3
    assert (row.category, row.owner_level) == (Category.ESCALATED, OwnerLevel.REGION)


async def test_r16_three_slots_without_contact_close_as_unreachable(say, open_ticket, clock):
    number = await open_ticket()
    clock[0] = T0 + 45 * M  # 09:45 in Shanghai: the morning slot by default
    reply = await say("sh.zhang", f"/attempt {number}")
    assert reply.markdown == (f"📞 #{number} 已记录联系未果：上午"
                              "（近期第 1 次，已覆盖时段：上午）")
    clock[0] = T0 + 6 * H
    await say("sh.zhang", f"联系未果 {number} 下午")
    clock[0] = T0 + 11 * H
    last = await say("sh.zhang", f"/attempt {number} evening")
    assert f"🔒 #{number} 联系未果 3 次" in last.markdown and "无法联系结案（R16" in last.markdown
    row = await TicketRow.get(id=number)
    assert row.status is Status.CLOSED_UNREACHABLE
    assert [a["slot"] for a in row.attempts] == ["morning", "afternoon", "evening"]


async def test_r23_resolve_then_r15_close_with_satisfaction(say, open_ticket, clock):
    number = await open_ticket()
    await say("sh.zhang", f"/respond {number}")
    await say("sh.zhang", f"/plan {number} {PLAN}")
    clock[0] = T0 + 20 * H
    resolved = await say("sh.zhang", f"处理完毕 {number} 已更换阀体")
    assert resolved.markdown.startswith(f"✅ #{number} 经销商已处理完毕，等待呼叫中心回访")
    assert (await TicketRow.get(id=number)).status is Status.RESOLVED
    clock[0] = T0 + 30 * H
    closed = await say("cc.wang", f"/close #{number} 满意度=5 客户认可", chatid="wrGRP-CC")
    assert closed.markdown.splitlines() == [
        f"🔒 #{number} 已结案（王客服，03-03 15:00，满意度 5 分）", "> 说明：客户认可"]
    row = await TicketRow.get(id=number)
    assert (row.status, row.satisfaction, row.closed_at) == (Status.CLOSED, 5, T0 + 30 * H)
    assert [e[0] for e in await events(number)][-2:] == ["resolved", "closed"]


async def test_close_is_refused_to_dealer_staff(say, open_ticket):
    number = await open_ticket()
    await say("sh.zhang", f"/respond {number}")
    before = await stored()
    reply = await say("sh.zhang", f"/close {number} satisfaction=5")
    assert reply.markdown == f"⛔ 只有呼叫中心可以执行此操作（#{number}）。"
    assert await stored() == before
    assert (await TicketRow.get(id=number)).status is Status.RESPONDED


async def test_r4_escalate_hands_the_ticket_to_the_region(say, open_ticket):
    number = await open_ticket()
    refused = await say("sh.zhang", f"/escalate {number} 客户要求")
    assert refused.markdown == f"⛔ 只有区域或本部可以执行此操作（#{number}）。"
    reply = await say("cc.wang", f"升级 {number} 客户要求区域介入")
    assert reply.markdown.splitlines() == [
        f"⬆️ #{number} 已升级为升级投诉，转区域负责（王客服，03-02 09:00）",
        "> 原因：客户要求区域介入"]
    row = await TicketRow.get(id=number)
    assert (row.category, row.owner_level) == (Category.ESCALATED, OwnerLevel.REGION)


async def test_r11_dispute_upheld_reassigns_and_rejected_keeps_the_clock(say, open_ticket):
    moved, kept = await open_ticket(), await open_ticket()
    reply = await say("sh.zhang", f"/dispute {moved} 车辆在杭州购买和维修")
    assert reply.markdown.splitlines() == [
        f"❓ #{moved} 已提出异议，等待呼叫中心核实（张专员，03-02 09:00）",
        "> 原因：车辆在杭州购买和维修"]
    assert (await TicketRow.get(id=moved)).dispute_open
    upheld = await say("cc.wang", f"/dispute-decide {moved} uphold dealer=HZ001")
    assert f"✅ #{moved} 异议成立，已改派至杭州西湖4S店（HZ001），重新计时" in upheld.markdown
    row = await TicketRow.get(id=moved)
    assert (row.dealer_code, row.dispute_open) == ("HZ001", False)
    await say("sh.zhang", f"异议 {kept} 不是投诉")
    rejected = await say("cc.wang", f"异议核实 {kept} 不成立")
    assert rejected.markdown.startswith(f"↩️ #{kept} 异议不成立，处理时限照常计算")
    row = await TicketRow.get(id=kept)
    assert (row.dealer_code, row.dispute_open) == ("SH001", False)
    assert [e[0] for e in await events(kept)] == ["dispatched", "disputed", "dispute_rejected"]


async def test_r20_assign_to_a_colleague_who_may_act(say, open_ticket):
    number = await open_ticket()
    reply = await say("sh.zhang", f"/assign {number} @sh.chen")
    assert reply.markdown == f"👤 #{number} 已指派给陈专员（张专员，03-02 09:00）"
    assert (await TicketRow.get(id=number)).assignee == "sh.chen"
    other = await say("sh.zhang", f"指派 {number} @hz.sun")
    assert other.markdown.startswith("⛔ 不能指派给 孙专员")
    nobody = await say("sh.zhang", f"/assign {number} @ghost")
    assert nobody.markdown == f"⛔ 找不到成员 ghost（或已停用），#{number} 未指派。"
    assert (await TicketRow.get(id=number)).assignee == "sh.chen"


async def test_r20_assign_only_to_someone_who_may_respond_for_the_owner(say, open_ticket):
    """The assigned card carries the 处理 (respond) button: the assignee must be
    someone at the ticket's owner level, not HQ for a dealer's ticket nor a
    dealer's handler for the region's (found by tests/test_ledger_state_machine.py)."""
    dealers = await open_ticket()
    regions = await open_ticket(channel="local_media")  # escalated: the region owns it
    up = await say("sh.zhang", f"/assign {dealers} @hq.feng")
    assert up.markdown == (f"⛔ 不能指派给 冯本部：#{dealers} 当前由经销商负责，"
                           "此操作须由经销商执行。")
    down = await say("east.he", f"/assign {regions} @sh.chen")
    assert down.markdown == (f"⛔ 不能指派给 陈专员：#{regions} 当前由区域负责，"
                             "此操作须由区域执行。")
    for number in (dealers, regions):
        assert (await TicketRow.get(id=number)).assignee is None
    assert not await Notification.filter(kind="assigned").exists()
    assert "已指派给" in (await say("east.he", f"/assign {regions} @east.he")).markdown


async def test_reopen_brings_a_closed_ticket_back_with_a_fresh_clock(say, open_ticket, clock):
    number = await open_ticket()
    await say("sh.zhang", f"/respond {number}")
    await say("cc.wang", f"/close {number} 满意度=4")
    clock[0] = T0 + 48 * H
    reply = await say("east.he", f"重新打开 {number} 客户反映问题复发")
    assert reply.markdown.splitlines() == [
        f"🔓 #{number} 已重新打开，回到待响应，重新计时（何区域，03-04 09:00）",
        "> 原因：客户反映问题复发"]
    row = await TicketRow.get(id=number)
    assert (row.status, row.owner_since, row.reopened_count) == (
        Status.DISPATCHED, T0 + 48 * H, 1)


async def test_bind_is_for_admins_in_groups(say):
    refused = await say("sh.zhang", "/bind dealer HZ001", chatid="wrGRP-NEW")
    assert refused.markdown == "⛔ 只有管理员可以使用 /bind。"
    private = await say("admin", "/bind hq")
    assert "只能在群聊中使用" in private.markdown
    assert await GroupChat.filter(chatid="wrGRP-NEW").count() == 0
    bad = await say("admin", "/bind dealer", chatid="wrGRP-NEW")
    assert bad.markdown.startswith("❌") and "用法：/bind dealer 编号" in bad.markdown
    assert "没有编号为 XX999 的经销商" in (
        await say("admin", "/bind dealer XX999", chatid="wrGRP-NEW")).markdown
    assert await GroupChat.filter(chatid="wrGRP-NEW").count() == 0

    bound = await say("admin", "/bind dealer hz001", chatid="wrGRP-NEW")
    assert bound.markdown.startswith("✅ 本群已绑定为经销商 杭州西湖4S店（HZ001）的投诉群")
    group = await GroupChat.get(chatid="wrGRP-NEW").prefetch_related("dealer")
    assert (group.kind, group.dealer.code) == ("dealer", "HZ001")
    await say("admin", "绑定 region EAST", chatid="wrGRP-NEW")
    group = await GroupChat.get(chatid="wrGRP-NEW").prefetch_related("dealer", "region")
    assert (group.kind, group.dealer, group.region.code) == ("region", None, "EAST")
    await say("admin", "/bind call_centre", chatid="wrGRP-NEW")
    group = await GroupChat.get(chatid="wrGRP-NEW").prefetch_related("dealer", "region")
    assert (group.kind, group.dealer, group.region) == ("call_centre", None, None)
    # Rebinding keeps the group's webhook and changes nothing else.
    await say("admin", "/bind dealer SH001", chatid="wrGRP-EAST")
    group = await GroupChat.get(chatid="wrGRP-EAST")
    assert (group.kind, group.webhook_key) == ("dealer", "hook-east")


async def test_show_masks_the_customer_in_groups_and_carries_the_card(say, open_ticket):
    number = await open_ticket(description=f"客户电话 138 1234 5678，VIN {VIN}，要求退车")
    reply = await say("sh.zhang", f"查看 #{number}", chatid="wrGRP-SH001")
    text = reply.markdown + json.dumps(reply.card, ensure_ascii=False)
    assert "138****5678" in reply.markdown and "LFV**********2345" in reply.markdown
    assert PHONE not in text.replace(" ", "") and VIN not in text
    assert reply.markdown.startswith(f"**#{number} 一般投诉** · 待响应")
    assert "> 时限：响应 03-02 11:00" in reply.markdown
    assert reply.card["main_title"]["title"] == f"#{number} 一般投诉"
    assert reply.card["button_list"][0]["key"] == f"respond:{number}"
    private = await say("sh.zhang", f"/show {number}")
    assert PHONE in private.markdown and VIN in private.markdown
    assert PHONE not in json.dumps(private.card) and VIN not in json.dumps(private.card)
    assert (await say("sh.zhang", "/show 999")).markdown == "⛔ 没有编号为 #999 的投诉。"


async def test_r6_show_lists_related_tickets_on_both_sides(say, ledger):
    """Issue 12 item 4: another problem of the same car is linked, not a
    repeat; /show of either ticket names the other."""
    first = (await open_complaint(complaint(), ledger, actor=CALL_CENTRE, source="api",
                                  now=T0)).ticket.number
    second = (await open_complaint(complaint(description="销售承诺的免费保养没有兑现"), ledger,
                                   actor=CALL_CENTRE, source="api", now=T0)).ticket
    assert (second.repeat_of, second.related_to, second.major) == (None, first, False)
    for number, other in ((first, second.number), (second.number, first)):
        reply = await say("sh.zhang", f"/show {number}", chatid="wrGRP-SH001")
        assert f"> 关联投诉（同一车辆的其他问题）：#{other}" in reply.markdown
        assert reply.card["sub_title_text"].startswith(f"关联 #{other}｜")


async def test_r22_the_employee_complained_about_cannot_see_or_respond(say, open_ticket):
    number = await open_ticket(about_staff="sh.zhang")
    before = await stored()
    refusal = f"⛔ 按规定您不能处理或查看 #{number}。"
    show = await say("sh.zhang", f"/show {number}", chatid="wrGRP-SH001")
    assert (show.markdown, show.card) == (refusal, None)
    assert (await say("sh.zhang", f"/respond {number}")).markdown == refusal
    assert f"#{number}" not in (await say("sh.zhang", "/list", chatid="wrGRP-SH001")).markdown
    assert await stored() == before
    assert "已响应" in (await say("sh.chen", f"/respond {number}")).markdown


async def test_another_dealers_staff_is_refused(say, open_ticket):
    number = await open_ticket()
    before = await stored()
    reply = await say("hz.sun", f"/respond {number}", chatid="wrGRP-SH001")
    assert reply.markdown == f"⛔ #{number} 不属于您所在的经销商，不能操作。"
    assert "不属于您所在的经销商" in (await say("hz.sun", f"/show {number}")).markdown
    assert await stored() == before


async def test_unknown_people_are_refused(say, open_ticket):
    number = await open_ticket()
    before = await stored()
    for text in (f"/respond {number}", "/help", "你好"):
        reply = await say("stranger", text, chatid="wrGRP-SH001")
        assert reply.markdown.startswith("⛔ 您（stranger）不在投诉处理人员名录中")
    assert await stored() == before


async def test_bad_arguments_get_the_usage_and_store_nothing(say, open_ticket):
    number = await open_ticket()
    before = await stored()
    cases = {
        "/respond": "用法：/respond 编号 [说明]",
        "/respond abc": "“abc”不是有效的投诉编号",
        "/respond #0": "用法：/respond",
        "/respond 99999999999": "用法：/respond",
        f"/close {number}": "请填写客户满意度",
        f"/close {number} satisfaction=9": "满意度须为 1 到 5 的整数",
        f"/attempt {number} 半夜": "时段须为 上午、下午 或 晚上",
        f"/escalate {number}": "升级须说明原因",
        f"/dispute {number}": "提出异议须说明原因",
        f"/dispute-decide {number} maybe": "uphold（成立）或 reject（不成立）",
        f"/dispute-decide {number} reject dealer=HZ001": "不能改派",
        f"/assign {number}": "用法：/assign 编号 @账号",
        f"/show {number} now": "用法：/show 编号",
        "/list later": "用法：/list [open|mine|overdue]",
        "/bind": "用法：/bind",
    }
    for text, expected in cases.items():
        user = "admin" if text.startswith("/bind") else "cc.wang"
        reply = await say(user, text, chatid="wrGRP-CC")
        assert reply.markdown.startswith("❌") and expected in reply.markdown, text
        assert reply.card is None
    assert await stored() == before


async def test_unknown_commands_and_plain_text_point_to_help(say):
    unknown = await say("sh.zhang", "/fly 1024")
    assert unknown.markdown == "未知命令 /fly。发送 /help 查看全部命令。"
    assert (await say("sh.zhang", "respond 1024")).markdown.startswith("没有识别到命令")


async def test_list_is_scoped_by_the_group_and_otherwise_by_the_person(say, open_ticket):
    sh = await open_ticket()
    hz = await open_ticket(dealer_code="HZ001")
    bj = await open_ticket(dealer_code="BJ001")

    async def listed(userid: str, chatid: str | None = None) -> set[int]:
        reply = await say(userid, "/list", chatid=chatid)
        return {n for n in (sh, hz, bj) if f"#{n} " in reply.markdown}

    assert await listed("sh.zhang", "wrGRP-SH001") == {sh}
    assert await listed("east.he", "wrGRP-EAST") == {sh, hz}
    assert await listed("cc.wang", "wrGRP-CC") == {sh, hz, bj}
    assert await listed("hz.sun") == {hz}
    assert await listed("north.luo") == {bj}
    assert await listed("hz.sun", "wrGRP-SH001") == set(), "another dealer's group shows nothing"
    reply = await say("east.he", "列表", chatid="wrGRP-EAST")
    assert reply.markdown.splitlines()[0] == "📋 华东区域事业部（EAST）：未结投诉 2 条"
    assert f"- #{sh} 一般投诉 · 待响应 · 上海浦东4S店 · 速腾 · 响应 03-02 11:00" in reply.markdown


async def test_list_overdue_and_mine(say, open_ticket, clock):
    late, on_time = await open_ticket(), await open_ticket()
    await say("sh.zhang", f"/respond {on_time}")
    await say("sh.zhang", f"/assign {on_time} @sh.chen")
    clock[0] = T0 + 3 * H
    overdue = await say("sh.zhang", "/list overdue", chatid="wrGRP-SH001")
    assert f"#{late} " in overdue.markdown and f"#{on_time} " not in overdue.markdown
    assert "⚠️逾期" in overdue.markdown
    mine = await say("sh.chen", "/list 我的")
    assert f"#{on_time} " in mine.markdown and f"#{late} " not in mine.markdown
    nothing = await say("sh.zhang", "/list mine")
    assert nothing.markdown == "📋 经销商 SH001：暂无指派给我的未结投诉。"


async def test_list_overdue_keeps_a_ticket_the_sweep_has_nudged_until_it_is_answered(
        say, open_ticket, clock, ledger):
    """The sweep applies the 2 h response clock (the nudge) and the ticket is
    still unanswered: still overdue, in /list overdue and on its line, until
    /respond, whatever the deadline row's state."""
    late = await open_ticket()
    clock[0] = T0 + 3 * H
    [action] = await sweep(ledger, now=clock[0])
    assert (action.ticket, action.clock, action.result) == (late, Clock.RESPONSE, "applied")
    overdue = await say("sh.zhang", "/list overdue", chatid="wrGRP-SH001")
    assert f"#{late} " in overdue.markdown and "⚠️逾期" in overdue.markdown
    listed = await say("sh.zhang", "/list", chatid="wrGRP-SH001")
    assert "⚠️逾期" in listed.markdown
    await say("sh.zhang", f"/respond {late}")
    after = await say("sh.zhang", "/list overdue", chatid="wrGRP-SH001")
    assert after.markdown == "📋 上海浦东4S店（SH001）：暂无已逾期的未结投诉。"


async def test_list_overdue_counts_and_orders_only_open_tickets_with_a_due_clock(
        say, open_ticket, clock):
    numbers = [await open_ticket() for _ in range(24)]
    closed, on_time = numbers[:2]
    # Its clocks left pending: only the status keeps it out of the list.
    await TicketRow.filter(id=closed).update(status=Status.CLOSED)
    await say("sh.zhang", f"/respond {on_time}")
    clock[0] = T0 + 3 * H
    lines = (await say("sh.zhang", "/list overdue", chatid="wrGRP-SH001")).markdown.splitlines()
    assert lines[0] == "📋 上海浦东4S店（SH001）：已逾期的未结投诉 22 条"
    assert [line.split()[1] for line in lines[1:21]] == [f"#{n}" for n in numbers[2:22]]
    assert lines[21] == "…… 另有 2 条未显示，请用 /show 编号 查看。"


async def test_list_shows_each_person_exactly_the_tickets_they_may_view(say, open_ticket):
    opened = [await open_ticket(), await open_ticket(about_staff="sh.chen"),
              await open_ticket(dealer_code="HZ001", about_staff_name="王顾问"),
              await open_ticket(dealer_code="BJ001", about_staff="bj.liu"),
              await open_ticket(dealer_code="TJ001")]
    tickets = [snapshot(row) for row in await TicketRow.filter(id__in=opened)]
    for userid in await Staff.all().values_list("userid", flat=True):
        actor = await actor_for(userid)
        reply = (await say(userid, "/list")).markdown
        shown = {t.number for t in tickets if f"#{t.number} " in reply}
        assert shown == {t.number for t in tickets if may(actor, t, Action.VIEW)}, userid


async def test_list_counts_beyond_the_twenty_it_shows(say, open_ticket):
    numbers = [await open_ticket(about_staff="sh.chen")]
    numbers += [await open_ticket() for _ in range(22)]
    everyone = (await say("sh.zhang", "/list", chatid="wrGRP-SH001")).markdown.splitlines()
    assert everyone[0] == "📋 上海浦东4S店（SH001）：未结投诉 23 条"
    assert [line.split()[1] for line in everyone[1:21]] == [f"#{n}" for n in numbers[:20]]
    assert everyone[21] == "…… 另有 3 条未显示，请用 /show 编号 查看。"
    subject = (await say("sh.chen", "/list", chatid="wrGRP-SH001")).markdown.splitlines()
    assert subject[0] == "📋 上海浦东4S店（SH001）：未结投诉 22 条", "R22: not the one about them"
    assert subject[-1] == "…… 另有 2 条未显示，请用 /show 编号 查看。"


async def test_an_unexpected_error_is_logged_and_answered(policy):
    async def broken(call):
        raise RuntimeError("database on fire")

    router = Router([Command(name="boom", alias="爆炸", summary="", usage="/boom",
                             handler=broken)])
    ctx = Context(actor=SH_STAFF, ledger=Ledger(PolicyBook(policy)), now=T0, zone=ZONE)
    with capture_logs() as logs:
        reply = await router.handle_message(
            ChatMessage(userid="sh.zhang", text="/boom", channel="app"), ctx)
    assert reply.markdown == FAILURE
    failed = [e for e in logs if e["event"] == "chat_command_failed"]
    assert failed and failed[0]["command"] == "boom" and failed[0]["log_level"] == "error"
