"""The smart robot's long connection (doc 101463) as WeChat Work drives it: the
emulator serves the WebSocket, the bot subscribes, pings, answers callbacks on
their req_id, reconnects, yields to a displacing connection for the configured
wait, and only the lease holder among replicas keeps the connection."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from aiohttp.test_utils import TestClient
from pydantic import SecretStr
from structlog.testing import capture_logs

from bot.app import create_app
from bot.check import check_robot_connection
from bot.db import open_database
from bot.demo import create_demo_app
from bot.directory_import import import_directory
from bot.keys import ROBOT_CONNECTION, WECOM
from bot.notify.wecom import GroupTransport
from bot.render.notices import RenderedMessage
from bot.settings import Settings, SettingsError, load_settings
from bot.wecom.client import RateLimited
from bot.wecom.emulator import WeComEmulator
from bot.wecom.emulator_ws import HubError
from bot.wecom.longconn import RobotConnection
from models import Lease, Notification, ProcessedCallback, SentCard, Ticket, TicketEvent
from schedulers.outbox import deliver_due
from schedulers.runner import transports_for
from tests.conftest import ORG, WeComWorld, _truncate_postgres, wecom_settings
from tests.test_demo import free_port, say, wait_for
from tests.test_webhooks_robot import GROUP, open_ticket
from tests.waiting import eventually
from webhooks.robot import long_connection_handler

DISPLACED_WAIT = 0.6


@dataclass
class LongWorld:
    """The emulator and a bot in long-connection mode."""

    emulator: WeComEmulator
    bot: TestClient
    settings: Settings

    @property
    def connection(self) -> RobotConnection:
        return self.bot.app[ROBOT_CONNECTION]


@pytest.fixture
async def longconn(database_url: str, emulator: WeComEmulator, aiohttp_client,
                   clock) -> LongWorld:
    """The bot (no scheduler) holding the robot's long connection to the emulator."""
    if database_url.startswith("postgres"):
        async with open_database(database_url):
            await _truncate_postgres()
    settings = wecom_settings(database_url, api_base=f"{emulator.url}/cgi-bin").model_copy(
        update={
            "wecom_robot_mode": "long_connection",
            "wecom_robot_ws_url": f"{emulator.url}/emulator/ws",
            "wecom_robot_ping_seconds": 0.2,
            "wecom_robot_reconnect_seconds": 0.05,
            "wecom_robot_displaced_wait_seconds": DISPLACED_WAIT,
            "wecom_robot_lease_seconds": 3.0,  # renewals slip on a loaded machine
        })
    bot = await aiohttp_client(create_app(settings, clock=lambda: clock[0], scheduler=False))
    await import_directory(ORG)
    emulator.connect(own_url=emulator.url, bot_url=str(bot.make_url("")))
    await eventually(lambda: emulator.ws.connected, what="the bot subscribed")
    return LongWorld(emulator=emulator, bot=bot, settings=settings)


def as_world(world: LongWorld) -> WeComWorld:
    return WeComWorld(emulator=world.emulator, bot=world.bot, settings=world.settings)


async def test_subscribes_with_bot_id_and_secret_and_pings(longconn: LongWorld) -> None:
    hub = longconn.emulator.ws
    [subscribe] = [f for f in hub.frames if f.get("cmd") == "aibot_subscribe"]
    assert subscribe["body"] == {"bot_id": "aib-emulated-bot",
                                 "secret": "robot-long-connection-secret"}
    assert subscribe["headers"]["req_id"]
    await eventually(lambda: hub.pings >= 2, what="the bot pinged twice")
    assert len(hub.subscribed_at) == 1


async def test_a_command_is_applied_and_answered_on_its_req_id(longconn: LongWorld) -> None:
    number = await open_ticket(as_world(longconn))
    answer = await longconn.emulator.ws.message("sh.zhang", GROUP,
                                                "@投诉助手 /respond 1 已联系客户")
    assert answer["cmd"] == "aibot_respond_msg"
    assert answer["body"]["msgtype"] == "stream"
    assert f"#{number}" in answer["body"]["stream"]["content"]
    ticket = await Ticket.get(id=number)
    assert ticket.status.value == "responded"


