"""R8: a major complaint gets its crisis group, end to end through the WeChat
Work emulator: created once (appchat/create) with the dealer's leaders, the
region's handlers and managers, the brand division and legal; the facts and
the ticket card posted there; later notices of the ticket follow; an
escalation to HQ adds HQ's people (appchat/update); the employee complained
about is never a member (R22)."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest

from bot.crisis import crisis_chatid
from bot.keys import WECOM
from bot.wecom.client import WeComError
from bot.wecom.emulator import WeComEmulator
from models import Notification, Ticket
from schedulers.outbox import deliver_due
from schedulers.runner import transports_for
from tests.conftest import WeComWorld
from tests.test_conversation import Conversation
from tests.test_wecom_client import make_client

SH = "wrGRP-SH001"
MEMBERS = {"sh.zhou", "sh.wu", "east.he", "east.lin", "east.gao", "brand.xie", "legal.han"}


@pytest.fixture
async def talk(wecom: WeComWorld, clock: list[datetime]) -> Conversation:
    transports = transports_for(wecom.settings, wecom.bot.app[WECOM], clock=lambda: clock[0])
    return Conversation(wecom, clock, transports)


def creates(talk: Conversation) -> list[dict]:
    """Every appchat/create call the bot made, answered or refused."""
    return talk.emulator.sent("appchat/create")


async def test_r8_major_at_intake_creates_one_group_with_facts_and_card(
        talk: Conversation) -> None:
    n = await talk.complaint(channel="local_media")
    await talk.deliver()
    chatid = crisis_chatid(n)
    chats = talk.emulator.appchats.chats
    assert list(chats) == [chatid]
    assert set(chats[chatid]["userlist"]) == MEMBERS
    assert chats[chatid]["owner"] in MEMBERS
    assert f"#{n}" in chats[chatid]["name"]
    facts, card = talk.emulator.appchats.posts(chatid)
    assert f"#{n}" in facts and "重大投诉处理小组" in facts and "李先生" in facts
    assert f"#{n}" in card and "投诉内容：变速箱顿挫" in card
    assert (await Ticket.get(id=n)).crisis_chatid == chatid

    # Nothing more on later rounds.
    talk.later(60)
    await talk.deliver()
    assert len(creates(talk)) == 1
    assert len(talk.emulator.appchats.posts(chatid)) == 2


async def test_r8_marked_major_later_creates_the_group_then_notices_follow(
        talk: Conversation) -> None:
    n = await talk.complaint()
    await talk.deliver()
    assert creates(talk) == []
    assert (await Ticket.get(id=n)).crisis_chatid is None

    reply = await talk.says("sh.zhou", SH, f"/major {n} 客户在展厅闹事")
    assert f"#{n}" in reply
    await talk.deliver()
    chatid = crisis_chatid(n)
    assert set(talk.emulator.appchats.chats[chatid]["userlist"]) == MEMBERS
    assert len(talk.emulator.appchats.posts(chatid)) == 2

    # A later change of the ticket that tells people something is posted there too.
    talk.later(10)
    await talk.says("east.he", "wrGRP-EAST", f"/escalate {n} 经销商无法处理")
    await talk.deliver()
    later = talk.emulator.appchats.posts(chatid)[2:]
    assert later and all(f"#{n}" in post for post in later)
    assert len(creates(talk)) == 1


def crisis_only(talk: Conversation) -> dict:
    """The crisis transport alone: the emulator's faults meet its calls only."""
    return {"crisis": talk.transports["crisis"]}


async def test_r8_a_failed_create_is_retried_and_makes_one_group(
        talk: Conversation) -> None:
    n = await talk.complaint(channel="local_media")
    talk.emulator.fail_next(3, status=503)  # every try of the client's create
    stats = await deliver_due(crisis_only(talk), now=talk.clock[0])
    assert stats.retrying == 1
    row = await Notification.get(ticket_id=n, kind="crisis_group")
    assert row.status == "pending" and "503" in row.last_error
    assert talk.emulator.appchats.chats == {}
    assert (await Ticket.get(id=n)).crisis_chatid is None

    talk.later(60)
    await deliver_due(crisis_only(talk), now=talk.clock[0])
    assert list(talk.emulator.appchats.chats) == [crisis_chatid(n)]
    assert [r["answer"].get("errcode") for r in creates(talk)] == [None, None, None, 0]
    assert (await Notification.get(id=row.id)).status == "sent"
    assert len(talk.emulator.appchats.posts(crisis_chatid(n))) == 2


async def test_r8_a_group_that_exists_already_counts_as_made(talk: Conversation) -> None:
    n = await talk.complaint(channel="local_media")
    chatid = crisis_chatid(n)
    # The create goes through; the facts' post then fails every try.
    talk.emulator.fail_next(1)
    talk.emulator.fail_next(3, status=503)
    stats = await deliver_due(crisis_only(talk), now=talk.clock[0])
    assert stats.retrying == 1
    assert list(talk.emulator.appchats.chats) == [chatid]
    assert (await Ticket.get(id=n)).crisis_chatid == chatid
    # As if the worker had died between the create and storing its chatid.
    await Ticket.filter(id=n).update(crisis_chatid=None)

    talk.later(60)
    await deliver_due(crisis_only(talk), now=talk.clock[0])
    assert [r["answer"]["errcode"] for r in creates(talk)] == [0, 86215]
    assert list(talk.emulator.appchats.chats) == [chatid]
    assert (await Ticket.get(id=n)).crisis_chatid == chatid
    assert (await Notification.get(ticket_id=n, kind="crisis_group")).status == "sent"
    assert len(talk.emulator.appchats.posts(chatid)) == 2


