"""Log lines name what they are about: a ticket change carries the ticket
number, the callback's msgid and the acting user, however deep in the call it
is written (structlog context variables bound at the callback and the ledger)."""

from __future__ import annotations

from datetime import timedelta

import structlog
from structlog.testing import capture_logs

from bot.keys import LEDGER
from schedulers.sweeper import sweep
from tests.conftest import T0, WeComWorld
from tests.test_webhooks_robot import open_ticket

GROUP = "wrGRP-SH001"


def _merged() -> list[structlog.types.Processor]:
    return [structlog.contextvars.merge_contextvars]


async def test_a_robot_command_logs_its_msgid_user_and_ticket(wecom: WeComWorld):
    number = await open_ticket(wecom)
    with capture_logs(processors=_merged()) as logs:
        await wecom.emulator.robot_message("sh.zhang", GROUP, "@投诉助手 /respond 1 已联系",
                                           msgid="msg-log-1")
    changed = [e for e in logs if e["event"] == "ticket_changed"]
    assert len(changed) == 1
    assert changed[0]["ticket"] == number
    assert changed[0]["msgid"] == "msg-log-1"
    assert changed[0]["actor"] == "sh.zhang"
    command = next(e for e in logs if e["event"] == "chat_command")
    assert command["msgid"] == "msg-log-1" and command["userid"] == "sh.zhang"


async def test_an_app_command_logs_its_msgid(wecom: WeComWorld):
    await open_ticket(wecom)
    with capture_logs(processors=_merged()) as logs:
        await wecom.emulator.app_message("sh.zhang", "/respond 1 已联系", msgid=4242)
    changed = next(e for e in logs if e["event"] == "ticket_changed")
    assert changed["msgid"] == "msg:4242" and changed["actor"] == "sh.zhang"


async def test_the_context_ends_with_the_callback(wecom: WeComWorld):
    """A line written after the callback (here a sweep) carries no stale msgid,
    but the ledger still names the ticket of each change."""
    number = await open_ticket(wecom)
    await wecom.emulator.robot_message("sh.zhang", GROUP, "@投诉助手 /list", msgid="msg-log-2")
    with capture_logs(processors=_merged()) as logs:
        structlog.get_logger("test").info("after_callback")
        await sweep(wecom.bot.app[LEDGER], now=T0 + timedelta(hours=3))
    after = next(e for e in logs if e["event"] == "after_callback")
    assert "msgid" not in after and "ticket" not in after
    overdue = [e for e in logs if e.get("ticket") == number]
    assert overdue and all("msgid" not in e for e in overdue)
