"""Log lines name what they are about: a ticket change carries the ticket
number, the callback's msgid and the acting user, however deep in the call it
is written (structlog context variables bound at the callback and the ledger)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import timedelta

import pytest
import structlog
from structlog.testing import capture_logs

from bot.keys import LEDGER
from bot.logs import configure_logging
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


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """What the production JSON set-up (LOG_FORMAT=json) writes while the test runs."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    configure_logging("json", "INFO", cache=False)
    buffer = io.StringIO()
    root.handlers[0].setStream(buffer)  # type: ignore[attr-defined]
    try:
        yield buffer
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
        structlog.reset_defaults()


def _fail(phone: str) -> None:
    raise ValueError("工单 #1024 的状态不对")


@pytest.mark.parametrize("via", ["structlog", "stdlib"])
def test_r4_a_json_log_line_carries_the_exception_type_message_and_traceback(
    json_lines: io.StringIO, via: str
) -> None:
    try:
        _fail("13912345678")
    except ValueError:
        if via == "structlog":
            structlog.get_logger("test").exception("job_failed", job="sweep")
        else:
            logging.getLogger("test").exception("job_failed")
    (line,) = [json.loads(x) for x in json_lines.getvalue().splitlines()]
    assert line["event"] == "job_failed" and line["level"] == "error"
    assert "exc_info" not in line
    (error,) = line["exception"]
    assert error["exc_type"] == "ValueError"
    assert error["exc_value"] == "工单 #1024 的状态不对"
    assert [f["name"] for f in error["frames"]][-1] == "_fail"
    # Locals stay out: a frame's variables may hold a customer's phone or VIN.
    assert "13912345678" not in json_lines.getvalue()
