"""SIGKILL the bot in the middle of a burst of robot callbacks, restart it,
let WeChat Work re-deliver what was not acknowledged: every command is applied
once and every notice it caused arrives once (issue 7).

The bot runs as `python -m bot.cli serve` in its own process; this process
plays WeChat Work twice over: the emulator serves the API the outbox sends
through (group posts, app cards), and a burst of 1,000 encrypted robot
callbacks, a tenth of them duplicated as WeChat Work does, goes out over 24
connections. When 40 % are acknowledged the bot is killed; the restarted bot
gets again every callback not answered with a 200, with its msgid.

Per ticket, `/followup` and `/resolve` may come in either order and apply in
either order; `/resolve` posts a notice into the call centre's group. A few
tickets are at their second follow-up: the third escalates them to the region
(group posts, the region handler's card, the manager's e-mail).

A group post or card the API accepted just before the kill, whose row the bot
could not yet mark sent, goes out again after the restart: WeChat Work's
appchat/send and webhook/send have no idempotency key, so the sends in flight
(a few per medium at once; a digest carries many notices) are the only
duplicates allowed, and the test checks they are exactly those. The call
centre's group gets its notices as digests once they come faster than its
limit lets through: each digest line counts as that notice's post.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
import yaml

from bench.fill import fill_tickets, group_command
from bot.clock import utcnow
from bot.db import open_database
from bot.directory_import import import_directory
from bot.domain.enums import Status
from bot.domain.policy import Policy
from bot.policy_book import PolicyBook
from bot.render.cards import ticket_of_task
from bot.wecom.crypto import CallbackCipher
from bot.wecom.emulator import WeComEmulator
from commands.router import FAILURE
from models import GroupChat, Notification, ProcessedCallback, Ticket, TicketEvent
from tests.conftest import ORG, TOKEN, WECOM_SECRETS, _truncate_postgres, wecom_settings
from tests.test_crash_restart import Bot
from tests.test_notify_email import Mailbox, free_port
from tests.waiting import eventually

PLAIN = 490  # tickets getting /followup and /resolve
ESCALATING = 20  # tickets getting the /followup that escalates them
DUPLICATED = 0.1  # the share of callbacks WeChat Work sends twice
CONNECTIONS = 24
KILL_AT = 0.4  # the share acknowledged when the bot is killed
CC_APP_CHAT = "wrAPPCHAT-CC"
TICKET_NUMBER = re.compile(r"#(\d+)")
DIGEST_LINE = re.compile(r"^- #(\d+)", re.MULTILINE)


def org_with_app_chat(tmp_path: Path) -> Path:
    """The example directory, but the call centre's group is an app chat: its
    webhook would take 20 posts a minute, the 490 notices here need more."""
    org = yaml.safe_load(ORG.read_text(encoding="utf-8"))
    for group in org["groups"]:
        if group["kind"] == "call_centre":
            group.pop("webhook_key")
            group["app_chat_id"] = CC_APP_CHAT
    path = tmp_path / "org.yaml"
    path.write_text(yaml.safe_dump(org, allow_unicode=True), encoding="utf-8")
    return path


async def seed(policy: Policy, org: Path, *, plain: int = PLAIN, escalating: int = ESCALATING
               ) -> tuple[list[int], list[int]]:
    """Responded tickets with a first solution: `plain` ones, and `escalating`
    ones at their second follow-up already. Stored in bulk (the commands are
    under test); none is due for anything for an hour."""
    await import_directory(org)
    book = PolicyBook(policy)
    await book.store_current()
    now = utcnow()
    numbers = await fill_tickets(plain + escalating, dispatched_at=now - timedelta(minutes=30),
                                 policy_digest=book.current.digest)
    solution = {"demand": "更换阀体", "cause": "阀体磨损", "solution": "免费更换阀体",
                "customer_accepts": True, "return_visit": True}
    responded, planned = now - timedelta(minutes=20), now - timedelta(minutes=10)
    await Ticket.filter(id__in=numbers).update(
        status=Status.SOLUTION_PROPOSED, responded_at=responded, owner_responded_at=responded,
        first_solution_at=planned, owner_solution_at=planned, solution=solution)
    await Ticket.filter(id__in=numbers[plain:]).update(status=Status.FOLLOWING_UP,
                                                       followup_count=2)
    return numbers[:plain], numbers[plain:]


@dataclass
class Delivery:
    """One robot callback as WeChat Work posts it (a duplicate is a second Delivery)."""

    msgid: str
    number: int
    kind: str
    params: dict[str, str]
    body: bytes


def callbacks(cipher: CallbackCipher, plain: list[int], escalating: list[int]) -> list[Delivery]:
    """Every command once, shuffled, then a tenth of them again, some right after
    the first copy (concurrent) and some later."""
    rng = random.Random(7)
    commands = [(n, "followup", f"/followup {n} 客户确认方案") for n in plain + escalating]
    commands += [(n, "resolved", f"/resolve {n} 已更换阀体") for n in plain]
    rng.shuffle(commands)
    timestamp = str(int(time.time()))
    built = []
    for number, kind, text in commands:
        msgid, params, body = group_command(cipher, number, text, timestamp=timestamp,
                                            aibotid="aib-emulated")
        built.append(Delivery(msgid, number, kind, params, body))
    deliveries = list(built)
    for original in rng.sample(built, int(len(built) * DUPLICATED)):
        at = deliveries.index(original) + rng.choice((1, 2, rng.randrange(1, 200)))
        deliveries.insert(min(at, len(deliveries)), original)
    return deliveries


@dataclass
class Sender:
    """WeChat Work posting callbacks: which msgids got a 200, and what the bot said."""

    url: str
    cipher: CallbackCipher
    acked: set[str] = field(default_factory=set)
    failed: int = 0
    replies: list[str] = field(default_factory=list)

    async def send(self, deliveries: list[Delivery], *, stop: asyncio.Event | None = None
                   ) -> None:
        """Post `deliveries` over CONNECTIONS connections, until `stop` is set."""
        queue = list(reversed(deliveries))
        connector = aiohttp.TCPConnector(limit=CONNECTIONS, force_close=False)
        async with aiohttp.ClientSession(connector=connector) as http:

            async def worker() -> None:
                while queue and not (stop and stop.is_set()):
                    await self.post(http, queue.pop())

            await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))

    async def post(self, http: aiohttp.ClientSession, delivery: Delivery) -> None:
        try:
            async with http.post(self.url, params=delivery.params, data=delivery.body,
                                 headers={"Content-Type": "application/json"}) as resp:
                text = await resp.text()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError):
            self.failed += 1  # the bot died under it: WeChat Work will re-deliver
            return
        if status != 200:
            self.failed += 1
            return
        envelope = json.loads(text)
        reply = self.cipher.open_robot_reply(envelope, now=utcnow())
        self.replies.append(reply["stream"]["content"])
        self.acked.add(delivery.msgid)


def received_posts(emulator: WeComEmulator) -> list[tuple[str, str, int]]:
    """(path, where, ticket) of every API call WeChat Work accepted, oldest first."""
    posts = []
    for r in emulator.requests:
        if r["direction"] != "api" or r["answer"].get("errcode") != 0 or not r["json"]:
            continue
        body, path = r["json"], r["path"].removeprefix("/cgi-bin/")
        if path in ("appchat/send", "webhook/send"):
            where = body["chatid"] if path == "appchat/send" else r["query"]["key"]
            content = body["markdown"]["content"]
            # A digest (a busy group's notices in one post) carries one per line.
            numbers = DIGEST_LINE.findall(content) or [TICKET_NUMBER.search(content)[1]]
            posts.extend((path, where, int(number)) for number in numbers)
        elif path == "message/send":
            posts.append((path, body["touser"], ticket_of_task(body["template_card"]["task_id"])))
    return posts


async def expected_posts() -> Counter:
    """What the notification rows say WeChat Work must have received, once each."""
    groups = {g.chatid: g for g in await GroupChat.all()}
    expected: Counter = Counter()
    for row in await Notification.filter(medium__in=("group", "app")):
        if row.medium == "group":
            group = groups[row.recipient]
            where = ("webhook/send", group.webhook_key) if group.webhook_key else (
                "appchat/send", group.app_chat_id)
        else:
            where = ("message/send", row.recipient)
        expected[(*where, row.ticket_id)] += 1  # type: ignore[attr-defined]
    return expected


async def burst_kill_redeliver(database_url: str, tmp_path: Path, policy: Policy,
                               emulator: WeComEmulator) -> None:
    plain, escalating = await seed(policy, org_with_app_chat(tmp_path))
    mailbox = Mailbox(free_port())
    mailbox.start()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("WECOM_", "SMTP_", "OUTBOX_", "SWEEP_", "HTTP_", "WEB_"))}
    env.update({k.upper(): str(v) for k, v in WECOM_SECRETS.items()})
    env.update(
        DATABASE_URL=database_url, API_TOKEN=TOKEN, LOG_LEVEL="INFO", LOG_FORMAT="json",
        TIMEZONE="Asia/Shanghai", WECOM_API_BASE=f"{emulator.url}/cgi-bin",
        SMTP_HOST="127.0.0.1", SMTP_PORT=str(mailbox.port), SMTP_STARTTLS="false",
        OUTBOX_INTERVAL_SECONDS="0.2", OUTBOX_BACKOFF_SECONDS="0.2",
        OUTBOX_BACKOFF_CAP_SECONDS="0.5", OUTBOX_MAX_TRIES="100000",
        # Rows the killed bot held go out again once their lease lapses.
        OUTBOX_LEASE_SECONDS="2", REPORT_WEEKLY_CRON="", REPORT_MONTHLY_CRON="",
    )
    bot = Bot(env, tmp_path, "bot")
    sender = Sender(f"http://127.0.0.1:{bot.port}/wecom/robot", emulator.robot_cipher)
    deliveries = callbacks(emulator.robot_cipher, plain, escalating)
    unique = {d.msgid for d in deliveries}
    timings: dict[str, float] = {}
    try:
        await bot.start()
        started = time.monotonic()
        stop = asyncio.Event()

        async def enough_acked() -> bool:
            return len(sender.acked) >= KILL_AT * len(unique)

        async def kill_when_enough_acked() -> None:
            await eventually(enough_acked, every=0.005,
                             what="40 % of the callbacks are acknowledged")
            stop.set()
            await bot.kill()

        await asyncio.gather(sender.send(deliveries, stop=stop), kill_when_enough_acked())
        timings["burst_to_kill"] = time.monotonic() - started
        # What was under way when the bot died.
        at_kill = len(sender.acked)
        claimed = await ProcessedCallback.filter(endpoint="robot").count()
        in_flight = {(r.ticket_id, r.medium, r.recipient)  # type: ignore[attr-defined]
                     for r in await Notification.filter(status="sending")}
        queued = await Notification.filter(status__in=("pending", "sending")).count()
        assert KILL_AT * len(unique) <= at_kill < len(unique)
        assert claimed >= at_kill, "an acknowledged callback was not stored"
        assert queued, "the kill left no notice to deliver"
        # Until the restart, nothing new can reach WeChat Work or the mail server.
        await asyncio.sleep(0.2)
        posted_before_kill = len(received_posts(emulator))
        mailed_before_kill = len(mailbox.received)

        await bot.start()
        restarted = time.monotonic()
        redeliver = [d for d in deliveries if d.msgid not in sender.acked]
        await sender.send(redeliver)
        assert sender.acked == unique, "the restarted bot did not acknowledge every callback"
        assert FAILURE not in sender.replies

        async def drained() -> bool:
            return not await Notification.filter(status__in=("pending", "sending")).exists()

        await eventually(drained, what="the outbox has delivered everything")
        timings["restart_to_drained"] = time.monotonic() - restarted
    finally:
        await bot.stop()
        mailbox.stop()
    print(f"callbacks: {len(deliveries)} posts of {len(unique)}, {at_kill} acknowledged at the"
          f" kill ({claimed} stored), {len(redeliver)} re-delivered; {posted_before_kill} posts"
          f" and {mailed_before_kill} e-mails before it, {queued} notices queued;"
          f" {timings}")

    # Each callback stored once, each command applied once.
    stored = await ProcessedCallback.filter(endpoint="robot").values_list("key", flat=True)
    assert sorted(stored) == sorted(unique)
    events = Counter(await TicketEvent.filter(kind__in=("followup", "resolved"))
                     .values_list("ticket_id", "kind"))
    wanted = Counter({(d.number, d.kind): 1 for d in deliveries})
    assert events == wanted
    escalated = await Ticket.filter(id__in=escalating).values_list("status", "owner_level")
    assert set(escalated) == {(Status.DISPATCHED, "region")}
    assert await Ticket.filter(id__in=plain, status=Status.RESOLVED, followup_count=1).count() \
        == PLAIN

    # Each notice sent; WeChat Work and the mail server got each once (but see above).
    rows = await Notification.all()
    assert {r.status for r in rows} <= {"sent", "digested"}
    assert Counter(r.kind for r in rows) == {"resolved": PLAIN, "escalated": 4 * ESCALATING}
    posts = received_posts(emulator)
    got = Counter(posts)
    twice = [post for post, n in got.items() if n > 1]
    for post in twice:  # only a send in flight at the kill
        first = next(i for i, r in enumerate(posts) if r == post)
        assert got[post] == 2 and first < posted_before_kill
        medium = "app" if post[0] == "message/send" else "group"
        assert any(t == post[2] and m == medium for t, m, _ in in_flight), post
    assert set(got) == set(await expected_posts())
    assert sum(got.values()) == PLAIN + 3 * ESCALATING + len(twice)
    emails = Counter((r.recipient, r.ticket_id)  # type: ignore[attr-defined]
                     for r in await Notification.filter(medium="email"))
    mailed = Counter((rcpt, int(TICKET_NUMBER.search(str(message["Subject"]))[1]))
                     for rcpts, message, _ in mailbox.received for rcpt in rcpts)
    assert set(mailed) == set(emails)
    twice_mailed = [pair for pair, n in mailed.items() if n > 1]
    for rcpt, number in twice_mailed:
        assert mailed[(rcpt, number)] == 2 and mailed_before_kill
        assert (number, "email", rcpt) in in_flight
    # Only what was in flight (a few messages per medium at once) went twice.
    assert len(twice) + len(twice_mailed) <= len(in_flight), f"doubled: {twice} {twice_mailed}"
    print(f"sent twice (in flight at the kill): {twice} {twice_mailed}")


@pytest.fixture
async def live_emulator(aiohttp_server) -> WeComEmulator:
    """The emulator on a real local server, on real time (the bot runs on it too)."""
    emu = WeComEmulator(wecom_settings("sqlite://:memory:"))
    server = await aiohttp_server(emu.app)
    emu.url = str(server.make_url("")).rstrip("/")
    emu.appchats.adopt(CC_APP_CHAT, ["cc.wang", "cc.li"])  # the app created it at set-up
    return emu


@pytest.mark.slow
async def test_sigkill_in_a_callback_burst_then_redelivery_applies_and_notifies_once(
    tmp_path: Path, policy: Policy, live_emulator: WeComEmulator
) -> None:
    url = f"sqlite://{tmp_path}/complaintbot.sqlite3"
    async with open_database(url):
        await burst_kill_redeliver(url, tmp_path, policy, live_emulator)


@pytest.mark.slow
@pytest.mark.postgres
async def test_on_postgres_sigkill_in_a_callback_burst_applies_and_notifies_once(
    postgres_url: str, tmp_path: Path, policy: Policy, live_emulator: WeComEmulator
) -> None:
    async with open_database(postgres_url):
        await _truncate_postgres()
        await burst_kill_redeliver(postgres_url, tmp_path, policy, live_emulator)
