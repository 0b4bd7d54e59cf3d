"""A group posted to by the smart robot's push (long-connection mode, the
emulator's WebSocket, which counts the robot's replies and pushes per chat and
refuses the 31st in a minute with 45009, as doc 101463 says): the outbox paces
the group and finds it busy by the chat's 30 a minute, not by its webhook's 20;
each channel's sends use its own slots only; and a refusal the bot's own count
did not foresee holds the notice instead of losing it."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.keys import LEDGER, WECOM
from bot.notify import Transport
from bot.notify.wecom import GroupTransport
from bot.wecom.emulator_ws import HubError
from bot.wecom.longconn import PushRefused
from bot.wecom.pacing import robot_chat_key
from models import Notification, SendSlot
from schedulers.outbox import DIGESTED, deliver_due
from tests.test_outbox import FAST
from tests.test_outbox_digest import dispatch, waiting_posts
from tests.test_robot_long_connection import LongWorld, longconn  # noqa: F401  (fixture)
from tests.test_webhooks_robot import GROUP

HOOK = "webhook:hook-sh001"  # SH001's group webhook (examples/org.yaml)
PUSHES = robot_chat_key(GROUP)


def posting(world: LongWorld, clock: list) -> dict[str, Transport]:
    """The group transport as the runner makes it in long-connection mode."""
    return {"group": GroupTransport(world.bot.app[WECOM], pusher=world.connection,
                                    clock=lambda: clock[0])}


async def open_to_pushes(world: LongWorld) -> None:
    """Someone writes to the robot in SH001's group (its reply is the chat's first message)."""
    await world.emulator.ws.message("sh.zhang", GROUP, "@投诉助手 /help")


async def slots(key: str) -> int:
    return await SendSlot.filter(key=key).count()


def push_markdown(body: dict) -> str:
    return body["markdown"]["content"] if body["msgtype"] == "markdown" else ""


async def test_more_than_a_groups_push_limit_in_a_minute_arrives_as_one_pushed_digest(
    longconn: LongWorld, clock: list,  # noqa: F811
) -> None:
    hub = longconn.emulator.ws
    await open_to_pushes(longconn)
    clock[0] += timedelta(seconds=5)  # past the spacing after the reply (2 × 60 s / 30)
    numbers = await dispatch(longconn.bot.app[LEDGER], 31)
    groups = posting(longconn, clock)
    stats = await deliver_due(groups, now=clock[0], retry=FAST)
    assert (stats.digests, stats.digested, stats.sent) == (1, 31, 0)
    [digest] = hub.pushes
    assert digest["chatid"] == GROUP and "本群通知汇总：31 条" in push_markdown(digest)
    for number in numbers:
        assert f"\n- #{number} " in push_markdown(digest), number
    assert await Notification.filter(medium="group", status=DIGESTED).count() == 31
    # The reply and the digest used the chat's slots; the webhook's are untouched.
    assert (await slots(PUSHES), await slots(HOOK)) == (2, 0)
    # The minute goes on at 90 notices a minute: the group's pushes are spread
    # over it, nothing piles up, and WeChat Work refuses nothing.
    for second in range(2, 60, 2):
        clock[0] += timedelta(seconds=2)
        await dispatch(longconn.bot.app[LEDGER], 3, first=100 + 10 * second)
        await deliver_due(groups, now=clock[0], retry=FAST)
        assert await waiting_posts() <= 6, second
    assert len(hub.pushes) <= 30, "one push every 4 s at most"
    clock[0] += timedelta(seconds=75)
    await deliver_due(groups, now=clock[0], retry=FAST)
    assert await waiting_posts() == 0
    assert hub.refused == [] and longconn.emulator.sent("webhook/send") == []
    delivered = "\n".join(push_markdown(p) for p in hub.pushes)
    for number in await Notification.filter(medium="group").values_list("ticket_id", flat=True):
        assert f"#{number}" in delivered, number


async def test_a_group_under_its_push_limit_gets_its_notices_as_they_are(
    longconn: LongWorld, clock: list,  # noqa: F811
) -> None:
    """12 notices would make the webhook's 20 a minute busy (fewer than half
    left) but leave more than half of the chat's 30: each goes as it is,
    by push, with its card."""
    hub = longconn.emulator.ws
    await open_to_pushes(longconn)
    numbers = await dispatch(longconn.bot.app[LEDGER], 12)
    stats = await deliver_due(posting(longconn, clock), now=clock[0], retry=FAST)
    assert (stats.sent, stats.digests, stats.paced) == (12, 0, 0)
    notices = [p for p in hub.pushes if p["msgtype"] == "markdown"]
    assert [n for n in numbers if any(f"#{n}" in push_markdown(p) for p in notices)] == numbers
    assert len(hub.pushes) == 24, "each notice and its card"
    assert (await slots(PUSHES), await slots(HOOK)) == (25, 0)
    assert hub.refused == [] and longconn.emulator.sent("webhook/send") == []


async def test_a_groups_push_slots_are_not_used_by_its_webhook_posts(
    longconn: LongWorld, clock: list,  # noqa: F811
) -> None:
    """Nobody has written to the robot in the group: its notices go by its
    webhook and use the webhook's slots only (the refused first push gives its
    slot back), until someone writes there and the robot pushes again."""
    hub = longconn.emulator.ws
    groups = posting(longconn, clock)
    await dispatch(longconn.bot.app[LEDGER], 3)
    stats = await deliver_due(groups, now=clock[0], retry=FAST)
    assert (stats.sent, stats.digests) == (3, 0)
    assert len(longconn.emulator.sent("webhook/send")) == 3 and hub.pushes == []
    assert (await slots(PUSHES), await slots(HOOK)) == (0, 3)
    # The webhook's posts count against the webhook's room only.
    assert (await groups["group"].room(GROUP)).free == 20 - 3  # type: ignore[attr-defined]
    await open_to_pushes(longconn)
    assert (await groups["group"].room(GROUP)).free == 30 - 1  # type: ignore[attr-defined]
    await dispatch(longconn.bot.app[LEDGER], 1, first=10)
    again = await deliver_due(groups, now=clock[0], retry=FAST)
    assert again.sent == 1
    assert len(longconn.emulator.sent("webhook/send")) == 3, "pushed, not posted"
    assert (await slots(PUSHES), await slots(HOOK)) == (1 + len(hub.pushes), 3)


async def test_the_emulator_refuses_the_31st_message_into_a_chat_in_a_minute(
    longconn: LongWorld, clock: list,  # noqa: F811
) -> None:
    """Replies and pushes together, per chat, on the emulator's clock (sent
    here past the bot's own count, as another deployment of the robot would)."""
    hub = longconn.emulator.ws
    await open_to_pushes(longconn)
    await hub.message("hz.wang", "wrGRP-HZ001", "@投诉助手 /help")
    body = {"chatid": GROUP, "chat_type": 2, "msgtype": "markdown",
            "markdown": {"content": "推送"}}
    for _ in range(29):
        await longconn.connection.push(body)
    with pytest.raises(PushRefused) as refused:
        await longconn.connection.push(body)
    assert refused.value.errcode == 45009
    with pytest.raises(HubError, match="45009"):
        await hub.message("sh.zhang", GROUP, "@投诉助手 /help")
    await longconn.connection.push({**body, "chatid": "wrGRP-HZ001"})  # another chat's own
    clock[0] += timedelta(minutes=1)
    await longconn.connection.push(body)
    assert len(hub.refused) == 1 and len(hub.pushes) == 31


