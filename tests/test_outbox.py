"""The outbox worker on SQLite and PostgreSQL, delivering to a real SMTP server
(aiosmtpd) and to the WeChat Work emulator over HTTP: what people receive,
retries with backoff, dead rows, leases, none lost and none twice."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from structlog.testing import capture_logs

from bot.app import create_app
from bot.db import open_database
from bot.directory_import import import_directory
from bot.domain.enums import Clock
from bot.domain.ticket import SYSTEM
from bot.domain.transitions import deadline_due
from bot.intake import Complaint, open_complaint
from bot.ledger import Ledger
from bot.notify import Transport
from bot.notify.email import EmailTransport
from bot.notify.sms import LogSms, SmsTransport
from bot.notify.wecom import AppTransport, GroupTransport, RobotTransport
from bot.policy import load_policy
from bot.policy_book import PolicyBook
from bot.render.notices import render
from bot.render.privacy import mask_phone, mask_vin
from bot.settings import DEFAULT_POLICY_FILE, load_settings
from bot.wecom.client import WeComClient
from bot.wecom.emulator import WeComEmulator
from models import Notification, SentCard, TicketEvent
from schedulers.outbox import RetryPolicy, deliver_due, revive, undelivered
from tests.conftest import ORG, T0, TOKEN, WECOM_SECRETS, _truncate_postgres
from tests.factories import CALL_CENTRE
from tests.test_notify_email import Mailbox, running_mailbox
from tests.waiting import eventually

H = timedelta(hours=1)
PHONE, VIN = "13812345678", "LFV2A21K6A3012345"
FAST = RetryPolicy(max_tries=3, backoff=timedelta(seconds=30), backoff_cap=timedelta(minutes=5),
                   give_up_after=timedelta(0))


def complaint(**overrides: object) -> Complaint:
    body: dict[str, object] = {
        "customer_name": "李先生", "customer_phone": PHONE, "car_model": "速腾",
        "plate": "沪A12345", "vin": VIN, "channel": "phone",
        "description": "变速箱顿挫，多次维修未解决", "dealer_code": "SH001",
    }
    body.update(overrides)
    return Complaint.model_validate(body)


@dataclass
class Delivery:
    """The real adapters, wired to a local SMTP server and the WeChat Work emulator."""

    mailbox: Mailbox
    emulator: WeComEmulator
    transports: dict[str, Transport]

    async def run(self, now, retry: RetryPolicy = FAST):
        return await deliver_due(self.transports, now=now, retry=retry)

    def webhook_posts(self, key: str) -> list[str]:
        """Markdown the bot posted into the group with this webhook key, and got ok for."""
        return [r["json"]["markdown"]["content"] for r in self.emulator.sent("webhook/send")
                if r["query"].get("key") == key and r["answer"].get("errcode") == 0]

    def app_messages(self, userid: str) -> list[str]:
        """What the member got from the app: markdown, or a card as its JSON text."""
        return [r["json"]["markdown"]["content"] if "markdown" in r["json"]
                else json.dumps(r["json"]["template_card"], ensure_ascii=False)
                for r in self.emulator.sent("message/send")
                if r["json"]["touser"] == userid and r["answer"].get("errcode") == 0]


@asynccontextmanager
async def delivering(emulator: WeComEmulator, clock: list[datetime]) -> AsyncIterator[Delivery]:
    """The adapters for the block; the database must be open."""
    client = WeComClient(
        api_base=f"{emulator.url}/cgi-bin", corp_id=WECOM_SECRETS["wecom_corp_id"],
        secret=WECOM_SECRETS["wecom_secret"], agent_id=WECOM_SECRETS["wecom_agent_id"],
        backoff=0.01, clock=lambda: clock[0],
    )
    with running_mailbox() as box:
        email = EmailTransport(box.settings(smtp_timeout_seconds=2))
        transports: dict[str, Transport] = {
            "email": email,
            "sms": SmsTransport(LogSms()),
            "group": GroupTransport(client),
            "app": AppTransport(client),
            "robot": RobotTransport(client),
        }
        yield Delivery(box, emulator, transports)
        await email.close()
    await client.close()


@pytest.fixture
async def delivery(ledger: Ledger, emulator: WeComEmulator, clock) -> AsyncIterator[Delivery]:
    """Depends on `ledger`, so the database is open and the directory loaded."""
    async with delivering(emulator, clock) as adapters:
        yield adapters


async def statuses(number: int) -> dict[str, int]:
    rows = await Notification.filter(ticket_id=number).values_list("status", flat=True)
    return {s: rows.count(s) for s in set(rows)}


async def test_r10_dispatch_notices_reach_groups_members_and_the_customer(ledger, delivery):
    out = await open_complaint(complaint(), ledger, actor=CALL_CENTRE, source="api", now=T0)
    number = out.ticket.number
    with capture_logs() as logs:
        stats = await delivery.run(T0)
    assert stats.sent == stats.claimed == await Notification.filter(ticket_id=number).count()
    assert await statuses(number) == {"sent": stats.sent}
    [post] = delivery.webhook_posts("hook-sh001")
    assert f"#{number}" in post and mask_phone(PHONE) in post and mask_vin(VIN) in post
    assert PHONE not in post and VIN not in post
    for userid in ("sh.zhang", "sh.chen"):
        [card] = delivery.app_messages(userid)
        assert f"#{number}" in card and PHONE not in card
    [sms] = [e for e in logs if e["event"] == "sms_logged"]
    assert sms["phone"] == "138****5678" and sms["kind"] == "accepted"
    assert sms["params"] == {"number": str(number), "dealer": "上海浦东4S店"}
    assert (await delivery.run(T0 + H)).claimed == 0, "sent rows never go out twice"


async def test_smtp_down_rows_wait_with_backoff_and_go_out_once_when_it_is_back(ledger, delivery):
    out = await open_complaint(complaint(), ledger, actor=CALL_CENTRE, source="api", now=T0)
    number, due = out.ticket.number, T0 + 2 * H
    await ledger.apply(number, lambda t: deadline_due(t, Clock.RESPONSE, due, ledger.policies
                                                      .current, due),
                       actor=SYSTEM, source="clock", now=due, cause=(Clock.RESPONSE, due))
    await delivery.run(T0)  # the dispatch notices
    delivery.mailbox.stop()
    stats = await delivery.run(due)
    assert stats.retrying == 2 and stats.sent == 1  # two e-mails wait; the group nudge went
    waiting = await Notification.filter(ticket_id=number, medium="email")
    assert {(n.status, n.tries, n.next_attempt_at) for n in waiting} == {
        ("pending", 1, due + FAST.backoff)}
    assert all("SMTPConnectError" in n.last_error for n in waiting)
    assert (await delivery.run(due + FAST.backoff / 2)).claimed == 0, "not before the backoff"
    stats = await delivery.run(due + FAST.backoff)
    assert stats.retrying == 2
    assert {n.next_attempt_at for n in await Notification.filter(ticket_id=number,
                                                                  medium="email")} == {
        due + FAST.backoff + 2 * FAST.backoff}, "the wait doubles"
    delivery.mailbox.start()
    stats = await delivery.run(due + 3 * FAST.backoff)
    assert stats.sent == 2
    for address in ("sh.zhang@sh001.example", "sh.chen@sh001.example"):
        [mail] = delivery.mailbox.to(address)
        assert f"#{number}" in mail["Subject"] and "响应" in mail["Subject"]
    assert (await delivery.run(due + 10 * H)).claimed == 0
    assert len(delivery.mailbox.received) == 2, "none lost, none twice"


async def test_after_max_tries_a_row_is_dead_and_can_be_revived(ledger, delivery):
    out = await open_complaint(complaint(), ledger, actor=CALL_CENTRE, source="api", now=T0)
    number = out.ticket.number
    groups = {"group": delivery.transports["group"]}
    delivery.emulator.fail_next(3 * FAST.max_tries, status=502)  # the client tries 3 times
    now = T0
    for _ in range(FAST.max_tries):
        await deliver_due(groups, now=now, retry=FAST)
        now += FAST.backoff_cap
    [group] = await Notification.filter(ticket_id=number, medium="group")
    assert group.status == "dead" and group.tries == FAST.max_tries and "502" in group.last_error
    assert group.id in [n.id for n in await undelivered()]
    assert await revive(group.id, now=now) and not await revive(group.id, now=now)
    assert (await deliver_due(groups, now=now, retry=FAST)).sent == 1
    [post] = delivery.webhook_posts("hook-sh001")
    assert f"#{number}" in post


async def test_a_card_whose_answer_was_lost_is_delivered_once_not_dead(ledger, emulator, clock):
    """WeChat Work shows the card but its answer comes after the client's
    timeout: the retry is refused as a repeated task_id (42014), which means
    the member has it. The row is sent, not dead, and nobody gets it twice."""
    out = await open_complaint(complaint(), ledger, actor=CALL_CENTRE, source="api", now=T0)
    number = out.ticket.number
    client = WeComClient(
        api_base=f"{emulator.url}/cgi-bin", corp_id=WECOM_SECRETS["wecom_corp_id"],
        secret=WECOM_SECRETS["wecom_secret"], agent_id=WECOM_SECRETS["wecom_agent_id"],
        backoff=0.01, timeout=0.3, clock=lambda: clock[0],
    )
    try:
        await client.send_app_markdown(["sh.zhang"], "warm-up")  # the token, fetched
        emulator.fail_next(1, answer_late=1.0)
        stats = await deliver_due({"app": AppTransport(client)}, now=T0, retry=FAST)
    finally:
        await client.close()
    assert stats.dead == 0 and stats.sent == stats.claimed == 2
    cards = [r for r in emulator.sent("message/send") if "template_card" in r["json"]]
    assert sorted(r["answer"]["errcode"] for r in cards) == [0, 0, 42014], "the retry was refused"
    shown = [r["json"]["touser"] for r in cards if r["answer"]["errcode"] == 0]
    assert sorted(shown) == ["sh.chen", "sh.zhang"], "each handler has the card once"
    assert await statuses(number) == {"sent": 2, "pending": await Notification.filter(
        ticket_id=number, status="pending").count()}
    copies = await SentCard.filter(ticket_id=number).order_by("id")
    assert sorted(c.response_code == "" for c in copies) == [False, True], "its code was lost"


async def test_messages_past_a_members_limit_wait_their_turn_without_using_tries(
    ledger, emulator, clock
):
    """WeChat Work drops app messages past a member's limit silently: the
    outbox holds them back until there is room, and they still go out."""
    first = await open_complaint(complaint(), ledger, actor=CALL_CENTRE, source="api", now=T0)
    second = await open_complaint(complaint(vin="LFV2A21K6A3099999", plate="沪B99999"),
                                  ledger, actor=CALL_CENTRE, source="api", now=T0)
    client = WeComClient(
        api_base=f"{emulator.url}/cgi-bin", corp_id=WECOM_SECRETS["wecom_corp_id"],
        secret=WECOM_SECRETS["wecom_secret"], agent_id=WECOM_SECRETS["wecom_agent_id"],
        backoff=0.01, clock=lambda: clock[0], member_limits=((1, 60.0),),
    )
    app = {"app": AppTransport(client)}
    try:
        stats = await deliver_due(app, now=T0, retry=FAST)
        assert (stats.sent, stats.paced, stats.retrying, stats.dead) == (2, 2, 0, 0)
        waiting = await Notification.filter(medium="app", status="pending")
        assert {n.ticket_id for n in waiting} == {second.ticket.number}
        assert {n.tries for n in waiting} == {0}, "waiting uses no try"
        # Until the member's slot frees, and a little later: not all at one instant.
        wake = [n.next_attempt_at for n in waiting]
        assert all(T0 + timedelta(minutes=1) <= t <= T0 + timedelta(minutes=1.2) for t in wake)
        assert (await deliver_due(app, now=T0 + timedelta(seconds=59), retry=FAST)).claimed == 0
        clock[0] = max(wake)
        later = await deliver_due(app, now=clock[0], retry=FAST)
    finally:
        await client.close()
    assert (later.sent, later.paced) == (2, 0)
    cards = [json.loads(c) for userid in ("sh.zhang", "sh.chen")
             for c in delivery_cards(emulator, userid)]
    assert sorted(c["task_id"].split("-")[0] for c in cards) == sorted(
        [f"ticket{first.ticket.number}", f"ticket{second.ticket.number}"] * 2)


def delivery_cards(emulator: WeComEmulator, userid: str) -> list[str]:
    return Delivery(None, emulator, {}).app_messages(userid)  # type: ignore[arg-type]


async def test_an_error_retrying_cannot_fix_is_dead_at_once(ledger, delivery):
    out = await open_complaint(complaint(), ledger, actor=CALL_CENTRE, source="api", now=T0)
    delivery.emulator.fail_next(1, errcode=60020)  # server IP not trusted
    await deliver_due({"group": delivery.transports["group"]}, now=T0, retry=FAST)
    [group] = await Notification.filter(ticket_id=out.ticket.number, medium="group")
    assert (group.status, group.tries) == ("dead", 1) and "60020" in group.last_error


async def test_a_crashed_workers_rows_go_out_when_the_lease_lapses(ledger, delivery):
    out = await open_complaint(complaint(), ledger, actor=CALL_CENTRE, source="api", now=T0)
    number = out.ticket.number
    # What a worker that died after claiming leaves behind.
    await Notification.filter(ticket_id=number).update(status="sending", tries=1,
                                                       lease_until=T0 + FAST.lease)
    assert (await delivery.run(T0 + FAST.lease / 2)).claimed == 0, "still leased"
    stats = await delivery.run(T0 + FAST.lease)
    assert stats.sent == stats.claimed > 0 and await statuses(number) == {"sent": stats.sent}
    assert len(delivery.webhook_posts("hook-sh001")) == 1


async def reply_row(kind: str, medium: str, recipient: str, payload: dict) -> Notification:
    """A reply row as webhooks/callback.py writes it: no ticket, content ready."""
    return await Notification.create(
        kind=kind, medium=medium, audience="sender", recipient=recipient,
        dedupe_key=uuid.uuid4().hex,
        next_attempt_at=T0, created_at=T0, payload=payload)


async def test_ready_replies_go_out_as_cards_card_updates_and_robot_answers(ledger, delivery):
    card = {"card_type": "button_interaction", "task_id": "t-1024-1",
            "main_title": {"title": "投诉 #1024"},
            "button_list": [{"text": "响应", "key": "respond:1024"}]}
    await reply_row("reply", "app", "sh.zhang", {"markdown": "投诉 #1024", "card": card})
    assert (await delivery.run(T0)).sent == 1
    [sent] = delivery.emulator.sent("message/send")
    assert sent["json"]["msgtype"] == "template_card" and sent["json"]["touser"] == "sh.zhang"
    code = sent["answer"]["response_code"]
    await reply_row("card_update", "app", "sh.zhang",
                    {"markdown": "已响应", "card": {**card, "task_id": "t-1024-1"},
                     "response_code": code})
    url = delivery.emulator._new_response_url("group")  # as a robot callback would carry
    await reply_row("reply", "robot", "wrGRP-SH001", {"markdown": "#1024 已响应",
                                                      "response_url": url})
    assert (await delivery.run(T0)).sent == 2
    [update] = delivery.emulator.sent("message/update_template_card")
    assert update["json"]["response_code"] == code and update["answer"]["errcode"] == 0
    [answer] = [r for r in delivery.emulator.requests if "/emulator/response_url/" in r["path"]]
    assert answer["json"] == {"msgtype": "markdown", "markdown": {"content": "#1024 已响应"}}
    # A response_url works once: a second reply through it is refused for good.
    again = await reply_row("reply", "robot", "wrGRP-HZ001", {"markdown": "again",
                                                              "response_url": url})
    assert (await delivery.run(T0)).dead == 1
    assert (await Notification.get(id=again.id)).status == "dead"


async def test_rows_of_an_unconfigured_medium_wait(ledger, delivery):
    out = await open_complaint(complaint(), ledger, actor=CALL_CENTRE, source="api", now=T0)
    await deliver_due({"sms": delivery.transports["sms"]}, now=T0)
    assert await statuses(out.ticket.number) == {"sent": 1, "pending": 3}


async def test_every_kind_renders_with_the_number_and_masked_customer(ledger):
    out = await open_complaint(complaint(description="变速箱顿挫 <b>严重</b>"), ledger,
                               actor=CALL_CENTRE, source="api", now=T0)
    number, due = out.ticket.number, T0 + 2 * H
    await ledger.apply(number, lambda t: deadline_due(t, Clock.RESPONSE, due,
                                                      ledger.policies.current, due),
                       actor=SYSTEM, source="clock", now=due, cause=(Clock.RESPONSE, due))
    # Every kind against one event with a deadline, so the nudges have theirs.
    event = await TicketEvent.get(ticket_id=number, kind="deadline_breached")
    kinds = ["accepted", "dispatched", "escalated", "response_overdue",
             "first_solution_overdue", "followup_overdue", "solution_overdue",
             "callback_overdue", "staged_decision_overdue", "major_warning_overdue",
             "major_alert", "major_warning", "legal_flag", "resolved", "closed",
             "closed_unreachable", "disputed", "dispute_rejected", "dispute_upheld", "reopened",
             "assigned", "staged_closure_request", "staged_closure_approved",
             "staged_closure_rejected", "store_reported", "store_confirm_overdue",
             "store_confirmed", "something_new"]
    for kind in kinds:
        row = Notification(ticket_id=number, event_id=event.id, kind=kind, medium="group",
                           recipient="wrGRP-SH001", created_at=T0)
        message = await render(row)
        for text in (message.subject, message.text, message.html, message.markdown):
            assert f"#{number}" in text, (kind, text)
            assert PHONE not in text and VIN not in text, kind
        assert "{{" not in message.markdown and "None" not in message.markdown, kind
        assert "&lt;b&gt;严重" in message.html and "<b>" not in message.html, "HTML escaped"


async def test_a_nudge_names_the_deadline_and_how_late_it_is(ledger):
    out = await open_complaint(complaint(), ledger, actor=CALL_CENTRE, source="api", now=T0)
    number, due = out.ticket.number, T0 + 2 * H
    await ledger.apply(number, lambda t: deadline_due(t, Clock.RESPONSE, due,
                                                      ledger.policies.current, due),
                       actor=SYSTEM, source="clock", now=due, cause=(Clock.RESPONSE, due))
    [row] = await Notification.filter(ticket_id=number, kind="response_overdue", medium="group")
    message = await render(row, now=due + 90 * timedelta(minutes=1))
    assert "响应时限 2026-03-02 11:00 已过" in message.markdown, "Shanghai time"
    assert "1 小时 30 分钟" in message.markdown


async def started(aiohttp_client, settings, clock, *, scheduler: bool):
    """The bot's app on a real server over an emptied database with the directory."""
    if settings.database_url.startswith("postgres"):
        async with open_database(settings.database_url):
            await _truncate_postgres()
    client = await aiohttp_client(create_app(settings, clock=lambda: clock[0],
                                             scheduler=scheduler))
    await import_directory(ORG)
    return client


