"""Issue 14, part 4: the platform's exact schemas. The emulator refuses what
WeChat Work refuses (bot/wecom/schemas.py), so the bot must send each surface
only its own card fields; clicks arrive in every spelling peers use; late
callbacks within the window are taken and refusals counted; a renamed robot
still understands its commands; an app card that can no longer be updated is
followed by a fresh one when the ticket closes."""

from __future__ import annotations

from datetime import datetime

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.keys import WECOM
from bot.wecom.client import WeComError
from bot.wecom.emulator import RefusedReply
from bot.wecom.schemas import card_problem, robot_message_reply_problem
from models import SentCard, Ticket
from schedulers.runner import transports_for
from tests.conftest import T0, WeComWorld
from tests.test_conversation import CC, SH, Conversation, cards, updates
from tests.test_metrics import scrape, value

TS = str(int(T0.timestamp()))


@pytest.fixture
async def talk(wecom: WeComWorld, clock: list[datetime]) -> Conversation:
    """People talking to the bot through the emulator (tests/test_conversation.py)."""
    transports = transports_for(wecom.settings, wecom.bot.app[WECOM], clock=lambda: clock[0])
    return Conversation(wecom, clock, transports)


async def test_r1_the_robot_refuses_a_card_with_the_apps_replace_text(
    wecom: WeComWorld, talk: Conversation,
) -> None:
    # A stand-in bot answering with an app-rendered card: the emulator refuses
    # the passive reply as the robot does (errcode, field named).
    cipher = wecom.emulator.robot_cipher
    card = {"card_type": "button_interaction", "task_id": "ticket1-x",
            "main_title": {"title": "#1"},
            "button_list": [{"text": "处理", "style": 1, "key": "respond:1"}],
            "replace_text": "已处理"}

    async def answer(request: web.Request) -> web.Response:
        reply = {"msgtype": "template_card", "template_card": card}
        return web.json_response(cipher.robot_reply(
            reply, timestamp=TS, nonce=request.query["nonce"]))

    stand_in = web.Application()
    stand_in.router.add_post("/wecom/robot", answer)
    server = TestServer(stand_in)
    await server.start_server()
    try:
        wecom.emulator.connect(own_url=wecom.emulator.url, bot_url=str(server.make_url("")))
        with pytest.raises(RefusedReply) as refused:
            await wecom.emulator.robot_message("sh.zhang", SH, "@投诉助手 /show 1")
    finally:
        await server.close()
        wecom.emulator.connect(own_url=wecom.emulator.url, bot_url=str(wecom.bot.make_url("")))
    assert refused.value.refusal == {"errcode": 40058,
                                     "errmsg": "unknown field template_card.replace_text"}
    assert wecom.emulator.requests[-1]["refused"] == refused.value.refusal
    # The app's card API has the field; the robot's has feedback, the app's not.
    assert card_problem(card, "app") is None
    robot_only = {**card, "feedback": {"id": "f1"}}
    robot_only.pop("replace_text")
    assert card_problem(robot_only, "robot") is None
    with pytest.raises(WeComError) as app_refused:
        await wecom.bot.app[WECOM].send_app_card(["sh.zhang"], robot_only)
    assert app_refused.value.errcode == 40058
    # Hard limits: button count, task_id alphabet, stream bytes.
    too_many = {**robot_only, "button_list": robot_only["button_list"] * 7}
    assert card_problem(too_many, "robot")["errcode"] == 40058
    assert card_problem({**robot_only, "task_id": "ticket 1"}, "robot")["errcode"] == 40035
    long = {"msgtype": "stream", "stream": {"id": "s", "finish": True, "content": "字" * 7000}}
    assert robot_message_reply_problem(long)["errmsg"].startswith("stream.content longer")

    # The bot itself: a responded ticket's card in a group says so on its
    # button, without replace_text, and every reply passes the robot's schema.
    talk.seen = len(wecom.emulator.requests)
    n = await talk.complaint()
    await talk.deliver()
    shown = (await talk.say("sh.zhang", SH, f"/show {n}"))["template_card"]
    answer_card = (await talk.emulator.robot_click(
        "sh.zhang", SH, shown["task_id"], f"respond:{n}"))["template_card"]
    assert "replace_text" not in answer_card
    assert answer_card["button_list"] == [{"text": "已处理", "style": 2, "key": f"respond:{n}"}]
    again = (await talk.say("sh.zhang", SH, f"/show {n}"))["template_card"]
    assert "replace_text" not in again and again["button_list"][0]["text"] == "已处理"
    # The app's copies keep their replace_text (the app's own field).
    assert [u["replace_text"] for u in updates(await talk.deliver(), "sh.zhang")] == \
        ["已处理：张专员 09:00"]


