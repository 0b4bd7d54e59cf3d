"""What one command costs the database: the SQL statements of realistic
commands, counted at the driver (tests/statements.py) on SQLite and
PostgreSQL, each asserted equal to the number measured.

The tickets are made as in production: the call centre's system opens them
over the intake API and the outbox delivers their notices, so each handler
holds a copy of the ticket's card that a change must update.

A change that adds a statement to a command fails here. If the statement is
worth it, update the number in COST and say why in the commit; the failure
message lists every statement sent, in order. On SQLite every statement
counts (BEGIN, COMMIT, SAVEPOINT, `SELECT last_insert_rowid()`, and each row
of a multi-row insert); on PostgreSQL each round trip does (a multi-row
insert is one).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest

from bot.keys import WECOM
from models import Ticket, TicketEvent
from schedulers.runner import transports_for
from tests.conftest import WeComWorld
from tests.statements import Statements, count_statements
from tests.test_conversation import Conversation, cards

SH = "wrGRP-SH001"
NEW = ("/new 客户=李先生 电话=13812345678 车型=速腾 车牌=沪A12345 渠道=电话 经销商=SH001 "
       "描述=变速箱顿挫，多次维修未解决")
PLAN = "诉求=更换变速箱 原因=阀体磨损 方案=免费更换阀体并延保一年 接受=是 回访=是"

# Statements per command: {command: (SQLite, PostgreSQL)}.
COST = {
    "intake": (10, 10),
    "new": (13, 13),
    "respond": (11, 11),
    "show": (8, 8),
    "card_click": (14, 14),
    "plan": (10, 10),
    "list": (4, 4),
}


@dataclass
class Measured:
    """A command's counted statements and the backend it ran on."""

    statements: Statements
    backend: str

    def assert_cost(self, command: str) -> None:
        sqlite, postgres = COST[command]
        expected = sqlite if self.backend == "sqlite" else postgres
        assert self.statements.total == expected, (
            f"{command} on {self.backend}: {self.statements.total} statements, "
            f"COST says {expected}:\n{self.statements.listing()}")


@pytest.fixture
def conversation(wecom: WeComWorld, clock: list[datetime]) -> Conversation:
    """The call centre, the outbox and the people, driven as in tests/test_conversation.py."""
    return Conversation(wecom, clock, transports_for(wecom.settings, wecom.bot.app[WECOM],
                                                     clock=lambda: clock[0]))


def backend(database_url: str) -> str:
    return "sqlite" if database_url.startswith("sqlite") else "postgres"


async def dispatched(talk: Conversation, **overrides: Any) -> tuple[int, dict[str, Any]]:
    """A complaint opened over the API with its notices delivered; its number
    and the card 张专员 received."""
    number = await talk.complaint(**overrides)
    [card] = cards(await talk.deliver(), "sh.zhang")
    talk.later(5)
    return number, card


async def test_intake(conversation: Conversation, database_url: str) -> None:
    async with count_statements() as counted:
        number = await conversation.complaint()
    assert await Ticket.filter(id=number).exists()
    Measured(counted, backend(database_url)).assert_cost("intake")


async def test_new_in_the_call_centre_group(conversation: Conversation,
                                            database_url: str) -> None:
    async with count_statements() as counted:
        answer = await conversation.says("cc.wang", "wrGRP-CC", NEW)
    [number] = await Ticket.all().values_list("id", flat=True)
    assert f"#{number}" in answer
    Measured(counted, backend(database_url)).assert_cost("new")


async def test_respond_in_the_group(conversation: Conversation, database_url: str) -> None:
    number, _ = await dispatched(conversation)
    async with count_statements() as counted:
        answer = await conversation.says("sh.zhang", SH, f"/respond {number} 已联系客户")
    assert f"#{number}" in answer
    assert (await Ticket.get(id=number)).status.value == "responded"
    Measured(counted, backend(database_url)).assert_cost("respond")


async def test_show_in_the_group(conversation: Conversation, database_url: str) -> None:
    number, _ = await dispatched(conversation)
    async with count_statements() as counted:
        reply = await conversation.say("sh.zhang", SH, f"/show {number}")
    assert reply["template_card"]["main_title"]["title"].startswith(f"#{number} ")
    Measured(counted, backend(database_url)).assert_cost("show")


async def test_a_click_on_the_handlers_card(conversation: Conversation, database_url: str) -> None:
    number, card = await dispatched(conversation)
    async with count_statements() as counted:
        answer = await conversation.emulator.app_click("sh.zhang", card["task_id"],
                                                       f"respond:{number}")
    assert answer == ""
    assert (await Ticket.get(id=number)).assignee == "sh.zhang"
    Measured(counted, backend(database_url)).assert_cost("card_click")


async def test_plan_in_the_group(conversation: Conversation, database_url: str) -> None:
    number, _ = await dispatched(conversation)
    await conversation.says("sh.zhang", SH, f"/respond {number}")
    async with count_statements() as counted:
        answer = await conversation.says("sh.zhang", SH, f"/plan {number} {PLAN}")
    assert f"#{number}" in answer
    assert await TicketEvent.filter(ticket_id=number, kind="first_solution").exists()
    Measured(counted, backend(database_url)).assert_cost("plan")


async def test_list_in_the_group(conversation: Conversation, database_url: str) -> None:
    number, _ = await dispatched(conversation)
    async with count_statements() as counted:
        answer = await conversation.says("sh.zhang", SH, "/list")
    assert f"#{number}" in answer
    Measured(counted, backend(database_url)).assert_cost("list")


def test_a_count_can_fail() -> None:
    with pytest.raises(AssertionError, match="statements"):
        Measured(Statements(sql=["SELECT 1"]), "sqlite").assert_cost("list")
