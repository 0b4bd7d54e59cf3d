"""Ticket cards: WeChat Work's limits, masking, and the 处理 button — built
directly, and clicked through commands.router on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.directory import actor_for
from bot.domain.deadlines import pending_deadlines
from bot.domain.enums import Status
from bot.intake import Complaint, open_complaint
from bot.render.cards import MAX_BUTTONS, MAX_ROWS, check_card, new_task_id, ticket_card
from commands.base import CardClick, ChatMessage, Context, Reply
from commands.router import handle_click, handle_message
from models import Ticket as TicketRow
from models import TicketEvent
from tests.conftest import T0
from tests.factories import CALL_CENTRE, make_ticket

ZONE = ZoneInfo("Asia/Shanghai")
M = timedelta(minutes=1)
PHONE, VIN = "13812345678", "LFV2A21K6A3012345"
TASK_ID_CHARSET = re.compile(r"^[0-9A-Za-z_\-@]+$")


def assert_within_limits(card: dict) -> None:
    assert TASK_ID_CHARSET.match(card["task_id"]) and len(card["task_id"].encode()) <= 128
    assert 1 <= len(card["button_list"]) <= MAX_BUTTONS
    assert len(card["horizontal_content_list"]) <= MAX_ROWS


def test_task_ids_fit_the_charset_and_differ_per_card():
    ids = {new_task_id(2**31 - 1) for _ in range(200)}
    assert len(ids) == 200
    for task_id in ids:
        assert TASK_ID_CHARSET.match(task_id) and len(task_id.encode()) <= 128
        assert task_id.startswith("ticket2147483647-")


def test_card_of_a_new_ticket_has_the_respond_button(policy):
    ticket = make_ticket(policy, T0)
    card = ticket_card(ticket, ZONE, task_id="ticket1024-abc", show_customer=True,
                       deadlines=pending_deadlines(ticket, policy), dealer_name="上海浦东4S店")
    assert_within_limits(card)
    assert card["card_type"] == "button_interaction"
    assert card["main_title"]["title"] == "#1024 一般投诉"
    assert card["button_list"] == [{"text": "处理", "style": 1, "key": "respond:1024"}]
    assert "replace_text" not in card
    rows = {r["keyname"]: r["value"] for r in card["horizontal_content_list"]}
    assert rows == {"车辆": "速腾 沪A12345", "客户": "李先生 138****5678",
                    "经销商": "上海浦东4S店", "状态": "待响应（经销商负责）",
                    "时限": "响应 03-02 11:00"}
    assert card["sub_title_text"] == "变速箱顿挫，多次维修未解决"


def test_r12_responded_card_greys_the_button_with_who_and_when(policy):
    ticket = make_ticket(policy, T0, status=Status.RESPONDED, owner_responded_at=T0 + 45 * M)
    card = ticket_card(ticket, ZONE, task_id="ticket1024-abc", show_customer=True,
                       responder="张专员")
    assert card["replace_text"] == "已处理：张专员 09:45"
    assert {"keyname": "处理人", "value": "张专员 03-02 09:45"} in card["horizontal_content_list"]
    closed = ticket_card(replace(ticket, status=Status.CLOSED), ZONE, task_id="t-1",
                         show_customer=True)
    assert closed["replace_text"] == "已结案"


def test_card_stays_within_limits_and_masked_when_everything_is_long(policy):
    long_text = f"客户 李先生 电话 138-1234-5678 VIN {VIN.lower()} " + "变速箱异响" * 200
    ticket = make_ticket(policy, T0, description=long_text, car_model="速腾" * 40,
                         major=True, legal=True, repeat_of=7, status=Status.RESPONDED,
                         owner_responded_at=T0 + M)
    card = ticket_card(ticket, ZONE, task_id=new_task_id(1024), show_customer=True,
                       deadlines=pending_deadlines(ticket, policy), dealer_name="店" * 100,
                       responder="张专员")
    assert_within_limits(card)
    assert len(card["horizontal_content_list"]) == MAX_ROWS
    assert len(card["sub_title_text"]) <= 112
    assert all(len(r["value"]) <= 26 for r in card["horizontal_content_list"])
    text = json.dumps(card, ensure_ascii=False)
    digits_only = re.sub(r"[\s\-]", "", text)
    assert PHONE not in digits_only and VIN.lower() not in text.lower()
    assert "138****5678" in text


def test_r22_card_without_the_customer(policy):
    card = ticket_card(make_ticket(policy, T0), ZONE, task_id="t-2", show_customer=False)
    text = json.dumps(card, ensure_ascii=False)
    assert "李先生" not in text and "5678" not in text
    assert "客户" not in [r["keyname"] for r in card["horizontal_content_list"]]


def test_check_card_refuses_what_wechat_work_would_refuse(policy):
    card = ticket_card(make_ticket(policy, T0), ZONE, task_id="t-3", show_customer=True)
    for broken in (
        {**card, "task_id": "has space"},
        {**card, "task_id": "x" * 129},
        {**card, "task_id": "票1024"},
        {**card, "button_list": card["button_list"] * 7},
        {**card, "horizontal_content_list": card["horizontal_content_list"] * 2},
    ):
        with pytest.raises(ValueError, match="invalid template card"):
            check_card(broken)
    with pytest.raises(ValueError, match="task_id"):
        ticket_card(make_ticket(policy, T0), ZONE, task_id="bad id", show_customer=True)


# --- clicks through the router -------------------------------------------------


@pytest.fixture
async def number(ledger) -> int:
    body = {
        "customer_name": "李先生", "customer_phone": PHONE, "car_model": "速腾",
        "plate": "沪A12345", "vin": VIN, "channel": "phone", "about_staff": "sh.chen",
        "description": f"电话 {PHONE} 变速箱顿挫", "dealer_code": "SH001",
    }
    out = await open_complaint(Complaint.model_validate(body), ledger, actor=CALL_CENTRE,
                               source="api", now=T0)
    return out.ticket.number


@pytest.fixture
def click(ledger, clock):
    async def click_(userid: str, key: str, task_id: str = "ticket1-a1b2c3") -> Reply:
        ctx = Context(actor=await actor_for(userid), ledger=ledger, now=clock[0], zone=ZONE)
        event = CardClick(userid=userid, event_key=key, task_id=task_id, channel="robot",
                          chatid="wrGRP-SH001")
        return await handle_click(event, ctx)

    return click_


async def responded_events(number: int) -> int:
    return await TicketEvent.filter(ticket_id=number, kind="responded").count()


async def test_r12_clicking_处理_responds_and_updates_the_same_card(ledger, clock, click, number):
    ctx = Context(actor=await actor_for("sh.zhang"), ledger=ledger, now=T0, zone=ZONE)
    shown = await handle_message(ChatMessage(userid="sh.zhang", text=f"/show {number}",
                                             channel="robot", chatid="wrGRP-SH001"), ctx)
    key, task_id = shown.card["button_list"][0]["key"], shown.card["task_id"]
    clock[0] = T0 + 45 * M
    reply = await click("sh.zhang", key, task_id)
    assert reply.markdown == f"✅ #{number} 已响应（张专员，03-02 09:45，用时 45 分钟）"
    assert reply.card["task_id"] == task_id
    assert reply.card["replace_text"] == "已处理：张专员 09:45"
    assert_within_limits(reply.card)
    text = reply.markdown + json.dumps(reply.card, ensure_ascii=False)
    assert PHONE not in text and VIN not in text
    row = await TicketRow.get(id=number)
    assert row.owner_responded_at == T0 + 45 * M and row.assignee == "sh.zhang"


async def test_a_stale_card_gets_the_current_card_and_why(clock, click, number):
    clock[0] = T0 + 45 * M
    await click("sh.zhang", f"respond:{number}")
    clock[0] = T0 + 50 * M
    late = await click("sh.zhou", f"respond:{number}", task_id="ticket1-other")
    assert late.markdown == f"ℹ️ #{number} 已经响应过了，无需重复响应。"
    assert late.card["task_id"] == "ticket1-other"
    assert late.card["replace_text"] == "已处理：张专员 09:45"
    assert await responded_events(number) == 1


async def test_clicks_that_cannot_apply_are_answered_not_raised(click, number):
    expired = "⚠️ 这张卡片的操作已失效。请发送 /show 编号 查看投诉的最新状态。"
    for key in ("archive:1", f"respond:{number}x", "respond", ""):
        reply = await click("sh.zhang", key)
        assert (reply.markdown, reply.card) == (expired, None), key
    missing = await click("sh.zhang", "respond:999")
    assert (missing.markdown, missing.card) == ("⛔ 没有编号为 #999 的投诉。", None)
    stranger = await click("stranger", f"respond:{number}")
    assert stranger.markdown.startswith("⛔ 您（stranger）不在投诉处理人员名录中")
    other_dealer = await click("hz.sun", f"respond:{number}")
    assert (other_dealer.markdown, other_dealer.card) == (
        f"⛔ #{number} 不属于您所在的经销商，不能操作。", None)
    assert await responded_events(number) == 0


async def test_r22_the_employee_complained_about_cannot_click_处理(click, number):
    reply = await click("sh.chen", f"respond:{number}")
    assert reply.markdown == f"⛔ 按规定您不能处理或查看 #{number}。"
    assert reply.card is None
    assert await responded_events(number) == 0