async def test_a_repeated_msgid_is_applied_once_and_answered_alike(
    longconn: LongWorld,
) -> None:
    number = await open_ticket(as_world(longconn))
    hub = longconn.emulator.ws
    first = await hub.message("sh.zhang", GROUP, "@投诉助手 /respond 1 已联系客户", msgid="dup-1")
    events = await TicketEvent.filter(ticket_id=number).count()
    again = await hub.message("sh.zhang", GROUP, "@投诉助手 /respond 1 已联系客户", msgid="dup-1")
    assert again["body"]["stream"]["content"] == first["body"]["stream"]["content"]
    assert await TicketEvent.filter(ticket_id=number).count() == events
    assert await ProcessedCallback.filter(key="dup-1").count() == 1


async def test_a_card_click_is_answered_with_an_update_within_5_s(longconn: LongWorld) -> None:
    number = await open_ticket(as_world(longconn))
    hub = longconn.emulator.ws
    answer = await hub.message("sh.zhang", GROUP, "@投诉助手 /show 1")
    assert answer["body"]["msgtype"] == "template_card"
    card = answer["body"]["template_card"]
    update = await hub.click("sh.zhang", GROUP, card["task_id"], f"respond:{number}")
    assert update["cmd"] == "aibot_respond_update_msg"
    assert update["body"]["template_card"]["task_id"] == card["task_id"]
    assert (await Ticket.get(id=number)).status.value == "responded"


async def test_a_dropped_socket_is_reconnected(longconn: LongWorld) -> None:
    await open_ticket(as_world(longconn))
    hub = longconn.emulator.ws
    await hub.drop()
    await eventually(lambda: len(hub.subscribed_at) == 2 and hub.connected,
                     what="the bot subscribed again")
    answer = await hub.message("sh.zhang", GROUP, "@投诉助手 /respond 1 已联系客户")
    assert answer["cmd"] == "aibot_respond_msg"


async def test_a_displaced_connection_waits_and_warns_before_subscribing_again(
    longconn: LongWorld,
) -> None:
    hub = longconn.emulator.ws
    with capture_logs() as logs:
        await hub.displace()
        await eventually(lambda: len(hub.subscribed_at) == 2, what="the bot subscribed again")
    waited = hub.subscribed_at[1] - hub.displaced_at[0]
    assert waited >= DISPLACED_WAIT
    [warning] = [e for e in logs if e["event"] == "wecom_robot_displaced"]
    assert warning["log_level"] == "warning"
    assert warning["wait_seconds"] == DISPLACED_WAIT


async def test_a_wrong_secret_is_refused_and_never_connects(
    longconn: LongWorld,
) -> None:
    settings = longconn.settings.model_copy(update={"wecom_robot_secret": None})
    intruder = RobotConnection(settings, long_connection_handler(longconn.bot.app))
    intruder.lease_name = "another-deployment"  # its own lease: it connects at once
    with capture_logs() as logs:
        intruder.start()
        try:
            await eventually(lambda: any(e["event"] == "wecom_robot_subscribe_refused"
                                         for e in logs), what="the subscription was refused")
        finally:
            await intruder.stop()
    # The refused attempt did not take the robot from the live connection.
    assert len(longconn.emulator.ws.subscribed_at) == 1
    assert longconn.emulator.ws.connected


async def test_one_replica_holds_the_connection_and_another_takes_over_when_it_dies(
    longconn: LongWorld,
) -> None:
    await open_ticket(as_world(longconn))
    hub = longconn.emulator.ws
    first = longconn.connection
    second = RobotConnection(longconn.settings, long_connection_handler(longconn.bot.app))
    second.start()
    try:
        await eventually(lambda: hub.pings >= 3, what="the holder kept pinging")
        # The second replica waits: it never subscribed, the first is still live.
        assert not second.holding and not second.connected
        assert len(hub.subscribed_at) == 1
        lease = await Lease.get(name=first.lease_name)
        assert lease.holder == first.holder

        first.kill()  # the holder's process dies: no clean release of the lease
        await eventually(lambda: not hub.connected, what="the dead holder's socket closed")
        with pytest.raises(HubError):
            await hub.message("sh.zhang", GROUP, "hello")
        await eventually(lambda: second.connected and hub.connected,
                         seconds=30, what="the second replica took over within 30 s")
        assert len(hub.subscribed_at) == 2
        assert (await Lease.get(name=first.lease_name)).holder == second.holder
        answer = await hub.message("sh.zhang", GROUP, "@投诉助手 /respond 1 已联系客户")
        assert answer["cmd"] == "aibot_respond_msg"
        assert (await Ticket.get(id=1)).status.value == "responded"
    finally:
        await second.stop()


