"""A busy group under its send limit (SQLite and PostgreSQL, the WeChat Work
emulator over HTTP, which refuses a webhook's 21st post in a minute): more
notices than the limit lets through arrive as one digest naming every ticket,
the queue does not grow, a failed digest is retried from the database, and a
group the app created is paced the same way."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from bot.intake import open_complaint
from bot.ledger import Ledger
from bot.notify import Transport
from bot.notify.wecom import GroupTransport
from bot.wecom.client import WeComClient
from bot.wecom.emulator import WeComEmulator
from models import GroupChat, Notification, SendSlot
from schedulers.outbox import DIGESTED, deliver_due
from tests.conftest import T0, WECOM_SECRETS
from tests.factories import CALL_CENTRE
from tests.test_outbox import FAST, Delivery, complaint

MINUTE = timedelta(minutes=1)


async def dispatch(ledger: Ledger, count: int, first: int = 0) -> list[int]:
    """`count` new complaints at SH001: each posts a notice into its group."""
    numbers = []
    for i in range(first, first + count):
        # Each a different customer: no repeat complaint (R6) to tell the region.
        out = await open_complaint(complaint(vin=f"LFV2A21K6A{i:07d}", plate=f"沪D{i:05d}",
                                             customer_phone=f"137{i:08d}"),
                                   ledger, actor=CALL_CENTRE, source="api", now=T0)
        numbers.append(out.ticket.number)
    return numbers


@asynccontextmanager
async def posting(emulator: WeComEmulator, clock: list,
                  **limits: object) -> AsyncIterator[dict[str, Transport]]:
    """The group transport (the only medium delivered), on the test clock."""
    client = WeComClient(
        api_base=f"{emulator.url}/cgi-bin", corp_id=WECOM_SECRETS["wecom_corp_id"],
        secret=WECOM_SECRETS["wecom_secret"], agent_id=WECOM_SECRETS["wecom_agent_id"],
        backoff=0.01, clock=lambda: clock[0], **limits,  # type: ignore[arg-type]
    )
    try:
        yield {"group": GroupTransport(client)}
    finally:
        await client.close()


def one_digest_naming(emulator: WeComEmulator, numbers: list[int]) -> str:
    """The one post SH001's group got: a digest with a line for each ticket."""
    [digest] = Delivery(None, emulator, {}).webhook_posts("hook-sh001")  # type: ignore[arg-type]
    for number in numbers:
        assert f"\n- #{number} " in digest, number
    return digest


async def waiting_posts() -> int:
    return await Notification.filter(medium="group", status__in=("pending", "sending")).count()


async def test_more_than_a_groups_limit_in_a_minute_arrives_as_one_digest(
    ledger: Ledger, emulator: WeComEmulator, clock: list
):
    numbers = await dispatch(ledger, 25)
    async with posting(emulator, clock) as groups:
        stats = await deliver_due(groups, now=T0, retry=FAST)
        assert (stats.digests, stats.digested, stats.sent) == (1, 25, 0)
        digest = one_digest_naming(emulator, numbers)
        assert "本群通知汇总：25 条" in digest
        assert len(digest.encode()) <= GroupTransport.DIGEST_BYTES
        assert await Notification.filter(medium="group", status=DIGESTED).count() == 25
        # The minute goes on at 90 notices a minute, a round every 2 s: the
        # group's posts are spread over the minute, each carrying what came
        # since the last; nothing piles up and WeChat Work refuses nothing.
        for second in range(2, 60, 2):
            clock[0] = T0 + timedelta(seconds=second)
            await dispatch(ledger, 3, first=100 + 10 * second)
            await deliver_due(groups, now=clock[0], retry=FAST)
            assert await waiting_posts() <= 6, second
        clock[0] = T0 + MINUTE + timedelta(seconds=15)
        await deliver_due(groups, now=clock[0], retry=FAST)
    assert await waiting_posts() == 0
    tried = emulator.sent("webhook/send")
    assert all(r["answer"]["errcode"] == 0 for r in tried), "never past the limit"
    assert len(tried) <= 21, "at most 20 posts in any minute"
    delivered = "\n".join(r["json"]["markdown"]["content"] for r in tried)
    every = await Notification.filter(medium="group").values_list("ticket_id", flat=True)
    assert len(every) == 25 + 29 * 3
    for number in every:
        assert f"#{number}" in delivered, number