async def test_a_refusal_the_bots_count_did_not_foresee_holds_the_notice(
    longconn: LongWorld, clock: list,  # noqa: F811
) -> None:
    """Another deployment used the chat's minute: WeChat Work refuses the push
    with 45009, and the notice waits a minute, its try not counted; it goes
    neither by the webhook nor twice."""
    hub = longconn.emulator.ws
    await open_to_pushes(longconn)
    body = {"chatid": GROUP, "chat_type": 2, "msgtype": "markdown",
            "markdown": {"content": "别处的推送"}}
    for _ in range(29):
        await longconn.connection.push(body)
    await dispatch(longconn.bot.app[LEDGER], 1)
    groups = posting(longconn, clock)
    stats = await deliver_due(groups, now=clock[0], retry=FAST)
    assert (stats.paced, stats.sent, stats.retrying) == (1, 0, 0)
    [row] = await Notification.filter(medium="group")
    assert (row.status, row.tries) == ("pending", 0)
    assert row.next_attempt_at >= clock[0] + timedelta(seconds=60)
    assert longconn.emulator.sent("webhook/send") == []
    clock[0] = row.next_attempt_at
    later = await deliver_due(groups, now=clock[0], retry=FAST)
    assert later.sent == 1 and len(hub.refused) == 1