async def test_r8_two_workers_at_once_make_one_group(talk: Conversation) -> None:
    n = await talk.complaint(channel="local_media")
    now = talk.clock[0]
    await asyncio.gather(deliver_due(talk.transports, now=now),
                         deliver_due(talk.transports, now=now))
    assert list(talk.emulator.appchats.chats) == [crisis_chatid(n)]
    assert len([r for r in creates(talk) if r["answer"]["errcode"] == 0]) == 1
    assert len(talk.emulator.appchats.posts(crisis_chatid(n))) == 2


async def test_r22_the_employee_complained_about_is_never_a_member(
        talk: Conversation) -> None:
    n = await talk.complaint(channel="local_media", about_staff="sh.zhou")
    await talk.deliver()
    chatid = crisis_chatid(n)
    members = set(talk.emulator.appchats.chats[chatid]["userlist"])
    assert members == MEMBERS - {"sh.zhou"}
    facts, card = talk.emulator.appchats.posts(chatid)
    for post in (facts, card):
        assert "李先生" not in post and "变速箱顿挫" not in post and "sh.zhou" not in post
        assert f"/show {n}" in post  # what a group reads instead (withheld_text)


async def test_r8_emulator_checks_appchat_create_like_the_platform(
        db: str, emulator: WeComEmulator, clock: list) -> None:
    api = make_client(emulator, clock)
    try:
        async def refused(name: str, owner: str, userlist: list[str], chatid: str) -> int:
            with pytest.raises(WeComError) as caught:
                await api.create_appchat(name, owner, userlist, chatid)
            return caught.value.errcode

        assert await refused("群", "a", ["a"], "c1") == 86006  # fewer than 2
        assert await refused("群", "a", [f"u{i}" for i in range(2001)], "c1") == 86006
        assert await refused("群", "z", ["a", "b"], "c1") == 86005  # owner not a member
        assert await refused("群", "a", ["a", "b"], "bad-chatid") == 86001
        assert await refused("群", "a", ["a", "b"], "c" * 33) == 86001
        answer = await api.create_appchat("群", "a", ["a", "b"], "c1")
        assert answer["chatid"] == "c1"
        assert emulator.appchats.chats["c1"] == {"name": "群", "owner": "a",
                                                 "userlist": ["a", "b"]}
        assert await refused("群", "b", ["b", "c"], "c1") == 86215  # chatid taken
        emulator.known_users = {"a", "b"}
        assert await refused("群", "a", ["a", "x"], "c2") == 86216  # no such member
    finally:
        await api.close()


async def test_r8_a_ticket_major_before_crisis_groups_gets_one_with_its_next_notice(
        talk: Conversation) -> None:
    n = await talk.complaint()
    await talk.deliver()
    # Marked major before this release: no crisis row was ever written.
    await Ticket.filter(id=n).update(major=True, major_since=talk.clock[0])
    talk.later(10)
    await talk.says("east.he", "wrGRP-EAST", f"/escalate {n} 经销商无法处理")
    await talk.deliver()
    chatid = crisis_chatid(n)
    assert list(talk.emulator.appchats.chats) == [chatid]
    facts, card, *later = talk.emulator.appchats.posts(chatid)
    assert "重大投诉处理小组" in facts and f"#{n}" in card
    assert later and all(f"#{n}" in post for post in later)
    assert await Notification.filter(ticket_id=n, kind="crisis_group").count() == 1


async def test_r8_an_escalation_to_hq_brings_hq_into_the_crisis_group(
        talk: Conversation) -> None:
    n = await talk.complaint(channel="local_media")
    await talk.deliver()
    chatid = crisis_chatid(n)
    assert set(talk.emulator.appchats.chats[chatid]["userlist"]) == MEMBERS
    # The region hands it to HQ: HQ's handler and managers join; nobody leaves.
    talk.later(10)
    reply = await talk.says("east.he", "wrGRP-EAST", f"/escalate {n} 需本部协调")
    assert f"#{n}" in reply and (await Ticket.get(id=n)).owner_level.value == "hq"
    await talk.deliver()
    [update] = talk.emulator.sent("appchat/update")
    assert update["json"]["chatid"] == chatid
    assert sorted(update["json"]["add_user_list"]) == ["hq.cao", "hq.deng", "hq.feng"]
    assert update["answer"]["errcode"] == 0
    assert set(talk.emulator.appchats.chats[chatid]["userlist"]) == MEMBERS | {
        "hq.feng", "hq.deng", "hq.cao"}
    # They joined before the escalation's notice was posted there.
    calls = [r["path"] for r in talk.emulator.requests if "/appchat/" in r["path"]]
    assert calls[-2:] == ["/cgi-bin/appchat/update", "/cgi-bin/appchat/send"]
    # A later change that brings nobody new adds nobody.
    talk.later(10)
    await talk.says("hq.feng", "wrGRP-HQ", f"/respond {n} 本部已联系客户")
    await talk.deliver()
    assert len(talk.emulator.sent("appchat/update")) == 1


async def test_r8_emulator_checks_appchat_update_like_the_platform(
        db: str, emulator: WeComEmulator, clock: list) -> None:
    api = make_client(emulator, clock)
    emulator.known_users = {"a", "b", "c"}
    try:
        async def refused(chatid: str, added: list[str]) -> int:
            with pytest.raises(WeComError) as caught:
                await api.update_appchat(chatid, added)
            return caught.value.errcode

        await api.create_appchat("群", "a", ["a", "b"], "c1")
        assert await refused("c9", ["c"]) == 86001  # not a group the app created
        assert await refused("c1", ["x"]) == 86216  # no such member
        await api.update_appchat("c1", ["c", "a"])
    finally:
        await api.close()
    assert emulator.appchats.chats["c1"]["userlist"] == ["a", "b", "c"]
