"""The business calendar (optional, off by default): working time counted in
working hours, China's statutory holidays and make-up working days from the
chinese-calendar package, and quiet hours that hold night-time e-mails and
nudges back while the breach keeps its true time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot.domain.calendar import (
    add_working_time,
    first_attempt,
    next_working_moment,
    working_hours_on,
)
from bot.domain.deadlines import pending_deadlines
from bot.domain.enums import Clock
from bot.domain.policy import BusinessCalendar, Policy, PolicyError, policy_from_document
from bot.domain.ticket import Medium
from bot.intake import open_complaint
from bot.ledger import Ledger
from bot.policy_book import PolicyBook
from models import Notification, TicketEvent
from schedulers.sweeper import sweep
from tests.factories import CALL_CENTRE, make_ticket
from tests.test_outbox import Delivery, complaint, delivering

SHANGHAI = ZoneInfo("Asia/Shanghai")
H = timedelta(hours=1)


def local(*args: int) -> datetime:
    """A Shanghai wall-clock time as the aware UTC instant the bot stores."""
    return datetime(*args, tzinfo=SHANGHAI).astimezone(UTC)


def calendar(**overrides: Any) -> BusinessCalendar:
    """The policy file's calendar section, switched on, with overrides."""
    return BusinessCalendar.model_validate({"enabled": True, **overrides})


def with_calendar(policy: Policy, **section: Any) -> Policy:
    document = policy.document()
    document["calendar"] = {**document["calendar"], **section}
    return policy_from_document(document)


# -- working time ------------------------------------------------------------

def test_24_working_hours_from_friday_17_00_skip_the_weekend() -> None:
    friday = local(2026, 3, 6, 17, 0)
    # Friday 1 h, Monday 9 h, Tuesday 9 h, Wednesday 5 h.
    assert add_working_time(friday, 24 * H, calendar()) == local(2026, 3, 11, 14, 0)


def test_time_outside_working_hours_starts_counting_at_the_next_period() -> None:
    saturday_night = local(2026, 3, 7, 23, 30)
    assert next_working_moment(saturday_night, calendar()) == local(2026, 3, 9, 9, 0)
    assert add_working_time(saturday_night, 2 * H, calendar()) == local(2026, 3, 9, 11, 0)
    assert next_working_moment(local(2026, 3, 9, 10, 15), calendar()) == local(2026, 3, 9, 10, 15)


def test_national_day_week_2026_is_closed_and_its_make_up_saturday_works() -> None:
    # chinese-calendar 1.11 holds 2026: 10-01..10-07 off, Saturday 10-10 a make-up day.
    cal = calendar()
    assert working_hours_on(date(2026, 10, 5), cal) is None, "a Monday inside the holiday"
    assert working_hours_on(date(2026, 10, 3), cal) is None
    assert working_hours_on(date(2026, 10, 10), cal) == (time(9), time(18)), "调休上班"
    assert working_hours_on(date(2026, 10, 11), cal) is None, "an ordinary Sunday"
    # Wed 30 Sep 17:00: 1 h, then Thu 8 Oct 9 h, Fri 9 Oct 9 h, Sat 10 Oct 5 h.
    assert add_working_time(local(2026, 9, 30, 17, 0), 24 * H, cal) == local(2026, 10, 10, 14, 0)


def test_without_statutory_holidays_only_the_weekday_hours_count() -> None:
    cal = calendar(statutory_holidays=False)
    assert working_hours_on(date(2026, 10, 5), cal) == (time(9), time(18))
    assert working_hours_on(date(2026, 10, 10), cal) is None
    assert add_working_time(local(2026, 9, 30, 17, 0), 24 * H, cal) == local(2026, 10, 5, 14, 0)


def test_a_store_open_on_saturdays_keeps_its_own_hours_on_a_make_up_saturday() -> None:
    hours = {day: ["09:00", "18:00"] for day in ("mon", "tue", "wed", "thu", "fri")}
    cal = calendar(working_hours={**hours, "sat": ["10:00", "16:00"]})
    assert working_hours_on(date(2026, 10, 10), cal) == (time(10), time(16))
    assert working_hours_on(date(2026, 10, 17), cal) == (time(10), time(16))


def test_a_year_the_package_has_no_data_for_falls_back_to_weekday_hours() -> None:
    # Thu 31 Dec 2026 17:00: 1 h, Fri 1 Jan 2027 9 h (no 2027 data yet), Mon 9 h, Tue 5 h.
    end_of_year = local(2026, 12, 31, 17, 0)
    assert add_working_time(end_of_year, 24 * H, calendar()) == local(2027, 1, 5, 14, 0)


def test_a_disabled_calendar_is_plain_addition() -> None:
    off = BusinessCalendar()
    friday = local(2026, 3, 6, 17, 0)
    assert add_working_time(friday, 24 * H, off) == friday + 24 * H
    assert first_attempt(local(2026, 3, 6, 23, 0), Medium.EMAIL, off,
                         caused_by_deadline=True) == local(2026, 3, 6, 23, 0)


def test_the_policy_file_ships_the_calendar_switched_off(policy: Policy) -> None:
    assert policy.calendar.enabled is False and policy.calendar.quiet_hours.enabled is False
    friday = local(2026, 3, 6, 17, 0)
    due = {d.clock: d.due_at for d in pending_deadlines(make_ticket(policy, friday), policy)}
    assert due[Clock.FIRST_SOLUTION] == friday + 24 * H
    assert due[Clock.RESOLUTION] == friday + 72 * H