async def test_a_clean_stop_releases_the_lease(longconn: LongWorld) -> None:
    connection = longconn.connection
    await connection.stop()
    assert not await Lease.exists(name=connection.lease_name)


def notice(chatid: str, text: str) -> tuple[Notification, RenderedMessage]:
    row = Notification(kind="dispatched", medium="group", audience="group", recipient=chatid)
    return row, RenderedMessage(subject=text, text=text, html=text, markdown=text)


async def test_group_notices_are_pushed_where_the_chat_is_open_else_go_by_webhook(
    longconn: LongWorld,
) -> None:
    hub = longconn.emulator.ws
    await hub.message("sh.zhang", GROUP, "@投诉助手 /help")  # opens SH001's group to pushes
    transport = GroupTransport(longconn.bot.app[WECOM], pusher=longconn.connection)
    await transport.deliver(*notice(GROUP, "工单 #1 已派发"))
    await transport.deliver(*notice("wrGRP-HZ001", "工单 #2 已派发"))
    assert hub.pushes == [{"chatid": GROUP, "chat_type": 2, "msgtype": "markdown",
                           "markdown": {"content": "工单 #1 已派发"}}]
    [hook] = longconn.emulator.sent("webhook/send")
    assert hook["json"]["markdown"]["content"] == "工单 #2 已派发"


async def test_a_dispatch_is_pushed_into_the_group_with_its_card_and_a_click_there_responds(
    longconn: LongWorld, clock,
) -> None:
    hub = longconn.emulator.ws
    await hub.message("sh.zhang", GROUP, "@投诉助手 /help")
    number = await open_ticket(as_world(longconn))
    transports = transports_for(longconn.settings, longconn.bot.app[WECOM],
                                clock=lambda: clock[0], pusher=longconn.connection)
    await deliver_due({"group": transports["group"]}, now=clock[0])
    notice, card = [p for p in hub.pushes if p["chatid"] == GROUP]
    assert f"#{number}" in notice["markdown"]["content"]
    assert card["msgtype"] == "template_card"
    assert card["template_card"]["main_title"]["title"].startswith(f"#{number} ")
    assert card["template_card"]["button_list"] == [
        {"text": "处理", "style": 1, "key": f"respond:{number}"}]
    assert "replace_text" not in card["template_card"]  # the app's field, not the robot's
    assert await SentCard.filter(ticket_id=number, channel="robot", chatid=GROUP).count() == 1
    update = await hub.click("sh.zhang", GROUP, card["template_card"]["task_id"],
                             f"respond:{number}")
    assert update["cmd"] == "aibot_respond_update_msg"
    assert (await Ticket.get(id=number)).status.value == "responded"


async def test_an_answer_whose_connection_dropped_is_pushed_once_it_is_back(
    longconn: LongWorld,
) -> None:
    number = await open_ticket(as_world(longconn))
    hub = longconn.emulator.ws
    await hub.message("sh.zhang", GROUP, "@投诉助手 /help")
    # The network cuts the socket right behind the message: the bot reads the
    # message, then the close, before its answer is ready.
    with pytest.raises(HubError):
        await hub.message("sh.zhang", GROUP, "@投诉助手 /respond 1 已联系客户", drop_after=True)
    await eventually(lambda: any(f"#{number}" in p.get("markdown", {}).get("content", "")
                                 for p in hub.pushes), what="the answer pushed into the group")
    assert (await Ticket.get(id=number)).status.value == "responded"


