"""Issue 15 part 1: the doors a complaint comes in by, as people meet them.

The call centre's /new in its group (robot) and in the app, a dealer's /new
in its own group for a walk-in (source store, confirmed by the call centre
within policy.store_confirm, else nudged and e-mailed), and first-call
resolutions through the API and /new: closed at once, never dispatched.
Every door goes through bot.intake.check_complaint, then open_complaint; on
SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from bot.directory import actor_for
from bot.domain.enums import Clock, Source, Status
from bot.domain.transitions import confirm_store
from bot.intake import check_complaint, open_complaint
from bot.keys import LEDGER
from commands.base import ChatMessage, Context
from commands.router import handle_message
from models import Deadline, Notification, TicketEvent
from models import Ticket as TicketRow
from schedulers.sweeper import sweep
from tests.conftest import T0, TOKEN, WeComWorld
from tests.factories import CALL_CENTRE, SH_STAFF
from tests.test_outbox import delivering

AUTH = {"Authorization": f"Bearer {TOKEN}"}
H = timedelta(hours=1)
CC_GROUP, SH_GROUP, HZ_GROUP = "wrGRP-CC", "wrGRP-SH001", "wrGRP-HZ001"
NEW = ("/new 客户=李先生 电话=13812345678 车型=速腾 车牌=沪A12345 渠道=电话 经销商=SH001 "
       "描述=变速箱顿挫，多次维修未解决")
WALK_IN = ("新投诉 客户=王女士 电话=13912345678 车型=迈腾 VIN=LFV2A21K6A3099999 "
           "描述=保养收费与报价不符")
BODY = {
    "customer_name": "李先生", "customer_phone": "13812345678", "car_model": "速腾",
    "plate": "沪A12345", "vin": "LFV2A21K6A3012345", "channel": "phone",
    "description": "变速箱顿挫，多次维修未解决", "dealer_code": "SH001",
}


def reply_text(reply: dict) -> str:
    """The markdown of a robot's passive reply."""
    return reply["stream"]["content"] if reply["msgtype"] == "stream" else reply["markdown"]


async def notices(number: int) -> set[tuple[str, str, str]]:
    rows = await Notification.filter(ticket_id=number).values_list("kind", "audience", "medium")
    return set(rows)


# -- the call centre ------------------------------------------------------------


async def test_call_centre_new_in_its_group_dispatches_like_the_api(wecom: WeComWorld) -> None:
    reply = reply_text(await wecom.emulator.robot_message("cc.wang", CC_GROUP,
                                                          f"@投诉助手 {NEW}"))
    [row] = await TicketRow.all()
    assert reply.startswith(f"📨 #{row.id} 已受理：一般投诉，派至上海浦东4S店（SH001）")
    assert (row.source, row.dealer_code, row.status) == (Source.CHAT, "SH001",
                                                         Status.DISPATCHED)
    assert (row.plate, row.vin, row.channel.value) == ("沪A12345", "", "phone")
    [event] = await TicketEvent.filter(ticket_id=row.id)
    assert (event.kind, event.actor, event.source) == ("dispatched", "cc.wang", "chat")
    # The same dispatch as the API: the customer's SMS, the dealer's group and handlers.
    assert {("accepted", "customer", "sms"), ("dispatched", "dealer_group", "group"),
            ("dispatched", "dealer_handlers", "app")} <= await notices(row.id)
    clocks = await Deadline.filter(ticket_id=row.id).values_list("clock", flat=True)
    assert Clock.RESPONSE in clocks and Clock.STORE_CONFIRM not in clocks


async def test_call_centre_new_in_the_app_is_answered_with_the_number(
    wecom: WeComWorld,
) -> None:
    assert await wecom.emulator.app_message("cc.li", NEW.replace("/new", "新投诉")) == ""
    [row] = await TicketRow.all()
    assert row.source is Source.CHAT and row.dealer_code == "SH001"
    answer = await Notification.get(kind="reply", medium="app", recipient="cc.li")
    assert f"#{row.id} 已受理" in answer.payload["markdown"]


