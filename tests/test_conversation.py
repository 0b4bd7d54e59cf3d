"""A complaint's whole life in chat, end to end: the call centre's system opens
it over the API, the outbox posts into the dealer's group and sends each
handler a card, people click and type commands in their groups, and every copy
of the card follows. Everything goes through the WeChat Work emulator with the
real crypto over real HTTP, on SQLite and PostgreSQL; each step asserts what
the group or the member sees, and the stored row where it matters."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest

from bot.keys import WECOM
from bot.notify import Transport
from bot.render.privacy import mask_phone, mask_vin
from bot.wecom.emulator import WeComEmulator
from models import GroupChat, SentCard, Ticket, TicketEvent
from schedulers.outbox import deliver_due
from schedulers.runner import transports_for
from tests.conftest import TOKEN, WeComWorld

PHONE, VIN = "13812345678", "LFV2A21K6A3012345"
SH, HZ, EAST, CC = "wrGRP-SH001", "wrGRP-HZ001", "wrGRP-EAST", "wrGRP-CC"
MINUTE = timedelta(minutes=1)


@dataclass
class Conversation:
    """The people, the groups and the call-centre system, as the test drives them."""

    world: WeComWorld
    clock: list[datetime]
    transports: dict[str, Transport]
    seen: int = 0  # emulator requests already returned by `deliver`

    @property
    def emulator(self) -> WeComEmulator:
        return self.world.emulator

    def later(self, minutes: int) -> None:
        self.clock[0] += minutes * MINUTE

    async def complaint(self, **overrides: object) -> int:
        """The call-centre system opens a complaint over the intake API."""
        body = {"customer_name": "李先生", "customer_phone": PHONE, "car_model": "速腾",
                "plate": "沪A12345", "vin": VIN, "channel": "phone",
                "description": "变速箱顿挫，多次维修未解决", "dealer_code": "SH001", **overrides}
        response = await self.world.bot.post("/api/complaints", json=body,
                                             headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status == 201, await response.text()
        return (await response.json())["number"]

    async def say(self, userid: str, chatid: str | None, text: str, **kw: Any) -> dict[str, Any]:
        """`userid` @-mentions the robot in `chatid`; the decrypted passive reply."""
        return await self.emulator.robot_message(userid, chatid, f"@投诉助手 {text}", **kw)

    async def says(self, userid: str, chatid: str | None, text: str) -> str:
        """What the group reads back: the reply's markdown stream."""
        reply = await self.say(userid, chatid, text)
        assert reply["msgtype"] == "stream", reply
        return reply["stream"]["content"]

    async def deliver(self) -> list[dict[str, Any]]:
        """Run the outbox once; the API requests it made, all answered ok."""
        stats = await deliver_due(self.transports, now=self.clock[0])
        assert stats.dead == stats.retrying == 0, stats.errors
        sends = [r for r in self.emulator.requests[self.seen:] if r["direction"] == "api"]
        self.seen = len(self.emulator.requests)
        assert all(r["answer"].get("errcode") == 0 for r in sends), sends
        return sends


def posts(sends: list[dict[str, Any]], webhook_key: str) -> list[str]:
    """Markdown posted into the group with this webhook key."""
    return [r["json"]["markdown"]["content"] for r in sends
            if r["path"].endswith("webhook/send") and r["query"]["key"] == webhook_key]


def cards(sends: list[dict[str, Any]], userid: str) -> list[dict[str, Any]]:
    """Template cards the app sent to the member."""
    return [r["json"]["template_card"] for r in sends
            if r["path"].endswith("message/send") and r["json"]["touser"] == userid
            and r["json"]["msgtype"] == "template_card"]


def updates(sends: list[dict[str, Any]], userid: str) -> list[dict[str, Any]]:
    """Cards the app replaced for the member (message/update_template_card)."""
    return [r["json"]["template_card"] for r in sends
            if r["path"].endswith("update_template_card") and r["json"]["userids"] == [userid]]


def text(card: dict[str, Any]) -> str:
    return json.dumps(card, ensure_ascii=False)