async def test_the_emulator_refuses_a_push_the_platform_would(longconn: LongWorld) -> None:
    hub = longconn.emulator.ws
    await hub.message("sh.zhang", GROUP, "@投诉助手 /help")
    card = {"card_type": "button_interaction", "main_title": {"title": "#1"},
            "task_id": "t1", "replace_text": "已处理",
            "button_list": [{"text": "处理", "key": "respond:1"}]}
    assert not await longconn.connection.push_card(GROUP, card)
    assert hub.pushes == []


async def test_pushes_and_replies_keep_to_30_a_minute_per_chat_then_the_notice_waits(
    longconn: LongWorld,
) -> None:
    hub = longconn.emulator.ws
    await hub.message("sh.zhang", GROUP, "@投诉助手 /help")
    transport = GroupTransport(longconn.bot.app[WECOM], pusher=longconn.connection)
    for n in range(29):
        await transport.deliver(*notice(GROUP, f"通知 {n}"))
    # The reply to /help counted too: 29 pushes fit the minute; the 30th notice
    # waits for the chat's room (the outbox holds it), not the webhook's.
    with pytest.raises(RateLimited) as paced:
        await transport.deliver(*notice(GROUP, "通知 29"))
    assert 0 < paced.value.retry_after <= 60
    assert len(hub.pushes) == 29 and hub.refused == []
    assert longconn.emulator.sent("webhook/send") == []


def test_long_connection_mode_without_bot_id_and_secret_is_refused_at_start() -> None:
    settings = load_settings(database_url="sqlite://:memory:", wecom_robot_mode="long_connection")
    with pytest.raises(SettingsError, match="WECOM_ROBOT_BOT_ID"):
        create_app(settings, scheduler=False)


async def test_the_demo_runs_in_long_connection_mode(aiohttp_server, aiohttp_client,
                                                     tmp_path) -> None:
    port = free_port()
    settings = load_settings(http_port=port, outbox_interval_seconds=0.1, timezone="Asia/Shanghai",
                             wecom_robot_mode="long_connection")
    app = create_demo_app(settings, database=tmp_path / "demo.sqlite3")
    demo = await aiohttp_client(await aiohttp_server(app, port=port))
    connection = app[ROBOT_CONNECTION]
    await eventually(lambda: connection.connected, what="the demo's bot subscribed")
    await say(demo, "sh.zhang", "wrGRP-SH001", "/help")
    reply = await wait_for(demo, lambda e: e["sender"] == "bot" and e["via"] == "robot")
    assert reply["chat"] == "wrGRP-SH001" and "/respond" in reply["text"]
    log = await (await demo.get("/dev/emulator/log")).json()
    assert [r for r in log["requests"] if r["path"] == "ws:/wecom/robot"]


async def test_check_subscribes_when_no_replica_holds_the_connection(
    database_url: str, emulator: WeComEmulator,
) -> None:
    settings = wecom_settings(database_url).model_copy(update={
        "wecom_robot_mode": "long_connection",
        "wecom_robot_ws_url": f"{emulator.url}/emulator/ws"})
    async with open_database(database_url):
        pass
    finding = await check_robot_connection(settings)
    assert finding is not None and finding.status == "ok", finding
    assert len(emulator.ws.subscribed_at) == 1
    wrong = settings.model_copy(update={"wecom_robot_secret": SecretStr("not-the-secret")})
    refused = await check_robot_connection(wrong)
    assert refused is not None and refused.status == "fail"
    assert "WECOM_ROBOT_SECRET" in refused.detail
    nowhere = settings.model_copy(update={"wecom_robot_ws_url": "ws://127.0.0.1:9/ws"})
    unreachable = await check_robot_connection(nowhere)
    assert unreachable is not None and "WECOM_ROBOT_WS_URL" in unreachable.detail


async def test_check_does_not_displace_the_running_bots_connection(longconn: LongWorld) -> None:
    finding = await check_robot_connection(longconn.settings)
    assert finding is not None and finding.status == "ok", finding
    assert "subscription not tried" in finding.detail
    assert len(longconn.emulator.ws.subscribed_at) == 1
    assert longconn.connection.connected and longconn.emulator.ws.connected
