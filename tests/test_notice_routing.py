"""Issue 12: notices ask for an action only of those who may take it (item 2),
a customer's "no agreement" reaches whoever can act (item 7, R15), legal words
in any note flag the ticket (item 8, R26) and a notice nobody can receive goes
to the region (item 9, R20). What people read is the rendered outbox row."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.directory import actor_for
from bot.domain.enums import Category, OwnerLevel
from bot.intake import Complaint, open_complaint
from bot.render.notices import render
from commands.base import ChatMessage, Context, Reply
from commands.router import handle_message
from models import Notification
from models import Ticket as TicketRow
from tests.conftest import T0
from tests.factories import CALL_CENTRE

ZONE = ZoneInfo("Asia/Shanghai")
H = timedelta(hours=1)
VIN = "LFV2A21K6A3012345"
INFORMED = "本群知悉即可，无需响应"


def complaint(**overrides: object) -> Complaint:
    body = {
        "customer_name": "李先生", "customer_phone": "13812345678", "car_model": "速腾",
        "plate": "沪A12345", "vin": VIN, "channel": "phone",
        "description": "变速箱顿挫，多次维修未解决", "dealer_code": "SH001",
    }
    body.update(overrides)
    return Complaint.model_validate(body)


@pytest.fixture
def say(ledger, clock):
    """Type a command as `userid` (in group `chatid`, else one-to-one) at clock[0]."""

    async def say_(userid: str, text: str, chatid: str | None = None) -> Reply:
        ctx = Context(actor=await actor_for(userid), ledger=ledger, now=clock[0], zone=ZONE)
        msg = ChatMessage(userid=userid, text=text, channel="robot", chatid=chatid, msgid="m1")
        return await handle_message(msg, ctx)

    return say_


async def posted(number: int, recipient: str, kind: str | None = None) -> list[str]:
    """The markdown of every notice about the ticket written for `recipient`."""
    rows = Notification.filter(ticket_id=number, recipient=recipient)
    if kind:
        rows = rows.filter(kind=kind)
    return [(await render(row)).markdown for row in await rows.order_by("id")]


async def test_r6_repeat_tells_the_dealer_group_without_asking_it_to_respond(ledger, say):
    """Item 2: a repeat goes to the region at intake; the dealer group is told,
    the region group is asked, and /respond in the dealer group is refused."""
    await open_complaint(complaint(), ledger, actor=CALL_CENTRE, source="api", now=T0)
    second = (await open_complaint(complaint(), ledger, actor=CALL_CENTRE, source="api",
                                   now=T0 + H)).ticket
    assert second.owner_level is OwnerLevel.REGION
    dealer = await posted(second.number, "wrGRP-SH001")
    assert dealer and all("/respond" not in m for m in dealer)
    (dispatched,) = await posted(second.number, "wrGRP-SH001", "dispatched")
    assert INFORMED in dispatched
    region = "\n".join(await posted(second.number, "wrGRP-EAST"))
    assert f"`/respond {second.number}`" in region and INFORMED not in region
    refused = await say("sh.zhang", f"/respond {second.number}", chatid="wrGRP-SH001")
    assert refused.markdown.startswith("⛔")


async def test_r2_a_general_complaint_still_asks_the_dealer_group_to_respond(ledger):
    """Item 2: the dealer who owns the ticket keeps its instruction."""
    first = (await open_complaint(complaint(), ledger, actor=CALL_CENTRE, source="api",
                                  now=T0)).ticket
    (text,) = await posted(first.number, "wrGRP-SH001", "dispatched")
    assert f"然后回复 `/respond {first.number}`" in text and INFORMED not in text


async def test_r2_escalation_informs_the_dealer_group_and_asks_the_region(ledger, say):
    """Item 2: after /escalate the dealer group no longer gets an instruction."""
    number = (await open_complaint(complaint(), ledger, actor=CALL_CENTRE, source="api",
                                   now=T0)).ticket.number
    reply = await say("east.he", f"/escalate {number} 客户要求区域介入")
    assert "升级" in reply.markdown
    (dealer,) = await posted(number, "wrGRP-SH001", "escalated")
    assert INFORMED in dealer and "/respond" not in dealer
    (region,) = await posted(number, "wrGRP-EAST", "escalated")
    assert f"`/respond {number}`" in region
    assert (await TicketRow.get(id=number)).category is Category.ESCALATED
