"""The ledger on a real database (SQLite and PostgreSQL): one transaction per
change, deadlines reconciled, notices routed, policies kept per ticket."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.domain.enums import Category, Channel, Clock, Status
from bot.domain.policy import parse_duration
from bot.domain.ticket import SYSTEM, Refused
from bot.domain.transitions import deadline_due, escalate, respond
from bot.intake import Complaint, open_complaint
from bot.ledger import Ledger, NotFound
from bot.policy_book import PolicyBook
from commands.base import Reply
from models import (
    Deadline,
    GroupChat,
    Notification,
    PolicyVersion,
    ProcessedCallback,
    TicketEvent,
)
from models import Ticket as TicketRow
from tests.conftest import T0
from tests.factories import CALL_CENTRE, EAST, HZ_STAFF, SH_STAFF
from webhooks.callback import applied, run_once

H = timedelta(hours=1)


def complaint(**overrides) -> Complaint:
    body = {
        "customer_name": "李先生", "customer_phone": "13812345678", "car_model": "速腾",
        "plate": "沪A12345", "vin": "LFV2A21K6A3012345", "channel": "phone",
        "description": "变速箱顿挫，多次维修未解决", "dealer_code": "SH001",
    }
    body.update(overrides)
    return Complaint.model_validate(body)


async def pending(number: int) -> dict[Clock, object]:
    rows = await Deadline.filter(ticket_id=number, state="pending")
    return {d.clock: d.due_at for d in rows}


async def test_r10_dispatch_stores_ticket_event_deadlines_and_routed_notices(ledger):
    out = await open_complaint(complaint(), ledger, actor=CALL_CENTRE, source="api", now=T0)
    number = out.ticket.number
    row = await TicketRow.get(id=number)
    assert row.status is Status.DISPATCHED and row.dispatched_at == T0
    assert row.dispatched_at.utcoffset() == timedelta(0)
    events = await TicketEvent.filter(ticket_id=number).values_list("kind", flat=True)
    assert events == ["dispatched"]
    assert (await pending(number))[Clock.RESPONSE] == T0 + 2 * H
    sent = set(await Notification.filter(ticket_id=number).values_list(
        "kind", "medium", "recipient"))
    assert ("accepted", "sms", "13812345678") in sent
    assert ("dispatched", "group", "wrGRP-SH001") in sent
    assert {r for k, m, r in sent if (k, m) == ("dispatched", "app")} == {"sh.zhang", "sh.chen"}


async def test_r22_notices_never_reach_the_employee_complained_about(ledger):
    out = await open_complaint(complaint(about_staff="sh.zhang"), ledger, actor=CALL_CENTRE,
                               source="api", now=T0)
    recipients = await Notification.filter(ticket_id=out.ticket.number).values_list(
        "recipient", flat=True)
    assert "sh.zhang" not in recipients and "sh.chen" in recipients


async def test_r6_repeat_is_found_in_the_store_and_linked(ledger):
    first = await open_complaint(complaint(), ledger, actor=CALL_CENTRE, source="api", now=T0)
    second = await open_complaint(complaint(plate="沪A-12345", vin="",
                                            description="变速箱又开始顿挫"),
                                  ledger, actor=CALL_CENTRE, source="api", now=T0 + 48 * H)
    row = await TicketRow.get(id=second.ticket.number)
    assert row.repeat_of == first.ticket.number
    assert row.category is Category.ESCALATED and row.major
    escalated_mail = await Notification.filter(
        ticket_id=row.id, kind="escalated", medium="email").values_list("recipient", flat=True)
    assert escalated_mail == ["east.lin@brand.example"]


async def test_refused_transition_changes_nothing(ledger):
    out = await open_complaint(complaint(), ledger, actor=CALL_CENTRE, source="api", now=T0)
    number = out.ticket.number
    counts = (await TicketEvent.all().count(), await Notification.all().count(),
              await Deadline.all().count())
    with pytest.raises(Refused, match="不属于您所在的经销商"):
        await ledger.apply(number, lambda t: respond(t, HZ_STAFF, "", T0 + H),
                           actor=HZ_STAFF, source="chat", now=T0 + H)
    row = await TicketRow.get(id=number)
    assert row.status is Status.DISPATCHED and row.responded_at is None
    assert counts == (await TicketEvent.all().count(), await Notification.all().count(),
                      await Deadline.all().count())
    with pytest.raises(NotFound, match="#999"):
        await ledger.apply(999, lambda t: respond(t, SH_STAFF, "", T0), actor=SH_STAFF,
                           source="chat", now=T0)


async def test_a_command_failing_after_its_change_rolls_the_callback_back_for_a_retry(ledger):
    """The ledger joins the callback's transaction (no savepoint): a command
    that fails after the change was stored leaves nothing, not even the
    claim, so WeChat Work's retry applies it once."""
    out = await open_complaint(complaint(), ledger, actor=CALL_CENTRE, source="api", now=T0)
    number = out.ticket.number
    counts = (await TicketEvent.all().count(), await Notification.all().count())

    async def respond_then_fail() -> str:
        await ledger.apply(number, lambda t: respond(t, SH_STAFF, "", T0 + H),
                           actor=SH_STAFF, source="chat", now=T0 + H)
        return applied(Reply(markdown="⚠️", failure=RuntimeError("after the change"))).markdown

    with pytest.raises(RuntimeError, match="after the change"):
        await run_once("robot", "msg-1", T0 + H, respond_then_fail)
    assert (await TicketRow.get(id=number)).status is Status.DISPATCHED
    assert counts == (await TicketEvent.all().count(), await Notification.all().count())
    assert not await ProcessedCallback.exists(key="msg-1")

    async def respond_now() -> str:
        await ledger.apply(number, lambda t: respond(t, SH_STAFF, "", T0 + H),
                           actor=SH_STAFF, source="chat", now=T0 + H)
        return "✅"

    assert await run_once("robot", "msg-1", T0 + H, respond_now) == ("✅", False)
    assert await run_once("robot", "msg-1", T0 + H, respond_now) == ("✅", True)
    assert (await TicketRow.get(id=number)).status is Status.RESPONDED
    assert await TicketEvent.filter(ticket_id=number, kind="responded").count() == 1