@pytest.fixture
async def talk(wecom: WeComWorld, clock: list[datetime]) -> Conversation:
    transports = transports_for(wecom.settings, wecom.bot.app[WECOM], clock=lambda: clock[0])
    return Conversation(wecom, clock, transports)


async def test_a_complaint_from_intake_to_closure_and_back(talk: Conversation) -> None:
    # 09:00 The call centre's system dispatches a complaint to 上海浦东4S店.
    n = await talk.complaint()
    sent = await talk.deliver()
    [notice] = posts(sent, "hook-sh001")
    assert f"#{n}" in notice and mask_phone(PHONE) in notice and mask_vin(VIN) in notice
    assert PHONE not in notice and VIN not in notice
    # R10: each handler gets the card with the 处理 button; the manager does not.
    zhang_card, chen_card = [cards(sent, u)[0] for u in ("sh.zhang", "sh.chen")]
    for card in (zhang_card, chen_card):
        assert card["card_type"] == "button_interaction"
        assert card["main_title"]["title"].startswith(f"#{n} ")
        assert card["button_list"] == [{"text": "处理", "style": 1, "key": f"respond:{n}"}]
        assert mask_phone(PHONE) in text(card) and PHONE not in text(card)
    assert cards(sent, "sh.zhou") == []
    copies = await SentCard.filter(ticket_id=n, channel="app").order_by("userid")
    assert [(c.userid, bool(c.response_code)) for c in copies] == [
        ("sh.chen", True), ("sh.zhang", True)], "sent side by side, in either order"

    # 09:10 张专员 clicks 处理 on his card: answered at once, applied, and both copies follow.
    talk.later(10)
    assert await talk.emulator.app_click("sh.zhang", zhang_card["task_id"], f"respond:{n}") == ""
    ticket = await Ticket.get(id=n)
    assert ticket.status.value == "responded" and ticket.assignee == "sh.zhang"
    sent = await talk.deliver()
    for userid, card in (("sh.zhang", zhang_card), ("sh.chen", chen_card)):
        [update] = updates(sent, userid)
        assert update["task_id"] == card["task_id"]
        assert update["replace_text"] == "已处理：张专员 09:10"
        assert {"keyname": "处理人", "value": "张专员 03-02 09:10"} in \
            update["horizontal_content_list"]
    assert len(talk.emulator.sent("message/update_template_card")) == 2
    assert not await SentCard.filter(ticket_id=n, channel="app").exclude(response_code="").exists()

    # In the group: the card on request (查看 is /show), customer masked.
    talk.later(5)
    shown = await talk.say("sh.zhang", SH, f"查看 {n}")
    assert shown["msgtype"] == "template_card"
    card = shown["template_card"]
    assert "replace_text" not in card and card["button_list"][0]["text"] == "已处理"
    assert mask_phone(PHONE) in text(card) and PHONE not in text(card) and VIN not in text(card)
    assert await SentCard.filter(task_id=card["task_id"], channel="robot", chatid=SH).exists()

    # R13 first solution, a return visit (its callback duplicated), a failed call, the list.
    reply = await talk.says("sh.zhang", SH, f"方案 {n} 诉求=更换变速箱 原因=阀体磨损 "
                                            "方案=免费更换阀体并延保一年 接受=是 回访=是")
    assert f"#{n} 已提交首次方案（张专员" in reply and "方案：免费更换阀体并延保一年" in reply
    assert (await Ticket.get(id=n)).solution["cause"] == "阀体磨损"
    first = await talk.say("sh.zhang", SH, f"/followup {n} 客户确认方案", msgid="dup-1")
    again = await talk.say("sh.zhang", SH, f"/followup {n} 客户确认方案", msgid="dup-1")
    assert f"#{n} 已记录第 1 次回访" in first["stream"]["content"] and again == first
    assert await TicketEvent.filter(ticket_id=n, kind="followup").count() == 1
    assert (await Ticket.get(id=n)).followup_count == 1
    assert "已记录联系未果：上午" in await talk.says("sh.chen", SH, f"联系未果 {n}")
    listing = await talk.says("sh.zhou", SH, "列表")
    assert "上海浦东4S店（SH001）：未结投诉 1 条" in listing and f"#{n} 一般投诉" in listing

    # R23: the dealer is done; the call centre hears of it, and only it may close.
    reply = await talk.says("sh.zhang", SH, f"/resolve {n} 已更换阀体")
    assert f"#{n} 经销商已处理完毕" in reply
    [notice] = posts(await talk.deliver(), "hook-cc")
    assert f"#{n}" in notice and PHONE not in notice
    refused = await talk.says("sh.zhang", SH, f"/close {n} satisfaction=5")
    assert refused == f"⛔ 只有呼叫中心可以执行此操作（#{n}）。"
    reply = await talk.says("cc.wang", CC, f"/close {n} satisfaction=5")
    assert f"#{n} 已结案（王客服" in reply and "满意度 5 分" in reply
    ticket = await Ticket.get(id=n)
    assert ticket.status.value == "closed" and ticket.satisfaction == 5
    [notice] = posts(await talk.deliver(), "hook-sh001")
    assert f"#{n}" in notice

    # The region reopens it, the dealer's manager assigns it, the region escalates it (R4).
    talk.later(60)
    reply = await talk.says("east.he", EAST, f"/reopen {n} 客户再次来电")
    assert f"#{n} 已重新打开" in reply
    assert (await Ticket.get(id=n)).reopened_count == 1
    assert f"#{n}" in posts(await talk.deliver(), "hook-sh001")[0]
    reply = await talk.says("sh.zhou", SH, f"/assign {n} @sh.chen")
    assert reply.startswith(f"👤 #{n} 已指派给陈专员")
    [assigned] = cards(await talk.deliver(), "sh.chen")
    assert assigned["button_list"][0]["key"] == f"respond:{n}" and "replace_text" not in assigned
    reply = await talk.says("east.he", EAST, f"升级 {n} 客户要求退车")
    assert f"#{n} 已升级为升级投诉，转区域负责" in reply
    sent = await talk.deliver()
    assert f"#{n}" in posts(sent, "hook-east")[0] and f"#{n}" in posts(sent, "hook-sh001")[0]
    [region_card] = cards(sent, "east.he")
    assert region_card["main_title"]["title"] == f"#{n} 升级投诉"
    [update] = updates(sent, "sh.chen")  # the assigned card follows the escalation
    assert update["task_id"] == assigned["task_id"] and "升级投诉" in text(update)
    # The dealer's copy no longer offers 处理: the region holds the ticket now.
    assert update["replace_text"] == "区域负责，无需您处理" and "replace_text" not in region_card