async def test_new_names_every_bad_field_at_once_and_stores_nothing(wecom: WeComWorld) -> None:
    text = ("@投诉助手 /new 客户=李先生 电话=12345 车型=速腾 渠道=飞鸽传书 经销商=XX999 "
            "描述=异响 标记=气囊、彩虹")
    reply = reply_text(await wecom.emulator.robot_message("cc.wang", CC_GROUP, text))
    lines = reply.splitlines()
    assert lines[0] == "❌ 投诉信息有误，请按各字段的提示修改，投诉未登记："
    assert any(line.startswith("- 客户电话不是有效的电话号码") and line.endswith("（电话=）")
               for line in lines)
    assert any("投诉渠道应为以下之一：phone（电话）" in line for line in lines)
    assert "- 请填写 VIN（车架号）或车牌号（或两者）（VIN=）" in lines
    assert "- 经销商代码“XX999”不存在（经销商=）" in lines
    assert any(line.startswith("- 标记第 2 项应为以下之一") for line in lines)
    # Nor may anyone but the call centre and dealer staff open one.
    other = reply_text(await wecom.emulator.robot_message("east.he", "wrGRP-EAST",
                                                          f"@投诉助手 {NEW}", msgid="m-2"))
    assert other.startswith("⛔ 只有") and "/new" in other
    assert await TicketRow.all().count() == 0
    assert await Notification.filter(ticket_id__isnull=False).count() == 0


# -- the store --------------------------------------------------------------------


async def test_a_walk_in_is_the_stores_and_the_call_centre_hears_at_once(
    wecom: WeComWorld,
) -> None:
    reply = reply_text(await wecom.emulator.robot_message("sh.zhang", SH_GROUP,
                                                          f"@投诉助手 {WALK_IN}"))
    [row] = await TicketRow.all()
    assert f"#{row.id} 已受理" in reply and "已通知呼叫中心确认" in reply
    assert (row.source, row.dealer_code, row.channel.value) == (Source.STORE, "SH001", "walk_in")
    [event] = await TicketEvent.filter(ticket_id=row.id)
    assert event.source == "store"
    told = await Notification.get(ticket_id=row.id, kind="store_reported")
    assert (told.audience, told.medium, told.recipient) == ("call_centre_group", "group",
                                                            CC_GROUP)
    deadline = await Deadline.get(ticket_id=row.id, clock=Clock.STORE_CONFIRM)
    assert deadline.due_at == T0 + 24 * H
    # Only for the recorder's own store: not in another dealer's group, nor naming another.
    in_other_group = reply_text(await wecom.emulator.robot_message(
        "sh.zhang", HZ_GROUP, f"@投诉助手 {WALK_IN}", msgid="m-2"))
    assert in_other_group.startswith("⛔ 本群属于杭州西湖4S店（HZ001）")
    other_dealer = reply_text(await wecom.emulator.robot_message(
        "sh.zhang", SH_GROUP, f"@投诉助手 {WALK_IN} 经销商=HZ001", msgid="m-3"))
    assert "门店登记的投诉属于本店（SH001）" in other_dealer
    assert await TicketRow.all().count() == 1


