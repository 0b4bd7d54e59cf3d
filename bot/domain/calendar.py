"""The business calendar: working time, and when a notice may go out at night.

Pure: the calendar (`bot.policy.BusinessCalendar`) and every instant are
arguments. China's statutory holidays and make-up working days come from the
`chinese-calendar` package, whose data is a table shipped with it (no I/O).
For a year it has no data for yet, the plain weekday hours apply until the
package is updated.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta

import chinese_calendar

from bot.domain.policy import BusinessCalendar
from bot.domain.ticket import Medium


def _statutory_day(day: date) -> str | None:
    """"holiday" (法定节假日), "makeup" (调休上班) or None for an ordinary day."""
    try:
        on_holiday, name = chinese_calendar.get_holiday_detail(day)
    except NotImplementedError:  # a year the package has no data for yet
        return None
    if on_holiday and name is not None:
        return "holiday"
    if not on_holiday and day.weekday() >= 5:
        return "makeup"
    return None


def working_hours_on(day: date, calendar: BusinessCalendar) -> tuple[time, time] | None:
    """The local working hours of one day, None when the brand does not work."""
    hours = calendar.hours_on(day.weekday())
    if calendar.statutory_holidays:
        kind = _statutory_day(day)
        if kind == "holiday":
            return None
        if kind == "makeup":
            return hours or calendar.makeup_day_hours
    return hours


Period = tuple[datetime, datetime]


def _periods_from(moment: datetime, calendar: BusinessCalendar) -> Iterator[Period]:
    """The working periods (UTC start, UTC end) from `moment` on, the first one
    cut to begin at `moment` when it is already running."""
    zone = calendar.zone
    first = moment.astimezone(zone).date()
    # Ends because the policy requires working hours on at least one weekday.
    for offset in itertools.count():
        day = first + timedelta(days=offset)
        hours = working_hours_on(day, calendar)
        if hours is None:
            continue
        # Aware UTC on both ends: arithmetic in one zone object ignores DST changes.
        begin = datetime.combine(day, hours[0], tzinfo=zone).astimezone(UTC)
        end = datetime.combine(day, hours[1], tzinfo=zone).astimezone(UTC)
        if end > moment:
            yield max(begin, moment), end


def add_working_time(start: datetime, duration: timedelta, calendar: BusinessCalendar) -> datetime:
    """The instant `duration` of working time after `start`; with the calendar
    disabled, simply `start + duration`. The result is in `start`'s zone."""
    if not calendar.enabled:
        return start + duration
    remaining = duration
    for begin, end in _periods_from(start.astimezone(UTC), calendar):
        if remaining <= end - begin:
            return (begin + remaining).astimezone(start.tzinfo)
        remaining -= end - begin
    raise AssertionError("unreachable: working periods never run out")


def next_working_moment(at: datetime, calendar: BusinessCalendar) -> datetime:
    """`at` itself when it falls in working hours, else the start of the next
    working period (in `at`'s zone)."""
    begin, _ = next(_periods_from(at.astimezone(UTC), calendar))
    return begin.astimezone(at.tzinfo)


def _quiet_end(at: datetime, calendar: BusinessCalendar) -> datetime | None:
    """When the quiet window that holds `at` ends; None when `at` is not in one."""
    quiet = calendar.quiet_hours
    local = at.astimezone(calendar.zone)
    clock, today = local.time(), local.date()
    if quiet.start <= quiet.end:  # a window within one day, e.g. 12:00-13:30
        inside, end_day = quiet.start <= clock < quiet.end, today
    elif clock >= quiet.start:  # overnight, evening side: ends tomorrow
        inside, end_day = True, today + timedelta(days=1)
    else:  # overnight, morning side: ends today
        inside, end_day = clock < quiet.end, today
    if not inside:
        return None
    return datetime.combine(end_day, quiet.end, tzinfo=calendar.zone).astimezone(at.tzinfo)


def first_attempt(
    now: datetime, medium: Medium, calendar: BusinessCalendar, *, caused_by_deadline: bool
) -> datetime:
    """When a notice written at `now` may first go out. In quiet hours, e-mails
    and the group nudges a deadline causes wait for the first working moment
    after the window; everything else (a group notice of someone's command,
    app messages, SMS) goes out at once."""
    held = medium is Medium.EMAIL or (medium is Medium.GROUP and caused_by_deadline)
    if not (calendar.quiet_hours.enabled and held):
        return now
    quiet_end = _quiet_end(now, calendar)
    if quiet_end is None:
        return now
    return next_working_moment(quiet_end, calendar)