async def test_a_group_at_its_limit_waits_and_then_gets_one_digest(
    ledger: Ledger, emulator: WeComEmulator, clock: list
):
    """The minute's 20 posts are used: the rows wait, without using
    a try, until the oldest post leaves the window (a little later, spread),
    then go out as one digest."""
    await SendSlot.bulk_create([SendSlot(key="webhook:hook-sh001", at=T0 - timedelta(seconds=s))
                                for s in range(20, 40)])
    numbers = await dispatch(ledger, 3)
    async with posting(emulator, clock) as groups:
        stats = await deliver_due(groups, now=T0, retry=FAST)
        assert (stats.paced, stats.sent, stats.digests) == (3, 0, 0)
        held = await Notification.filter(medium="group")
        assert {(n.status, n.tries) for n in held} == {("pending", 0)}
        free_at = T0 + timedelta(seconds=21)  # the oldest of the 20 was 39 s ago
        [wake] = {n.next_attempt_at for n in held}
        assert free_at <= wake <= free_at + timedelta(seconds=21 * 0.2)
        assert emulator.sent("webhook/send") == []
        clock[0] = wake
        later = await deliver_due(groups, now=wake, retry=FAST)
    assert (later.digests, later.digested) == (1, 3)
    one_digest_naming(emulator, numbers)


async def test_a_failed_digest_is_retried_from_the_database(
    ledger: Ledger, emulator: WeComEmulator, clock: list
):
    numbers = await dispatch(ledger, 4)
    async with posting(emulator, clock, webhook_limits=((4, 60.0),)) as groups:
        emulator.fail_next(3, status=502)  # the client's three attempts
        failed = await deliver_due(groups, now=T0, retry=FAST)
        assert (failed.digests, failed.retrying) == (0, 4)
        rows = await Notification.filter(medium="group")
        assert {(n.status, n.tries) for n in rows} == {("pending", 1)}
        assert all("502" in n.last_error for n in rows)
        again = T0 + FAST.backoff
        clock[0] = again
        retried = await deliver_due(groups, now=again, retry=FAST)
    assert (retried.digests, retried.digested) == (1, 4)
    one_digest_naming(emulator, numbers)
    assert {n.status for n in await Notification.filter(medium="group")} == {DIGESTED}


async def test_a_group_the_app_created_is_paced_and_digested_too(
    ledger: Ledger, emulator: WeComEmulator, clock: list
):
    await GroupChat.filter(chatid="wrGRP-SH001").update(webhook_key="", app_chat_id="wrAPPSH001")
    emulator.appchats.adopt("wrAPPSH001", ["sh.zhang", "sh.li"])
    numbers = await dispatch(ledger, 5)
    async with posting(emulator, clock, appchat_limits=((4, 60.0),)) as groups:
        stats = await deliver_due(groups, now=T0, retry=FAST)
        assert (stats.digests, stats.digested) == (1, 5)
        more = await dispatch(ledger, 1, first=10)
        single = await deliver_due(groups, now=T0, retry=FAST)
        assert single.sent == 1, "room for one more, and half the minute's left: as it is"
        await dispatch(ledger, 1, first=20)
        held = await deliver_due(groups, now=T0, retry=FAST)
        assert held.paced == 1, "the rest of the minute's 4 is kept for what comes"
    posts = emulator.appchats.posts("wrAPPSH001")
    assert len(posts) == 2 and all(f"#{n}" in posts[0] for n in numbers)
    assert f"#{more[0]}" in posts[1] and "汇总" not in posts[1]
    assert emulator.sent("webhook/send") == []