async def test_disputes_refusals_duplicates_and_a_click_in_the_group(
    talk: Conversation,
) -> None:
    # R11: 上海 disputes a ticket that belongs to 杭州; the call centre upholds and reassigns.
    n = await talk.complaint(vin="LFV2A21K6A3099999", plate="浙A54321")
    await talk.deliver()
    reply = await talk.says("sh.zhang", SH, f"异议 {n} 车辆在杭州购买，应由杭州西湖4S店处理")
    assert f"#{n} 已提出异议" in reply
    assert f"#{n}" in posts(await talk.deliver(), "hook-cc")[0]
    reply = await talk.says("cc.wang", CC, f"/dispute-decide {n} uphold dealer=HZ001")
    assert f"#{n} 异议成立，已改派至杭州西湖4S店" in reply
    sent = await talk.deliver()
    assert any(f"#{n}" in p for p in posts(sent, "hook-hz001"))
    [hz_card] = cards(sent, "hz.sun")
    assert hz_card["button_list"][0]["key"] == f"respond:{n}"
    assert (await Ticket.get(id=n)).dealer_code == "HZ001"

    # Refusals: another dealer's ticket; R22, the employee the complaint is about.
    m = await talk.complaint(vin="LFV2A21K6A3077777", plate="沪B77777",
                             description="接待员陈专员态度恶劣", about_staff="sh.chen")
    wrong_dealer = f"⛔ #{m} 不属于您所在的经销商，不能操作。"
    assert await talk.says("hz.sun", HZ, f"/show {m}") == wrong_dealer
    sent = await talk.deliver()
    assert len(cards(sent, "sh.zhang")) == 1 and cards(sent, "sh.chen") == []
    r22 = f"⛔ 按规定您不能处理或查看 #{m}。"
    assert await talk.says("sh.chen", SH, f"/show {m}") == r22
    assert await talk.says("sh.chen", SH, f"/respond {m}") == r22
    assert (await Ticket.get(id=m)).responded_at is None

    # A click on the group's card is answered in the request with the updated card,
    # and the app's copy (张专员's; 陈专员 has none) follows through the outbox.
    talk.later(20)
    shown = (await talk.say("sh.zhang", SH, f"/show {m}"))["template_card"]
    assert "replace_text" not in shown
    answer = await talk.emulator.robot_click("sh.zhang", SH, shown["task_id"], f"respond:{m}")
    assert answer["response_type"] == "update_template_card"
    assert answer["template_card"]["task_id"] == shown["task_id"]
    # The robot's card has no replace_text (doc 101032): its button says it.
    assert "replace_text" not in answer["template_card"]
    assert [b["text"] for b in answer["template_card"]["button_list"]] == ["已处理"]
    assert {"keyname": "处理人", "value": "张专员 03-02 09:20"} in \
        answer["template_card"]["horizontal_content_list"]
    assert (await Ticket.get(id=m)).status.value == "responded"
    sent = await talk.deliver()
    assert [u["replace_text"] for u in updates(sent, "sh.zhang")] == ["已处理：张专员 09:20"]
    assert updates(sent, "sh.chen") == []
    # A second click on that stale card changes nothing and shows who handled it.
    stale = await talk.emulator.robot_click("sh.zhang", SH, shown["task_id"], f"respond:{m}")
    assert [b["text"] for b in stale["template_card"]["button_list"]] == ["已处理"]
    assert await TicketEvent.filter(ticket_id=m, kind="responded").count() == 1

    # An administrator binds a new group; /help lists the commands.
    reply = await talk.says("admin", "wrGRP-NEW", "绑定 dealer TJ001")
    assert reply.startswith("✅ 本群已绑定为经销商 天津滨海4S店（TJ001）的投诉群")
    group = await GroupChat.get(chatid="wrGRP-NEW").prefetch_related("dealer")
    assert group.kind == "dealer" and group.dealer.code == "TJ001"
    refused = await talk.says("sh.zhang", "wrGRP-NEW", "/bind hq")
    assert refused.startswith("⛔ 只有") and "/bind" in refused
    help_text = await talk.says("sh.zhang", SH, "/help")
    assert all(f"/{c}" in help_text for c in ("respond", "plan", "close", "dispute-decide"))