async def test_r17_escalation_replaces_the_dealers_deadlines_with_the_regions(ledger):
    out = await open_complaint(complaint(), ledger, actor=CALL_CENTRE, source="api", now=T0)
    number = out.ticket.number
    await ledger.apply(number, lambda t: respond(t, SH_STAFF, "已联系", T0 + H),
                       actor=SH_STAFF, source="chat", now=T0 + H)
    assert Clock.RESPONSE not in await pending(number)
    later = T0 + 30 * H
    await ledger.apply(number, lambda t: escalate(t, CALL_CENTRE, "客户要求升级", later),
                       actor=CALL_CENTRE, source="chat", now=later)
    assert await pending(number) == {Clock.RESPONSE: later + 2 * H,
                                     Clock.SOLUTION_EMAIL: later + 48 * H}
    cancelled = await Deadline.filter(ticket_id=number, state="cancelled").values_list(
        "clock", flat=True)
    assert sorted(cancelled) == sorted([Clock.RESPONSE, Clock.FIRST_SOLUTION, Clock.SOLUTION_EMAIL,
                                        Clock.FOLLOWUP, Clock.RESOLUTION])
    await ledger.apply(number, lambda t: respond(t, EAST, "区域已介入", later + H),
                       actor=EAST, source="chat", now=later + H)
    assert await pending(number) == {Clock.SOLUTION_EMAIL: later + 48 * H}


async def test_r12_breach_notices_are_keyed_by_what_happened(ledger, policy):
    out = await open_complaint(complaint(), ledger, actor=CALL_CENTRE, source="api", now=T0)
    number, due_at = out.ticket.number, T0 + 2 * H

    async def breach(now):
        await ledger.apply(
            number, lambda t: deadline_due(t, Clock.RESPONSE, due_at, policy, now),
            actor=SYSTEM, source="clock", now=now, cause=(Clock.RESPONSE, due_at),
        )

    await breach(T0 + 2 * H)
    await breach(T0 + 3 * H)  # a retried sweep of the same deadline
    nudges = await Notification.filter(ticket_id=number, kind="response_overdue")
    assert sorted((n.medium, n.recipient) for n in nudges) == [
        ("email", "sh.chen@sh001.example"), ("email", "sh.zhang@sh001.example"),
        ("group", "wrGRP-SH001"),
    ]


async def test_a_ticket_keeps_the_policy_it_was_opened_under(ledger, policy):
    out = await open_complaint(complaint(), ledger, actor=CALL_CENTRE, source="api", now=T0)
    old = out.ticket.number
    slower = policy.model_copy(update={
        "version": "edited",
        "clocks": policy.clocks.model_copy(update={"escalated": policy.clocks.escalated.model_copy(
            update={"response": parse_duration("4h")})}),
    })
    book = PolicyBook(slower)
    await book.store_current()
    edited = Ledger(book)
    assert await PolicyVersion.all().count() == 2
    await edited.apply(old, lambda t: escalate(t, CALL_CENTRE, "升级", T0 + H),
                       actor=CALL_CENTRE, source="chat", now=T0 + H)
    assert (await pending(old))[Clock.RESPONSE] == T0 + 3 * H, "old ticket, old policy"
    new = await open_complaint(complaint(vin="WVWZZZ1KZ6W000001", plate="沪B00001",
                                         channel=Channel.LOCAL_MEDIA.value),
                               edited, actor=CALL_CENTRE, source="api", now=T0 + H)
    assert (await pending(new.ticket.number))[Clock.RESPONSE] == T0 + 5 * H, "new policy"
    row = await TicketRow.get(id=new.ticket.number)
    assert row.policy_id == slower.digest != policy.digest


async def test_unroutable_notice_is_kept_not_lost(ledger):
    await GroupChat.filter(chatid="wrGRP-SH001").delete()
    out = await open_complaint(complaint(), ledger, actor=CALL_CENTRE, source="api", now=T0)
    rows = await Notification.filter(ticket_id=out.ticket.number, kind="dispatched",
                                     medium="group")
    assert [(r.status, r.recipient) for r in rows] == [("unroutable", "")]