def test_only_the_named_clocks_count_working_time(policy: Policy) -> None:
    working = with_calendar(policy, enabled=True)
    friday = local(2026, 3, 6, 17, 0)
    due = {d.clock: d.due_at for d in pending_deadlines(make_ticket(working, friday), working)}
    assert due[Clock.RESPONSE] == friday + 2 * H, "response is not a working-time clock"
    assert due[Clock.FOLLOWUP] == friday + 48 * H
    assert due[Clock.FIRST_SOLUTION] == local(2026, 3, 11, 14, 0)
    # 2 days = 48 working hours: Fri 1, Mon-Fri 45, then 2 h into Monday 16 Mar.
    assert due[Clock.SOLUTION_EMAIL] == local(2026, 3, 16, 11, 0)
    assert due[Clock.RESOLUTION] == local(2026, 3, 18, 17, 0), "72 working hours"


@pytest.mark.parametrize(
    "section, problem",
    [
        ({"working_hours": {"monday": ["09:00", "18:00"]}}, "unknown weekday 'monday'"),
        ({"working_hours": {"mon": ["18:00", "09:00"]}}, "start before they end"),
        ({"working_hours": {"mon": None}}, "at least one weekday"),
        ({"timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"quiet_hours": {"enabled": True, "start": "9pm"}}, "not a time of day"),
    ],
)
def test_a_bad_calendar_section_is_refused_by_name(policy: Policy, section, problem) -> None:
    with pytest.raises(PolicyError, match=problem):
        with_calendar(policy, **section)


# -- quiet hours -------------------------------------------------------------

def test_quiet_hours_hold_emails_and_deadline_nudges_only() -> None:
    cal = calendar(enabled=False, quiet_hours={"enabled": True, "start": "21:00", "end": "08:00"})
    tuesday_night, next_morning = local(2026, 3, 3, 23, 0), local(2026, 3, 4, 9, 0)
    assert first_attempt(tuesday_night, Medium.EMAIL, cal,
                         caused_by_deadline=False) == next_morning
    assert first_attempt(tuesday_night, Medium.GROUP, cal,
                         caused_by_deadline=True) == next_morning
    # A notice of what someone just did in chat goes out at once, as do app messages and SMS.
    assert first_attempt(tuesday_night, Medium.GROUP, cal,
                         caused_by_deadline=False) == tuesday_night
    assert first_attempt(tuesday_night, Medium.SMS, cal,
                         caused_by_deadline=True) == tuesday_night
    early = local(2026, 3, 4, 7, 30)
    assert first_attempt(early, Medium.EMAIL, cal, caused_by_deadline=True) == next_morning
    evening = local(2026, 3, 4, 20, 59)
    assert first_attempt(evening, Medium.EMAIL, cal, caused_by_deadline=True) == evening


@pytest.fixture
async def quiet_ledger(db: str, policy: Policy) -> Ledger:
    quiet = with_calendar(policy, quiet_hours={"enabled": True, "start": "21:00", "end": "08:00"})
    book = PolicyBook(quiet)
    await book.store_current()
    return Ledger(book)


@pytest.fixture
async def delivery(quiet_ledger: Ledger, emulator, clock) -> AsyncIterator[Delivery]:
    async with delivering(emulator, clock) as adapters:
        yield adapters


async def test_a_friday_23_00_nudge_goes_out_monday_09_00_and_the_breach_stays_at_23_00(
    quiet_ledger: Ledger, delivery: Delivery, clock: list[datetime]
) -> None:
    dispatched_at = clock[0] = local(2026, 3, 6, 21, 0)
    out = await open_complaint(complaint(), quiet_ledger, actor=CALL_CENTRE, source="api",
                               now=dispatched_at)
    number = out.ticket.number
    await delivery.run(dispatched_at)
    [notice] = delivery.webhook_posts("hook-sh001")
    assert f"#{number}" in notice, "the dispatch notice of a person's action is not held"

    due = clock[0] = local(2026, 3, 6, 23, 0)  # R12: 2 h without a response
    [action] = await sweep(quiet_ledger, now=due)
    assert action.clock is Clock.RESPONSE
    await delivery.run(due)
    assert delivery.mailbox.received == []
    assert len(delivery.webhook_posts("hook-sh001")) == 1, "no nudge at night"
    [breach] = await TicketEvent.filter(ticket_id=number, kind="deadline_breached")
    assert breach.at == due and breach.data["due_at"] == due.isoformat()

    saturday = clock[0] = local(2026, 3, 7, 10, 0)
    await delivery.run(saturday)
    assert delivery.mailbox.received == [], "the weekend is not a working period"

    monday = clock[0] = local(2026, 3, 9, 9, 0)
    held = await Notification.filter(ticket_id=number, kind="response_overdue")
    assert {n.next_attempt_at for n in held} == {monday}
    await delivery.run(monday)
    assert [m["Subject"] for m in delivery.mailbox.to("sh.zhang@sh001.example")] == [
        m["Subject"] for m in delivery.mailbox.to("sh.chen@sh001.example")]
    [mail] = delivery.mailbox.to("sh.zhang@sh001.example")
    assert f"#{number}" in mail["Subject"]
    nudge = delivery.webhook_posts("hook-sh001")[1:]
    assert len(nudge) == 1 and f"#{number}" in nudge[0] and "响应" in nudge[0]
