"""Privacy (hardening 4): the customer's full phone number and VIN never leave
the bot unmasked into a group message, a card, or a log line.

One complaint's whole life runs through the WeChat Work emulator with the real
crypto over real HTTP, and e-mails go to a real SMTP server (aiosmtpd): intake
over the API, the dispatch notice and cards, commands typed in the groups
(/show, /list, the first solution, a return visit), the 2-hour and 24-hour
deadlines swept (nudges in the group, e-mail reminders), an escalation to the
region, the dealer's resolution and the call centre's close. Every log record
of the run, rendered at DEBUG by the production logging set-up (bot/logs.py),
and every request the bot made to WeChat Work or answered a callback with, is
then searched for the customer's phone number and VIN.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
import structlog

from bot.keys import LEDGER, WECOM
from bot.logs import configure_logging
from bot.render.privacy import mask_phone, mask_vin
from models import Ticket
from schedulers.outbox import deliver_due
from schedulers.runner import transports_for
from schedulers.sweeper import sweep
from tests.conftest import TOKEN, WeComWorld
from tests.test_notify_email import Mailbox, running_mailbox

PHONE, VIN = "13912345678", "LSVAU2180N2123456"
SH, EAST, CC = "wrGRP-SH001", "wrGRP-EAST", "wrGRP-CC"
HOUR = timedelta(hours=1)


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """Everything logged while the test runs, rendered as in production (JSON
    lines) at DEBUG, every library's logger included."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level for name in (
        "aiohttp.access", "apscheduler", "tortoise.db_client", "aiosqlite")}
    configure_logging("json", "DEBUG", cache=False)
    for name in ("aiohttp.access", "apscheduler"):  # quieted for volume, not privacy
        logging.getLogger(name).setLevel(logging.DEBUG)
    buffer = io.StringIO()
    capture = logging.StreamHandler(buffer)
    capture.setFormatter(root.handlers[0].formatter)
    root.handlers[:] = [*saved[0], capture]
    try:
        yield buffer
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        structlog.reset_defaults()


def _outbound(world: WeComWorld) -> list[str]:
    """Every request the bot made to WeChat Work and every passive reply it gave."""
    seen = []
    for r in world.emulator.requests:
        payload: Any = r["json"] if r["direction"] == "api" else r["reply"]
        seen.append(json.dumps([r["path"], r.get("query"), payload], ensure_ascii=False))
    return seen


async def test_phone_and_vin_never_appear_in_group_messages_cards_or_logs(
    wecom: WeComWorld, clock: list[datetime], log_lines: io.StringIO
) -> None:
    with running_mailbox() as mailbox:
        await _whole_life(wecom, clock, mailbox)
        mails = [raw.decode("utf-8", "replace") for _, _, raw in mailbox.received]

    outbound = _outbound(wecom)
    logged = log_lines.getvalue()
    # The scenario really produced what is searched: posts, cards, replies, mails, logs.
    paths = {r["path"] for r in wecom.emulator.requests}
    assert {"/cgi-bin/webhook/send", "/cgi-bin/message/send", "/wecom/robot"} <= paths
    assert any(mask_phone(PHONE) in o for o in outbound)
    assert any(mask_vin(VIN) in o for o in outbound)
    assert mails and "deadline_applied" in logged
    for secret in (PHONE, VIN):
        assert [o for o in outbound if secret in o] == []
        leaking = {json.loads(line)["logger"] for line in logged.splitlines() if secret in line}
        assert leaking == set()
        assert [m for m in mails if secret in m] == []