async def test_the_scheduler_sweeps_and_delivers_on_its_own(
    database_url, aiohttp_client, clock, emulator
):
    """End to end: the API dispatches, time passes, the app's own jobs nudge the
    group (through the emulated WeChat Work) and e-mail the handlers."""
    with running_mailbox() as box:
        settings = box.settings(database_url=database_url, api_token=TOKEN,
                                sweep_interval_seconds=0.1, outbox_interval_seconds=0.1,
                                wecom_api_base=f"{emulator.url}/cgi-bin", **WECOM_SECRETS)
        client = await started(aiohttp_client, settings, clock, scheduler=True)
        body = complaint().model_dump(mode="json", exclude_none=True)
        answer = await client.post("/api/complaints", json=body,
                                   headers={"Authorization": f"Bearer {TOKEN}"})
        assert answer.status == 201, await answer.text()
        number = (await answer.json())["number"]
        clock[0] = T0 + 2 * H

        def nudges() -> list[str]:
            return [r["json"]["markdown"]["content"] for r in emulator.sent("webhook/send")
                    if "响应逾期" in r["json"]["markdown"]["content"]]

        await eventually(lambda: bool(box.to("sh.zhang@sh001.example") and nudges()),
                         what="the reminder e-mail and the group nudge went out")
        [mail] = box.to("sh.zhang@sh001.example")
        assert f"#{number}" in mail["Subject"]
        [nudge] = nudges()
        assert f"#{number}" in nudge
        health = await client.get("/healthz")
        assert health.status == 200 and (await health.json())["oldest_overdue_seconds"] == 0