async def test_each_response_code_updates_its_copy_once_and_only_within_72_hours(
    talk: Conversation,
) -> None:
    n = await talk.complaint()
    sent = await talk.deliver()
    [chen_card] = cards(sent, "sh.chen")
    # The first change after the send uses each copy's code ...
    talk.later(5)
    await talk.says("sh.zhang", SH, f"/attempt {n} 上午")
    sent = await talk.deliver()
    assert [len(updates(sent, u)) for u in ("sh.zhang", "sh.chen")] == [1, 1]
    # ... so the next one finds none left: nothing is sent, nothing fails.
    talk.later(5)
    await talk.says("sh.zhang", SH, f"/attempt {n} 下午")
    assert await talk.deliver() == []
    # A click brings a fresh code for the clicked copy only (WeChat Work's rule).
    talk.later(5)
    assert await talk.emulator.app_click("sh.chen", chen_card["task_id"], f"respond:{n}") == ""
    sent = await talk.deliver()
    [update] = updates(sent, "sh.chen")
    assert update["replace_text"] == "已处理：陈专员 09:15"
    assert updates(sent, "sh.zhang") == []
    # A code older than 72 h is left alone: the change goes through, no update is tried.
    m = await talk.complaint(vin="LFV2A21K6A3055555", plate="沪C55555")
    await talk.deliver()
    talk.later(72 * 60)
    assert f"#{m} 已响应" in await talk.says("sh.zhang", SH, f"/respond {m}")
    assert updates(await talk.deliver(), "sh.zhang") == []
    assert not await SentCard.filter(ticket_id=m).exclude(response_code="").exists()