async def _whole_life(world: WeComWorld, clock: list[datetime], mailbox: Mailbox) -> None:
    settings = world.settings.model_copy(update={
        "smtp_host": "127.0.0.1", "smtp_port": mailbox.port, "smtp_starttls": False})
    transports = transports_for(settings, world.bot.app[WECOM], clock=lambda: clock[0])
    ledger = world.bot.app[LEDGER]
    emulator = world.emulator

    async def deliver() -> None:
        stats = await deliver_due(transports, now=clock[0], zone=settings.zone)
        assert stats.dead == stats.retrying == 0, stats.errors

    async def say(userid: str, chatid: str, text: str) -> dict[str, Any]:
        reply = await emulator.robot_message(userid, chatid, f"@投诉助手 {text}")
        assert reply, text
        return reply

    body = {"customer_name": "王女士", "customer_phone": PHONE, "car_model": "帕萨特",
            "plate": "沪B88888", "vin": VIN, "channel": "phone",
            "description": f"发动机异响，客户电话 {PHONE}，车架号 {VIN}", "dealer_code": "SH001"}
    response = await world.bot.post("/api/complaints", json=body,
                                     headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status == 201, await response.text()
    n = (await response.json())["number"]
    await deliver()

    # Commands in the group: the card, the list, a failed call.
    shown = await say("sh.zhang", SH, f"/show {n}")
    assert shown["msgtype"] == "template_card"
    assert f"#{n}" in (await say("sh.zhou", SH, "/list"))["stream"]["content"]
    await say("sh.chen", SH, f"/attempt {n} 上午")

    # R12: no response in 2 h, the sweep nudges the group and e-mails the dealer.
    clock[0] += 2 * HOUR + timedelta(minutes=1)
    assert [a.result for a in await sweep(ledger, now=clock[0])] == ["applied"]
    await deliver()
    assert mailbox.received

    await say("sh.zhang", SH, f"/respond {n}")
    await say("sh.zhang", SH,
              f"/plan {n} 诉求=修复异响 原因=皮带老化 方案=更换皮带 接受=否 回访=是")
    await say("sh.zhang", SH, f"/followup {n} 客户仍不满意，电话 {PHONE}")
    await deliver()

    # R4: the region escalates; the region's group and handlers hear of it.
    clock[0] += HOUR
    await say("east.he", EAST, f"/escalate {n} 客户要求退车")
    await deliver()
    await say("east.he", EAST, f"/show {n}")

    # R17/R18: the region's clocks run out too.
    clock[0] += 3 * 24 * HOUR
    assert await sweep(ledger, now=clock[0])
    await deliver()

    await say("east.he", EAST, f"/resolve {n} 已为客户更换皮带并补偿保养一次")
    await deliver()
    await say("cc.wang", CC, f"/close {n} satisfaction=4")
    await deliver()
    assert (await Ticket.get(id=n)).status.value == "closed"
    await say("sh.zhou", SH, "/list")


# --- masking free text, however the number was typed (issue 12 item 10) ---------------


@pytest.mark.parametrize(
    "written",
    [
        "13912345678",
        "１３９１２３４５６７８",  # full-width digits, as Chinese input methods give them
        "139.1234.5678",
        "139-1234-5678",
        "139 1234 5678",
        "(139)1234-5678",
        "（１３９）１２３４－５６７８",
        "139_1234_5678",
        "+86 139 1234 5678",
        "＋８６－１３９１２３４５６７８",
    ],
)
def test_r10_a_phone_typed_any_way_is_masked(policy, written) -> None:
    from bot.render.chat import scrub
    from tests.conftest import T0
    from tests.factories import make_ticket

    ticket = make_ticket(policy, T0, customer_phone=PHONE, vin=VIN)
    shown = scrub(f"客户电话 {written}，请回电", ticket)
    assert shown == f"客户电话 {mask_phone(PHONE)}，请回电"


@pytest.mark.parametrize(
    "written",
    [
        VIN,
        VIN.lower(),
        "LSVAU 2180N 2123456",
        "LSVAU-2180N-2123456",
        "ＬＳＶＡＵ２１８０Ｎ２１２３４５６",  # full-width letters and digits
        "ｌｓｖａｕ－２１８０ｎ２１２３４５６",
    ],
)
def test_r10_a_vin_typed_any_way_is_masked(policy, written) -> None:
    from bot.render.chat import scrub
    from tests.conftest import T0
    from tests.factories import make_ticket

    ticket = make_ticket(policy, T0, customer_phone=PHONE, vin=VIN)
    assert scrub(f"车架号：{written}。", ticket) == f"车架号：{mask_vin(VIN)}。"


def test_r10_masking_keeps_other_numbers(policy) -> None:
    from bot.render.chat import scrub
    from tests.conftest import T0
    from tests.factories import make_ticket

    ticket = make_ticket(policy, T0, customer_phone=PHONE, vin=VIN)
    text = "订单 20261203，里程 12345 公里，电话 13812345678"
    assert scrub(text, ticket) == text