async def test_healthz_fails_while_due_deadlines_wait(database_url, aiohttp_client, clock):
    settings = load_settings(database_url=database_url, api_token=TOKEN,
                             health_max_overdue_seconds=600)
    client = await started(aiohttp_client, settings, clock, scheduler=False)
    answer = await client.post("/api/complaints", json=complaint().model_dump(mode="json"),
                               headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status == 201
    clock[0] = T0 + 2 * H + timedelta(minutes=5)
    ok = await client.get("/healthz")
    assert ok.status == 200 and (await ok.json())["oldest_overdue_seconds"] == 300
    clock[0] = T0 + 2 * H + timedelta(minutes=11)
    late = await client.get("/healthz")
    assert late.status == 503 and (await late.json())["oldest_overdue_seconds"] == 660


@pytest.mark.slow
def test_cli_outbox_list_retry_and_flush(tmp_path):
    url = f"sqlite://{tmp_path}/cb.sqlite3"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WECOM_", "SMTP_"))}
    env.update(DATABASE_URL=url, SMTP_HOST="", LOG_LEVEL="WARNING")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "bot.cli", *args], capture_output=True,
                              text=True, env=env, timeout=60, check=False)

    async def seed() -> int:
        async with open_database(url):
            await import_directory(ORG)
            book = PolicyBook(load_policy(DEFAULT_POLICY_FILE))
            await book.store_current()
            out = await open_complaint(complaint(), Ledger(book), actor=CALL_CENTRE,
                                       source="api", now=T0)
            await Notification.filter(ticket_id=out.ticket.number, medium="group").update(
                status="dead", tries=8, last_error="WeComError: 60020")
            row = await Notification.get(medium="group")
            return row.id, row.recipient

    dead, chat = asyncio.run(seed())
    listed = cli("outbox", "list")
    assert listed.returncode == 0, listed.stderr
    # R10: a header, and whom each row is for.
    assert listed.stdout.splitlines()[0] == (
        "id\tstatus\tticket\tkind\tmedium\trecipient\ttries\tnext attempt\tlast error")
    assert f"{dead}\tdead\t#1\tdispatched\tgroup\t{chat}\ttries=8" in listed.stdout
    assert cli("outbox", "retry", str(dead)).returncode == 0
    flushed = cli("outbox", "flush")
    # Only SMS has a transport here (log provider); the revived group row waits for WeChat Work.
    assert flushed.returncode == 0 and "1 sent" in flushed.stdout, flushed.stderr

    async def states() -> dict[str, str]:
        async with open_database(url):
            return dict(await Notification.all().values_list("kind", "status"))

    assert asyncio.run(states()) == {"accepted": "sent", "dispatched": "pending"}

