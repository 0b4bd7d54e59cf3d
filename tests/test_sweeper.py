"""The clock on SQLite and PostgreSQL: each due deadline is applied exactly
once through the ledger, whenever the sweep runs, and its notices reach people
(e-mail through a real SMTP server, group posts through the WeChat Work
emulator)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from structlog.testing import capture_logs
from tortoise.functions import Count
from tortoise.transactions import in_transaction

from bot.db import open_database
from bot.directory_import import import_directory
from bot.domain.enums import Category, Clock, OwnerLevel, Slot, Status
from bot.domain.policy import Policy
from bot.domain.transitions import acknowledge_major, attempt, first_solution, respond
from bot.intake import open_complaint
from bot.ledger import Ledger
from bot.policy_book import PolicyBook
from models import Deadline, Notification, TicketEvent
from models import Ticket as TicketRow
from schedulers.sweeper import oldest_overdue, sweep
from tests.conftest import ORG, ROOT, T0, _truncate_postgres
from tests.factories import CALL_CENTRE, EAST, LEGAL, PLAN, SH_STAFF
from tests.test_outbox import Delivery, complaint, delivering

H = timedelta(hours=1)
D = timedelta(days=1)
S = timedelta(seconds=1)


@pytest.fixture
async def delivery(ledger: Ledger, emulator, clock) -> AsyncIterator[Delivery]:
    """Real SMTP and WeChat Work (emulated over HTTP) adapters; the database is open."""
    async with delivering(emulator, clock) as adapters:
        yield adapters


async def dispatch(ledger: Ledger, **overrides: object) -> int:
    out = await open_complaint(complaint(**overrides), ledger, actor=CALL_CENTRE, source="api",
                               now=T0)
    assert out.ticket.number is not None
    return out.ticket.number


async def notices(number: int, kind: str) -> set[tuple[str, str]]:
    rows = await Notification.filter(ticket_id=number, kind=kind)
    return {(n.medium, n.recipient) for n in rows}


async def states(number: int) -> dict[Clock, str]:
    return {d.clock: d.state for d in await Deadline.filter(ticket_id=number)
            if d.state != "cancelled"}


async def breaches(number: int) -> list[str]:
    return [e.data["clock"] for e in
            await TicketEvent.filter(ticket_id=number, kind="deadline_breached")]


async def test_r12_no_response_in_2h_nudges_the_group_and_emails_the_handlers(
    ledger: Ledger, delivery: Delivery
) -> None:
    number = await dispatch(ledger)
    await delivery.run(T0)
    assert await sweep(ledger, now=T0 + 2 * H - S) == []
    [action] = await sweep(ledger, now=T0 + 2 * H)
    assert (action.ticket, action.clock, action.result) == (number, Clock.RESPONSE, "applied")
    assert await breaches(number) == ["response"]
    assert (await states(number))[Clock.RESPONSE] == "applied"
    assert await notices(number, "response_overdue") == {
        ("group", "wrGRP-SH001"), ("email", "sh.zhang@sh001.example"),
        ("email", "sh.chen@sh001.example")}
    assert await sweep(ledger, now=T0 + 2 * H) == [], "a second sweep applies nothing"
    assert await sweep(ledger, now=T0 + 3 * H) == []
    assert (await delivery.run(T0 + 2 * H)).sent == 3
    [nudge] = delivery.webhook_posts("hook-sh001")[1:]
    assert f"#{number}" in nudge and "响应时限" in nudge and "13812345678" not in nudge
    for address in ("sh.zhang@sh001.example", "sh.chen@sh001.example"):
        [mail] = delivery.mailbox.to(address)
        assert f"#{number}" in mail["Subject"] and "响应逾期" in mail["Subject"]
        assert "/respond" in mail.get_body(("plain",)).get_content()


async def test_r13_no_solution_nudges_at_24h_and_emails_the_manager_at_2_days(
    ledger: Ledger, delivery: Delivery
) -> None:
    number = await dispatch(ledger)
    await ledger.apply(number, lambda t: respond(t, SH_STAFF, "已联系", T0 + H),
                       actor=SH_STAFF, source="chat", now=T0 + H)
    await delivery.run(T0 + H)
    [action] = await sweep(ledger, now=T0 + 24 * H)
    assert action.clock is Clock.FIRST_SOLUTION
    assert await notices(number, "first_solution_overdue") == {("group", "wrGRP-SH001")}
    assert await Notification.filter(ticket_id=number, medium="email").count() == 0
    await delivery.run(T0 + 24 * H)
    assert "首次方案" in delivery.webhook_posts("hook-sh001")[-1]

    actions = await sweep(ledger, now=T0 + 2 * D)
    assert {a.clock for a in actions} == {Clock.FOLLOWUP, Clock.SOLUTION_EMAIL}
    assert await notices(number, "solution_overdue") == {
        ("group", "wrGRP-SH001"), ("email", "sh.zhou@sh001.example")}
    await delivery.run(T0 + 2 * D)
    [mail] = delivery.mailbox.to("sh.zhou@sh001.example")
    assert f"#{number}" in mail["Subject"] and "解决方案逾期" in mail["Subject"]
    assert len(delivery.mailbox.received) == 1


async def test_r14_no_return_visit_in_48h_nudges_the_group(ledger: Ledger,
                                                           delivery: Delivery) -> None:
    number = await dispatch(ledger)
    await ledger.apply(number, lambda t: respond(t, SH_STAFF, "已联系", T0 + H),
                       actor=SH_STAFF, source="chat", now=T0 + H)
    await ledger.apply(number, lambda t: first_solution(t, SH_STAFF, PLAN, T0 + 2 * H),
                       actor=SH_STAFF, source="chat", now=T0 + 2 * H)
    [action] = await sweep(ledger, now=T0 + 48 * H)
    assert action.clock is Clock.FOLLOWUP and action.status is Status.SOLUTION_PROPOSED
    assert await notices(number, "followup_overdue") == {("group", "wrGRP-SH001")}
    await delivery.run(T0 + 48 * H)
    assert f"#{number}" in delivery.webhook_posts("hook-sh001")[-1]


async def test_r15_unresolved_after_3_days_escalates_to_the_region(
    ledger: Ledger, delivery: Delivery
) -> None:
    number = await dispatch(ledger)
    await ledger.apply(number, lambda t: respond(t, SH_STAFF, "已联系", T0 + H),
                       actor=SH_STAFF, source="chat", now=T0 + H)
    await ledger.apply(number, lambda t: first_solution(t, SH_STAFF, PLAN, T0 + 2 * H),
                       actor=SH_STAFF, source="chat", now=T0 + 2 * H)
    await sweep(ledger, now=T0 + 48 * H)  # the follow-up nudge
    now = T0 + 3 * D
    [action] = await sweep(ledger, now=now)
    assert action.clock is Clock.RESOLUTION and action.detail == "deadline_breached"
    row = await TicketRow.get(id=number)
    assert (row.category, row.owner_level, row.status) == (
        Category.ESCALATED, OwnerLevel.REGION, Status.DISPATCHED)
    resolution = await Deadline.get(ticket_id=number, clock=Clock.RESOLUTION)
    # Applied, not cancelled by the escalation; and over (not overdue): the
    # region's clocks replace it.
    assert resolution.state == "ended"
    pending = {d.clock: d.due_at for d in await Deadline.filter(ticket_id=number,
                                                                 state="pending")}
    assert pending == {Clock.RESPONSE: now + 2 * H, Clock.SOLUTION_EMAIL: now + 2 * D}
    assert await notices(number, "escalated") == {
        ("group", "wrGRP-SH001"), ("group", "wrGRP-EAST"), ("app", "east.he"),
        ("email", "east.lin@brand.example")}
    assert await sweep(ledger, now=now + H) == []
    await delivery.run(now)
    [mail] = delivery.mailbox.to("east.lin@brand.example")
    assert f"#{number}" in mail["Subject"] and "升级" in mail["Subject"]
    [region_post] = delivery.webhook_posts("hook-east")
    assert f"#{number}" in region_post and "3 天未解决" in region_post
    assert f"#{number}" in delivery.app_messages("east.he")[-1]


async def test_r16_closed_unreachable_leaves_nothing_to_sweep(ledger: Ledger) -> None:
    number = await dispatch(ledger)
    for hours, slot in ((2, Slot.MORNING), (6, Slot.AFTERNOON), (11, Slot.EVENING)):
        await ledger.apply(number, lambda t, h=hours, s=slot: attempt(
            t, SH_STAFF, s, ledger.policies.current, T0 + h * H),
            actor=SH_STAFF, source="chat", now=T0 + hours * H)
    assert (await TicketRow.get(id=number)).status is Status.CLOSED_UNREACHABLE
    # The response deadline (T0+2h) fell due before the ticket closed: it was
    # never swept, and closing cancelled it with the rest.
    assert await states(number) == {}
    assert await sweep(ledger, now=T0 + 5 * D) == []
    assert await breaches(number) == []


async def test_r17_the_region_gets_2h_to_respond_to_an_escalated_complaint(
    ledger: Ledger, delivery: Delivery
) -> None:
    number = await dispatch(ledger, channel="local_agency")  # R4: escalated, not major
    await delivery.run(T0)
    [action] = await sweep(ledger, now=T0 + 2 * H)
    assert action.clock is Clock.RESPONSE
    assert await notices(number, "response_overdue") == {
        ("group", "wrGRP-EAST"), ("email", "east.he@brand.example")}
    await delivery.run(T0 + 2 * H)
    [mail] = delivery.mailbox.to("east.he@brand.example")
    assert f"#{number}" in mail["Subject"]
    assert "响应时限" in delivery.webhook_posts("hook-east")[-1]


async def test_r18_no_solution_in_2_days_emails_the_second_level_manager(
    ledger: Ledger, delivery: Delivery
) -> None:
    number = await dispatch(ledger, channel="local_agency")
    await ledger.apply(number, lambda t: respond(t, EAST, "区域已介入", T0 + H),
                       actor=EAST, source="chat", now=T0 + H)
    assert await sweep(ledger, now=T0 + 2 * D - S) == []
    [action] = await sweep(ledger, now=T0 + 2 * D)
    assert action.clock is Clock.SOLUTION_EMAIL
    assert ("email", "east.lin@brand.example") in await notices(number, "solution_overdue")
    await delivery.run(T0 + 2 * D)
    mails = [m for m in delivery.mailbox.to("east.lin@brand.example")
             if "解决方案逾期" in m["Subject"]]
    assert len(mails) == 1 and f"#{number}" in mails[0]["Subject"]


async def test_after_downtime_each_due_deadline_is_applied_once(ledger: Ledger) -> None:
    number = await dispatch(ledger)
    assert await oldest_overdue(T0 + H) is None
    assert await oldest_overdue(T0 + 5 * D) == 5 * D - 2 * H
    actions = await sweep(ledger, now=T0 + 5 * D)
    assert {a.clock for a in actions} == {Clock.RESPONSE, Clock.FIRST_SOLUTION, Clock.FOLLOWUP,
                                          Clock.SOLUTION_EMAIL, Clock.RESOLUTION}
    assert [a.due_at for a in actions] == sorted(a.due_at for a in actions), "oldest first"
    assert actions[-1].clock is Clock.RESOLUTION and actions[-1].status is Status.DISPATCHED
    assert sorted(await breaches(number)) == sorted(a.clock.value for a in actions)
    assert await oldest_overdue(T0 + 5 * D) is None
    assert await sweep(ledger, now=T0 + 5 * D) == []
    assert await sweep(ledger, now=T0 + 5 * D + H) == []
    [region] = await sweep(ledger, now=T0 + 5 * D + 2 * H)
    assert region.clock is Clock.RESPONSE and region.ticket == number
    assert len(await breaches(number)) == 6


async def test_a_sweep_takes_at_most_its_limit_oldest_first(ledger: Ledger) -> None:
    first = await dispatch(ledger)
    second = await dispatch(ledger, vin="LFV2A21K6A3099999", plate="沪B99999")
    actions = await sweep(ledger, now=T0 + D, limit=3)
    assert [(a.ticket, a.clock) for a in actions] == [
        (first, Clock.RESPONSE), (second, Clock.RESPONSE), (first, Clock.FIRST_SOLUTION)]
    [rest] = await sweep(ledger, now=T0 + D)
    assert (rest.ticket, rest.clock) == (second, Clock.FIRST_SOLUTION)


async def test_a_deadline_the_rules_refuse_is_finished_not_retried(ledger: Ledger) -> None:
    number = await dispatch(ledger, channel="central_media")  # R5: important, owner HQ
    # A resolution clock an important complaint cannot have: HQ has no one to escalate to.
    await Deadline.create(ticket_id=number, clock=Clock.RESOLUTION, due_at=T0 + H)
    [action] = await sweep(ledger, now=T0 + H)
    assert action.result == "refused" and "无法再升级" in action.detail
    assert (await Deadline.get(ticket_id=number, clock=Clock.RESOLUTION)).state == "refused"
    assert await breaches(number) == []
    assert (await TicketRow.get(id=number)).category is Category.IMPORTANT
    assert await sweep(ledger, now=T0 + H) == []


async def test_a_deadline_that_fails_is_passed_over_and_the_rest_are_applied(
    ledger: Ledger,
) -> None:
    numbers = [await dispatch(ledger, vin=f"LFV2A21K6A{i:07d}", plate=f"沪C{i:05d}")
               for i in range(3)]
    # A row edited by hand into something the bot cannot read.
    await TicketRow.filter(id=numbers[1]).update(attempts=[{"garbled": True}])
    actions = await sweep(ledger, now=T0 + 2 * H)
    assert sorted(a.ticket for a in actions) == [numbers[0], numbers[2]]
    assert all(a.result == "applied" for a in actions)
    assert (await states(numbers[1]))[Clock.RESPONSE] == "pending", "left for a later sweep"
    assert await breaches(numbers[1]) == []
    await TicketRow.filter(id=numbers[1]).update(attempts=[])
    [mended] = await sweep(ledger, now=T0 + 2 * H)
    assert (mended.ticket, mended.result) == (numbers[1], "applied")


@pytest.mark.postgres
async def test_tickets_another_replica_holds_are_left_for_later_without_an_error(
    postgres_url: str, policy: Policy
) -> None:
    """On PostgreSQL a batch whose tickets are all locked by another replica
    (SKIP LOCKED) has nothing to apply: no error is logged, the deadlines wait."""
    async with open_database(postgres_url):
        await _truncate_postgres()
        await import_directory(ORG)
        book = PolicyBook(policy)
        await book.store_current()
        ledger = Ledger(book)
        numbers = [await dispatch(ledger, vin=f"LFV2A21K6A{i:07d}", plate=f"沪C{i:05d}")
                   for i in range(2)]
        holding, release = asyncio.Event(), asyncio.Event()

        async def other_replica() -> None:
            async with in_transaction():
                await TicketRow.filter(id__in=numbers).select_for_update()
                holding.set()
                await release.wait()

        holder = asyncio.create_task(other_replica())
        await holding.wait()
        try:
            with capture_logs() as logs:
                actions = await sweep(ledger, now=T0 + 2 * H)
        finally:
            release.set()
            await holder
        assert actions == []
        assert [e for e in logs if e["log_level"] == "error"] == []
        for number in numbers:
            assert (await states(number))[Clock.RESPONSE] == "pending", "left for a later sweep"
        applied = await sweep(ledger, now=T0 + 2 * H)
        assert {a.ticket for a in applied if a.clock is Clock.RESPONSE} == set(numbers)


@pytest.mark.slow
@pytest.mark.postgres
async def test_two_sweepers_on_postgres_apply_each_deadline_exactly_once(
    postgres_url: str, policy: Policy
) -> None:
    async with open_database(postgres_url):
        await _truncate_postgres()
        await import_directory(ORG)
        book = PolicyBook(policy)
        await book.store_current()
        await _race_two_sweepers(Ledger(book), postgres_url)


async def _race_two_sweepers(ledger: Ledger, db: str) -> None:
    tickets = 250
    for i in range(tickets):
        await dispatch(ledger, vin=f"LFV2A21K6A{i:07d}", plate=f"沪C{i:05d}")
    at = T0 + 60 * H  # response, first solution, follow-up, solution e-mail: 4 per ticket
    due = await Deadline.filter(state="pending", due_at__lte=at).count()
    assert due == 4 * tickets
    env = {**os.environ, "DATABASE_URL": db, "LOG_LEVEL": "WARNING"}

    async def sweeper() -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.cli", "sweep", "--at", at.isoformat(), cwd=ROOT, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        return len([line for line in out.decode().splitlines() if ": applied" in line]), \
            out.decode()

    (a, _), (b, _) = await asyncio.gather(sweeper(), sweeper())
    print(f"sweeper shares: {a} + {b}")
    assert a + b == due, (a, b)
    per_deadline = await (
        TicketEvent.filter(kind="deadline_breached")
        .annotate(n=Count("id"))
        .group_by("ticket_id", "data")
        .values_list("n", flat=True)
    )
    assert len(per_deadline) == due and set(per_deadline) == {1}
    assert await Deadline.filter(state="applied").count() == due
    assert await Deadline.filter(state="pending", due_at__lte=at).count() == 0


async def test_r9_major_complaint_warns_at_once_and_reminds_once_when_unacknowledged(
    ledger: Ledger, delivery: Delivery
) -> None:
    number = await dispatch(ledger, flags=["return_exchange"])
    await delivery.run(T0)
    box = delivery.mailbox
    for leader in ("sh.zhou@sh001.example", "sh.wu@sh001.example"):  # R8: head and GM
        assert any(f"#{number}" in m["Subject"] for m in box.to(leader)), leader
    for warned in ("brand.xie@brand.example", "legal.han@brand.example"):  # R9
        subjects = [m["Subject"] for m in box.to(warned)]
        assert subjects == [f"【重大投诉预警】投诉 #{number}（上海浦东4S店）"]

    def warnings(actions) -> list:
        return [a for a in actions if a.clock is Clock.MAJOR_WARNING]

    assert warnings(await sweep(ledger, now=T0 + 24 * H - S)) == []
    assert len(warnings(await sweep(ledger, now=T0 + 24 * H))) == 1
    assert warnings(await sweep(ledger, now=T0 + 30 * H)) == []
    await delivery.run(T0 + 30 * H)
    for warned in ("brand.xie@brand.example", "legal.han@brand.example"):
        reminders = [m for m in box.to(warned) if "预警未确认" in m["Subject"]]
        assert len(reminders) == 1 and f"#{number}" in reminders[0]["Subject"]


async def test_r9_an_acknowledged_warning_is_not_reminded(ledger: Ledger) -> None:
    number = await dispatch(ledger, flags=["disturbance"])
    await ledger.apply(number, lambda t: acknowledge_major(t, LEGAL, T0 + H),
                       actor=LEGAL, source="chat", now=T0 + H)
    actions = await sweep(ledger, now=T0 + 2 * D)
    assert Clock.MAJOR_WARNING not in {a.clock for a in actions}
    assert await notices(number, "major_warning_overdue") == set()


async def test_clocks_an_older_version_left_running_are_mended_at_start_up(
    ledger: Ledger,
) -> None:
    """Before migration 0021 a fired clock stayed "applied" after its ticket
    moved past it, and showed as overdue; the start-up mend ends it and leaves
    the clocks still overdue alone."""
    answered = await dispatch(ledger)
    waiting = await dispatch(ledger, vin="LFV2A21K6A3099999", plate="沪B99999")
    await sweep(ledger, now=T0 + 2 * H)  # R12: both unanswered for 2 h
    await ledger.apply(answered, lambda t: respond(t, SH_STAFF, "已联系", T0 + 3 * H),
                       actor=SH_STAFF, source="chat", now=T0 + 3 * H)
    assert (await states(answered))[Clock.RESPONSE] == "ended"
    # What the older version left behind.
    await Deadline.filter(ticket_id=answered, clock=Clock.RESPONSE).update(state="applied")

    assert await ledger.mend_clocks(now=T0 + 4 * H) == [answered]
    assert (await states(answered))[Clock.RESPONSE] == "ended"
    assert (await states(waiting))[Clock.RESPONSE] == "applied", "still overdue"
    assert await ledger.mend_clocks(now=T0 + 4 * H) == []