async def test_an_unconfirmed_walk_in_nudges_the_call_centre_and_emails_its_agents(
    wecom: WeComWorld, clock: list,
) -> None:
    await wecom.emulator.robot_message("sh.zhang", SH_GROUP, f"@投诉助手 {WALK_IN}")
    [row] = await TicketRow.all()
    ledger = wecom.bot.app[LEDGER]
    assert [a.clock for a in await sweep(ledger, now=T0 + 24 * H - timedelta(seconds=1))
            if a.clock is Clock.STORE_CONFIRM] == []
    clock[0] = T0 + 24 * H
    done = await sweep(ledger, now=clock[0])
    assert [(a.ticket, a.result) for a in done if a.clock is Clock.STORE_CONFIRM] == [
        (row.id, "applied")]
    async with delivering(wecom.emulator, clock) as delivery:
        await delivery.run(clock[0])
        [nudge] = [p for p in delivery.webhook_posts("hook-cc") if "门店登记待确认" in p]
        assert f"#{row.id}" in nudge and f"/confirm {row.id}" in nudge
        assert "13912345678" not in nudge, "the phone is masked in a group"
        for agent in ("cc.wang@brand.example", "cc.li@brand.example"):
            [mail] = delivery.mailbox.to(agent)
            assert str(mail["Subject"]).startswith(f"【门店登记待确认】投诉 #{row.id} 已逾期")
            assert f"/confirm {row.id}" in mail.get_body(("plain",)).get_content()
    # Reminded once: a later sweep finds nothing more for this clock.
    assert [a for a in await sweep(ledger, now=T0 + 48 * H)
            if a.clock is Clock.STORE_CONFIRM] == []


async def test_confirm_ends_the_clock_and_tells_the_store(wecom: WeComWorld) -> None:
    await wecom.emulator.robot_message("sh.zhang", SH_GROUP, f"@投诉助手 {WALK_IN}")
    [row] = await TicketRow.all()
    refused = reply_text(await wecom.emulator.robot_message(
        "sh.zhang", SH_GROUP, f"@投诉助手 /confirm {row.id}", msgid="m-2"))
    assert refused == f"⛔ 只有呼叫中心可以执行此操作（#{row.id}）。"
    reply = reply_text(await wecom.emulator.robot_message(
        "cc.wang", CC_GROUP, f"@投诉助手 确认 {row.id} 已核对", msgid="m-3"))
    assert reply.startswith(f"✅ #{row.id} 呼叫中心已确认这条门店登记的投诉（王客服")
    stored = await TicketRow.get(id=row.id)
    assert stored.confirmed_at == T0
    assert not await Deadline.filter(ticket_id=row.id, clock=Clock.STORE_CONFIRM,
                                     state="pending").exists()
    told = await Notification.get(ticket_id=row.id, kind="store_confirmed")
    assert told.recipient == SH_GROUP
    again = reply_text(await wecom.emulator.robot_message(
        "cc.wang", CC_GROUP, f"@投诉助手 /confirm {row.id}", msgid="m-4"))
    assert again == f"⛔ #{row.id} 已经确认过了，无需重复确认。"
    assert [a for a in await sweep(wecom.bot.app[LEDGER], now=T0 + 48 * H)
            if a.clock is Clock.STORE_CONFIRM] == []


# -- first-call resolutions ----------------------------------------------------------


async def test_resolved_on_call_through_the_api_is_closed_and_never_dispatched(client) -> None:
    response = await client.post("/api/complaints", json={**BODY, "resolved_on_call": True},
                                 headers=AUTH)
    assert response.status == 201
    body = await response.json()
    assert (body["status"], body["resolved_on_call"], body["deadlines"]) == ("closed", True, [])
    row = await TicketRow.get(id=body["number"])
    assert row.closed_at == T0 and row.responded_at == T0
    assert [e.kind for e in await TicketEvent.filter(ticket_id=row.id)] == ["resolved_on_call"]
    assert await Notification.filter(ticket_id=row.id).count() == 0, "nobody is told"


async def test_an_important_complaint_cannot_be_resolved_on_the_call(client) -> None:
    body = {**BODY, "flags": ["airbag"], "resolved_on_call": True, "customer_phone": "1"}
    response = await client.post("/api/complaints", json=body, headers=AUTH)
    assert response.status == 422
    fields = (await response.json())["fields"]
    assert set(fields) == {"customer_phone"}, "the schema first, every field at once"
    response = await client.post("/api/complaints", headers=AUTH,
                                 json={**BODY, "flags": ["airbag"], "resolved_on_call": True})
    assert response.status == 422
    assert (await response.json())["fields"] == {
        "resolved_on_call": "这是重要投诉，必须派单处理，不能按首次来电即解决结案。"}
    assert await TicketRow.all().count() == 0