@pytest.mark.parametrize("flat", [False, True])
async def test_r2_clicks_are_read_in_every_spelling(talk: Conversation, flat: bool) -> None:
    n = await talk.complaint()
    await talk.deliver()
    for names in (("EventKey", "TaskId"), ("eventkey", "taskid"), ("event_key", "task_id")):
        shown = (await talk.say("sh.zhang", SH, f"/show {n}"))["template_card"]
        answer = await talk.emulator.robot_click("sh.zhang", SH, shown["task_id"],
                                                 f"respond:{n}", names=names, flat=flat)
        assert answer["template_card"]["task_id"] == shown["task_id"], names
        assert answer["template_card"]["button_list"][0]["text"] == "已处理", names
    assert (await Ticket.get(id=n)).responded_at is not None


async def test_r3_an_old_callback_in_the_window_is_taken_and_refusals_are_counted(
    wecom: WeComWorld,
) -> None:
    assert wecom.settings.wecom_callback_max_skew == 3600
    cipher = wecom.emulator.robot_cipher
    before = value(await scrape(wecom.bot), "complaintbot_callback_refusals_total",
                   endpoint="robot", reason="timestamp outside the allowed window")

    async def post(age: int, msgid: str) -> web.Response:
        message = {"msgid": msgid, "aibotid": "aib", "chatid": SH, "chattype": "group",
                   "from": {"userid": "sh.zhang"}, "response_url": "", "msgtype": "text",
                   "text": {"content": "@投诉助手 /help"}}
        query, body = cipher.robot_callback(message, timestamp=str(int(T0.timestamp()) - age))
        return await wecom.bot.post("/wecom/robot", params=query.as_params(), data=body)

    # A re-delivery 40 minutes late (or a host 40 minutes off) is answered.
    late = await post(40 * 60, "late-1")
    assert late.status == 200 and (await late.json())["encrypt"]
    # Two hours is refused, and /metrics counts it by reason.
    assert (await post(2 * 3600, "late-2")).status == 403
    after = value(await scrape(wecom.bot), "complaintbot_callback_refusals_total",
                  endpoint="robot", reason="timestamp outside the allowed window")
    assert after == before + 1


async def test_r4_a_renamed_robots_mention_is_stripped(talk: Conversation) -> None:
    n = await talk.complaint()
    await talk.deliver()
    emulator = talk.emulator
    # Renamed in the console: the configured 投诉助手 is not in the text.
    for typed in (f"@客诉小助手 /respond {n}", f"/show {n}\u2005@客诉小助手"):
        reply = await emulator.robot_message("sh.zhang", SH, typed)
        content = reply["stream"]["content"] if reply["msgtype"] == "stream" else ""
        assert reply["msgtype"] == "template_card" or f"#{n}" in content, (typed, reply)
    assert (await Ticket.get(id=n)).responded_at is not None
    # Only one mention is the robot's: an @-argument stays (the trailing one goes).
    from webhooks.callback import strip_mention
    assert strip_mention(f"/assign {n} @sh.chen @客诉小助手", "投诉助手", any_name=True) == \
        f"/assign {n} @sh.chen"
    assert strip_mention(f"@客诉小助手 /assign {n} @sh.chen", "投诉助手", any_name=True) == \
        f"/assign {n} @sh.chen"
    # One to one there is no mention: nothing is taken for one.
    assert strip_mention(f"/assign {n} @sh.chen", "投诉助手") == f"/assign {n} @sh.chen"


async def test_r5_a_stale_app_card_is_followed_by_a_fresh_one_on_close(
    talk: Conversation,
) -> None:
    n = await talk.complaint()
    [zhang_card] = cards(await talk.deliver(), "sh.zhang")
    # 张专员 clicks 处理 on his card: the change uses every copy's code.
    talk.later(10)
    assert await talk.emulator.app_click("sh.zhang", zhang_card["task_id"], f"respond:{n}") == ""
    assert len(updates(await talk.deliver(), "sh.zhang")) == 1
    assert not await SentCard.filter(ticket_id=n, channel="app").exclude(response_code="").exists()
    # No copy can be updated now: a change that does not matter to them sends nothing ...
    talk.later(5)
    await talk.says("sh.zhang", SH, f"/attempt {n} 上午")
    assert await talk.deliver() == []
    # ... but the close does: each holder gets the current card anew, greyed out.
    talk.later(60)
    reply = await talk.says("cc.wang", CC, f"/close {n} satisfaction=5")
    assert "已结案" in reply, reply
    sent = await talk.deliver()
    for userid in ("sh.zhang", "sh.chen"):
        [fresh] = cards(sent, userid)
        assert fresh["task_id"] != zhang_card["task_id"] and fresh["replace_text"] == "已结案"
        assert f"#{n} " in fresh["main_title"]["title"]
    # The fresh copy is recorded with its code, so the next change updates it in place.
    talk.later(5)
    await talk.says("cc.wang", CC, f"/reopen {n} 客户反映问题复现")
    sent = await talk.deliver()
    assert [len(updates(sent, u)) for u in ("sh.zhang", "sh.chen")] == [1, 1]
    assert cards(sent, "sh.zhang") == []