async def test_resolved_on_call_through_new(wecom: WeComWorld) -> None:
    reply = reply_text(await wecom.emulator.robot_message(
        "cc.wang", CC_GROUP, f"@投诉助手 {NEW} 已解决=是"))
    [row] = await TicketRow.all()
    assert reply.startswith(f"✅ #{row.id} 已记录：首次来电即解决，已结案，不派单（王客服")
    assert (row.status, row.resolved_on_call, row.source) == (Status.CLOSED, True, Source.CHAT)
    assert await Notification.filter(ticket_id=row.id).count() == 0
    assert await Deadline.filter(ticket_id=row.id, state="pending").count() == 0
    bad = reply_text(await wecom.emulator.robot_message(
        "cc.wang", CC_GROUP, f"@投诉助手 {NEW} 已解决=也许", msgid="m-2"))
    assert "- 首次来电即解决应为 true 或 false（是或否）（已解决=）" in bad.splitlines()
    store = reply_text(await wecom.emulator.robot_message(
        "sh.zhang", SH_GROUP, f"@投诉助手 {WALK_IN} 已解决=是", msgid="m-3"))
    assert "首次来电即解决只适用于呼叫中心受理的投诉" in store
    assert await TicketRow.all().count() == 1


async def test_show_marks_a_store_record_until_it_is_confirmed(ledger) -> None:
    body = {**BODY, "channel": "walk_in"}
    checked = await check_complaint(body)
    outcome = await open_complaint(checked.complaint, ledger, actor=SH_STAFF, source=Source.STORE,
                                   now=T0, dealer=checked.dealer)
    number = outcome.ticket.number

    async def show() -> str:
        ctx = Context(actor=await actor_for("cc.wang"), ledger=ledger, now=T0 + H,
                      zone=ZoneInfo("Asia/Shanghai"))
        msg = ChatMessage(userid="cc.wang", text=f"/show {number}", channel="app")
        return (await handle_message(msg, ctx)).markdown

    shown = await show()
    assert "> 标记：门店登记（待呼叫中心确认）" in shown
    assert "时限：响应 03-02 11:00" in shown and "呼叫中心确认门店登记 03-03 09:00" in shown
    await ledger.apply(number, lambda t: confirm_store(t, CALL_CENTRE, "", T0 + H),
                       actor=CALL_CENTRE, source="chat", now=T0 + H)
    assert "> 标记：门店登记（呼叫中心已确认）" in await show()


async def test_new_names_the_employee_complained_about(wecom: WeComWorld) -> None:
    """R22 through /new: the employee by account (checked against the
    directory, like the API) or by name and post."""
    bad = reply_text(await wecom.emulator.robot_message(
        "cc.wang", CC_GROUP, f"@投诉助手 {NEW} 被投诉员工=sh.nobody"))
    assert "- 名录中没有账号为“sh.nobody”的员工（被投诉员工=）" in bad.splitlines()
    await wecom.emulator.robot_message("cc.wang", CC_GROUP, f"@投诉助手 {NEW} 被投诉员工=sh.chen",
                                       msgid="m-2")
    await wecom.emulator.robot_message(
        "sh.zhang", SH_GROUP, f"@投诉助手 {WALK_IN} 被投诉人=王顾问 被投诉人岗位=销售顾问",
        msgid="m-3")
    by_account, by_name = await TicketRow.all().order_by("id")
    assert (by_account.about_staff, by_account.about_staff_name) == ("sh.chen", None)
    assert (by_name.about_staff, by_name.about_staff_name, by_name.about_staff_role) == (
        None, "王顾问", "销售顾问")
    handlers = await Notification.filter(ticket_id=by_account.id, kind="dispatched",
                                         medium="app").values_list("recipient", flat=True)
    assert "sh.zhang" in handlers and "sh.chen" not in handlers
