"""R24: the figures of a weekly or monthly report, aggregated in the database.

A period is an ISO week (Monday to Sunday) or a calendar month in the
configured zone, turned into UTC bounds [start, end). A scope is one dealer,
one region or the whole brand. The cohort of a period is every ticket
dispatched in it (cancelled tickets, i.e. upheld disputes, are not complaints
and do not count); events (escalations, staged closures), closings
(satisfaction) and approvals (compensation) count when they happened in it.
The survey (R23) counts the closings of the period, each of which sent the
customer a survey link, and the answers to them known when the report is
made: the response rate and the mean of the customer's stars.

Every figure is one SQL aggregate; the only rows that come back to Python are
the counts, the at most two values around a percentile and, for the workbook,
the ticket list. Both backends (SQLite, PostgreSQL) run the same queries but
for three dialect fragments: placeholders, seconds between two times, and
JSON access.
"""

from __future__ import annotations

import calendar
import math
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal
from zoneinfo import ZoneInfo

from tortoise import connections

from bot.db import fetch_rows
from bot.domain.enums import Category, Channel, Flag
from bot.domain.policy import Policy
from models import Dealer, Region
from models import Ticket as TicketRow

Kind = Literal["weekly", "monthly"]
Level = Literal["dealer", "region", "brand"]

_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


# -- periods and scopes -------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """One ISO week or calendar month: `label` is 2026-W10 or 2026-03; `first_day`
    and `last_day` are local dates; `start`/`end` the UTC bounds [start, end)."""

    kind: Kind
    label: str
    first_day: date
    last_day: date
    start: datetime
    end: datetime

    def previous(self, zone: ZoneInfo) -> Period:
        """The period just before this one."""
        return period_containing(self.kind, self.first_day - timedelta(days=1), zone)

    def recent(self, count: int, zone: ZoneInfo) -> list[Period]:
        """The last `count` periods ending with this one, oldest first."""
        periods = [self]
        while len(periods) < count:
            periods.append(periods[-1].previous(zone))
        return periods[::-1]

    @property
    def title(self) -> str:
        """How people read the period: 2026-W10（03-02 至 03-08）."""
        return f"{self.label}（{self.first_day:%m-%d} 至 {self.last_day:%m-%d}）"


def _utc(day: date, zone: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)


def period_containing(kind: Kind, day: date, zone: ZoneInfo) -> Period:
    """The week or month (local) that contains `day`."""
    if kind == "weekly":
        first = day - timedelta(days=day.weekday())
        last = first + timedelta(days=6)
        year, week, _ = first.isocalendar()
        label = f"{year}-W{week:02d}"
    else:
        first = day.replace(day=1)
        last = first.replace(day=calendar.monthrange(first.year, first.month)[1])
        label = f"{first:%Y-%m}"
    return Period(kind, label, first, last, _utc(first, zone),
                  _utc(last + timedelta(days=1), zone))


# How many periods back a report looks (the volume history of the chart).
HISTORY = 8


def parse_period(kind: Kind, text: str | None, now: datetime, zone: ZoneInfo) -> Period:
    """The period named by `text` (2026-W10 / 2026-03), or without it the last
    complete one before `now`. ValueError (in Chinese) when it cannot be read,
    has not begun yet, or lies so early that the periods before it, which a
    report compares with, are not dates any more (0001-W01)."""
    if not text:
        current = period_containing(kind, now.astimezone(zone).date(), zone)
        return current.previous(zone)
    pattern = _WEEK if kind == "weekly" else _MONTH
    match = pattern.match(text.strip())
    example, unit = ("2026-W10", "周") if kind == "weekly" else ("2026-03", "月")
    if match is None:
        raise ValueError(f"无法识别的{unit}份：{text}（例如 {example}）")
    year, number = int(match[1]), int(match[2])
    try:
        day = date.fromisocalendar(year, number, 1) if kind == "weekly" else date(year, number, 1)
    except ValueError:
        raise ValueError(f"不存在的{unit}份：{text}") from None
    if day > now.astimezone(zone).date():
        raise ValueError(f"{text} 尚未开始，没有可统计的数据")
    try:
        period = period_containing(kind, day, zone)
        period.recent(HISTORY, zone)
    except (OverflowError, ValueError):
        raise ValueError(f"{text} 超出可统计的范围") from None
    return period


@dataclass(frozen=True)
class Scope:
    """Whose figures: one dealer, one region, or the brand (`code` empty)."""

    level: Level
    code: str = ""

    @classmethod
    def parse(cls, text: str) -> Scope:
        """dealer:SH001, region:EAST or brand; ValueError otherwise."""
        level, _, code = text.strip().partition(":")
        if level == "brand" and not code:
            return cls("brand")
        if level in ("dealer", "region") and code:
            return cls(level, code)  # type: ignore[arg-type]
        raise ValueError(f"无法识别的范围：{text}（dealer:代码、region:代码 或 brand）")

    def __str__(self) -> str:
        return f"{self.level}:{self.code}" if self.code else self.level

    def where(self) -> tuple[str, list[Any]]:
        """The SQL condition on ticket alias `t` and its parameters."""
        if self.level == "dealer":
            return "t.dealer_code = ?", [self.code]
        if self.level == "region":
            return "t.region_code = ?", [self.code]
        return "1 = 1", []


async def scope_name(scope: Scope) -> str:
    """The Chinese name of a scope: the dealer's or region's name, or 全品牌."""
    if scope.level == "dealer":
        dealer = await Dealer.get_or_none(code=scope.code)
        return f"{dealer.name}（{scope.code}）" if dealer else scope.code
    if scope.level == "region":
        region = await Region.get_or_none(code=scope.code)
        return f"{region.name}（{scope.code}）" if region else scope.code
    return "全品牌"


# -- the SQL dialect ----------------------------------------------------------


def _postgres() -> bool:
    return connections.get("default").capabilities.dialect == "postgres"


def _seconds(start: str, finish: str) -> str:
    """SQL for the seconds from `start` to `finish` (two timestamp columns)."""
    if _postgres():
        return f"EXTRACT(EPOCH FROM ({finish} - {start}))"
    # tortoise stores SQLite times as ISO text with their UTC offset; %s reads it.
    return (f"(CAST(strftime('%s', {finish}) AS INTEGER)"
            f" - CAST(strftime('%s', {start}) AS INTEGER))")


def _json_has(column: str, key: str) -> str:
    """SQL true when the JSON object in `column` has `key` (a literal identifier)."""
    if _postgres():
        return f"({column} ->> '{key}') IS NOT NULL"
    return f"json_extract({column}, '$.{key}') IS NOT NULL"


def _json_elements(column: str) -> str:
    """A FROM item yielding the elements of the JSON array `column` as f.value."""
    if _postgres():
        return f"jsonb_array_elements_text({column}) AS f(value)"
    return f"json_each({column}) AS f"


def _json_int(column: str, key: str) -> str:
    """SQL for the integer under `key` (a literal identifier) of the JSON object in `column`."""
    if _postgres():
        return f"CAST(({column} ->> '{key}') AS BIGINT)"
    return f"json_extract({column}, '$.{key}')"


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


# -- the figures --------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """The time limits the shares are measured against (R12, R13, R15)."""

    response: timedelta
    first_solution: timedelta
    resolution: timedelta

    @classmethod
    def of(cls, policy: Policy) -> Limits:
        """The general-complaint clocks of a policy."""
        clocks = policy.clocks.general
        return cls(clocks.response, clocks.first_solution, clocks.resolution)


@dataclass
class RankRow:
    """One dealer (region view) or region (brand view) in the ranking."""

    code: str
    name: str
    received: int
    responded_in_time: float | None
    resolved_in_time: float | None
    backlog: int
    rank: int = 0
    survey_response_rate: float | None = None
    survey_mean: float | None = None
    first_call_resolutions: int = 0


@dataclass
class Figures:
    """Every figure of one scope's report for one period.

    Shares are fractions (0..1) of the tickets received, None when none were;
    times are minutes (response) and hours (resolution); `compensation_approved`
    is yuan approved (R25) in the period. `backlog` and `overdue` count as of
    `as_of` (local time): the period's end, or now while the period runs."""

    period: Period
    scope: Scope
    scope_name: str
    received: int
    # Settled on the first call by the call centre: recorded closed, never dispatched.
    first_call_resolutions: int
    by_category: dict[str, int]
    by_channel: dict[str, int]
    by_flag: dict[str, int]
    repeats: int
    escalations: int
    responded_in_time: float | None
    first_solution_in_time: float | None
    resolved_in_time: float | None
    response_median_min: float | None
    response_p90_min: float | None
    resolution_median_h: float | None
    resolution_p90_h: float | None
    backlog: int
    overdue: int
    staged_closures: int
    compensation_approved: float
    satisfaction: float | None
    survey_invited: int
    survey_answered: int
    survey_response_rate: float | None
    survey_mean: float | None
    as_of: datetime
    previous: Figures | None = None
    ranking: list[RankRow] = field(default_factory=list)

    HEADLINE = ("received", "first_call_resolutions", "repeats", "escalations", "responded_in_time",
                "first_solution_in_time", "resolved_in_time", "backlog", "overdue",
                "staged_closures", "compensation_approved", "satisfaction",
                "survey_response_rate", "survey_mean")

    @property
    def running(self) -> bool:
        """True while the period has not ended: its backlog is as of now."""
        return self.as_of < self.period.end

    def change(self, name: str) -> float | None:
        """This period's value of a headline figure minus the previous period's."""
        if self.previous is None:
            return None
        now, before = getattr(self, name), getattr(self.previous, name)
        if now is None or before is None:
            return None
        return round(now - before, 4)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (the API's body)."""
        body = asdict(self)
        body.pop("previous")
        body["period"] = {"kind": self.period.kind, "label": self.period.label,
                          "first_day": self.period.first_day.isoformat(),
                          "last_day": self.period.last_day.isoformat(),
                          "start": self.period.start.isoformat(),
                          "end": self.period.end.isoformat()}
        body["scope"] = str(self.scope)
        body["as_of"] = self.as_of.isoformat()
        body["running"] = self.running
        body["change"] = {name: self.change(name) for name in self.HEADLINE}
        return body


async def _percentile(values_sql: str, params: list[Any], count: int, share: float
                      ) -> float | None:
    """The `share` percentile (linear, as PostgreSQL's percentile_cont) of the
    values a subquery yields as `v`, reading at most two rows of it."""
    if count == 0:
        return None
    position = share * (count - 1)
    low = math.floor(position)
    rows = await fetch_rows(f"SELECT v FROM ({values_sql}) q ORDER BY v LIMIT 2 OFFSET {low}",
                            params)
    first = float(rows[0]["v"])
    second = float(rows[1]["v"]) if len(rows) > 1 else first
    return first + (second - first) * (position - low)


async def _grouped(column: str, cohort: str, params: list[Any], source: str = "ticket t"
                   ) -> dict[str, int]:
    rows = await fetch_rows(
        f"SELECT {column} AS k, COUNT(*) AS n FROM {source} WHERE {cohort} "
        f"GROUP BY {column} ORDER BY {column}", params)
    return {str(r["k"]): int(r["n"]) for r in rows}


def _in_time(column: str, limit: timedelta, *, since: bool = False) -> tuple[str, list[Any]]:
    """SUM of the tickets whose `column` came within `limit` of dispatch (and,
    with `since`, that were dispatched at or after a further parameter)."""
    condition = f"{column} IS NOT NULL AND {_seconds('t.dispatched_at', column)} <= ?"
    if since:
        condition += " AND t.dispatched_at >= ?"
    return f"SUM(CASE WHEN {condition} THEN 1 ELSE 0 END)", [limit.total_seconds()]


async def compute_figures(period: Period, scope: Scope, limits: Limits, zone: ZoneInfo, *,
                          now: datetime | None = None, with_previous: bool = True) -> Figures:
    """The report of `scope` for `period`, with the previous period's figures
    (for the change) and, for a region or the brand, the ranking. The backlog
    counts at the period's end or, while the period still runs, at `now`:
    the end is in the future and would count every open ticket as overdue."""
    as_of = period.end if now is None else min(period.end, now)
    scope_sql, scope_params = scope.where()
    bounds = [period.start, period.end]
    cohort = (f"t.dispatched_at >= ? AND t.dispatched_at < ? AND t.status <> 'cancelled' "
              f"AND {scope_sql}")
    cohort_params = bounds + scope_params
    finished = "COALESCE(t.resolved_at, t.closed_at)"

    responded, p1 = _in_time("t.responded_at", limits.response)
    solved, p2 = _in_time("t.first_solution_at", limits.first_solution)
    resolved, p3 = _in_time(finished, limits.resolution)
    [main] = await fetch_rows(
        f"SELECT COUNT(*) AS received, "
        f"SUM(CASE WHEN t.repeat_of IS NOT NULL THEN 1 ELSE 0 END) AS repeats, "
        f"SUM(CASE WHEN t.resolved_on_call THEN 1 ELSE 0 END) AS first_call, "
        f"{responded} AS responded_in_time, {solved} AS solved_in_time, "
        f"{resolved} AS resolved_in_time, COUNT(t.responded_at) AS responded, "
        f"COUNT({finished}) AS finished FROM ticket t WHERE {cohort}",
        p1 + p2 + p3 + cohort_params)
    received = int(main["received"])

    def share(key: str) -> float | None:
        return round(int(main[key] or 0) / received, 4) if received else None

    response_values = (f"SELECT {_seconds('t.dispatched_at', 't.responded_at')} / 60.0 AS v "
                       f"FROM ticket t WHERE {cohort} AND t.responded_at IS NOT NULL")
    resolution_values = (f"SELECT {_seconds('t.dispatched_at', finished)} / 3600.0 AS v "
                         f"FROM ticket t WHERE {cohort} AND {finished} IS NOT NULL")
    responded_count, finished_count = int(main["responded"]), int(main["finished"])

    in_period = f"e.at >= ? AND e.at < ? AND {scope_sql}"
    events = "ticket_event e JOIN ticket t ON t.id = e.ticket_id"
    # An escalation is its own event, or the R15 breach / R14 follow-up that caused one.
    [escalations] = await fetch_rows(
        f"SELECT COUNT(*) AS n FROM {events} WHERE {in_period} AND (e.kind = 'escalated' "
        f"OR (e.kind IN ('deadline_breached', 'followup') AND {_json_has('e.data', 'reason')}))",
        bounds + scope_params)
    [staged] = await fetch_rows(
        f"SELECT COUNT(*) AS n FROM {events} WHERE {in_period} "
        f"AND e.kind = 'staged_closure_approved'", bounds + scope_params)

    # Open at `as_of`; overdue when older than the resolution limit and not
    # resolved by then.
    [backlog] = await fetch_rows(
        f"SELECT COUNT(*) AS open, SUM(CASE WHEN t.dispatched_at <= ? AND "
        f"(t.resolved_at IS NULL OR t.resolved_at >= ?) THEN 1 ELSE 0 END) AS overdue "
        f"FROM ticket t WHERE t.dispatched_at < ? AND (t.closed_at IS NULL OR t.closed_at >= ?) "
        f"AND t.status <> 'cancelled' AND {scope_sql}",
        [as_of - limits.resolution, as_of, as_of, as_of] + scope_params)
    [satisfaction] = await fetch_rows(
        f"SELECT AVG(t.satisfaction) AS v FROM ticket t WHERE t.closed_at >= ? "
        f"AND t.closed_at < ? AND t.satisfaction IS NOT NULL AND {scope_sql}",
        bounds + scope_params)
    [compensation] = await fetch_rows(
        f"SELECT SUM(a.amount) AS v FROM approval_request a JOIN ticket t ON t.id = a.ticket_id "
        f"WHERE a.kind = 'compensation' AND a.status = 'approved' AND a.decided_at >= ? "
        f"AND a.decided_at < ? AND {scope_sql}", bounds + scope_params)

    avg = _number(satisfaction["v"])
    survey = (await survey_figures(period, scope)).get("", SurveyFigures())
    figures = Figures(
        period=period,
        scope=scope,
        scope_name=await scope_name(scope),
        received=received,
        first_call_resolutions=int(main["first_call"] or 0),
        by_category=await _grouped("t.category", cohort, cohort_params),
        by_channel=await _grouped("t.channel", cohort, cohort_params),
        by_flag=await _grouped("f.value", cohort, cohort_params,
                               f"ticket t CROSS JOIN {_json_elements('t.flags')}"),
        repeats=int(main["repeats"] or 0),
        escalations=int(escalations["n"]),
        responded_in_time=share("responded_in_time"),
        first_solution_in_time=share("solved_in_time"),
        resolved_in_time=share("resolved_in_time"),
        response_median_min=await _percentile(response_values, cohort_params, responded_count, .5),
        response_p90_min=await _percentile(response_values, cohort_params, responded_count, .9),
        resolution_median_h=await _percentile(resolution_values, cohort_params, finished_count,
                                              .5),
        resolution_p90_h=await _percentile(resolution_values, cohort_params, finished_count, .9),
        backlog=int(backlog["open"]),
        overdue=int(backlog["overdue"] or 0),
        staged_closures=int(staged["n"]),
        compensation_approved=float(compensation["v"] or Decimal(0)),
        satisfaction=round(avg, 2) if avg is not None else None,
        survey_invited=survey.invited,
        survey_answered=survey.answered,
        survey_response_rate=survey.response_rate,
        survey_mean=survey.mean,
        as_of=as_of.astimezone(zone),
    )
    if with_previous:
        figures.previous = await compute_figures(period.previous(zone), scope, limits, zone,
                                                 now=now, with_previous=False)
        figures.ranking = await ranking(period, scope, limits, as_of=as_of)
    return figures


@dataclass(frozen=True)
class SurveyFigures:
    """R23 of one unit: closings (each sent a survey link), answers to them,
    the share answered and the mean of the customer's stars."""

    invited: int = 0
    answered: int = 0
    mean: float | None = None

    @property
    def response_rate(self) -> float | None:
        """The share of the closings the customer answered; None without closings."""
        return round(self.answered / self.invited, 4) if self.invited else None


async def survey_figures(period: Period, scope: Scope, by: str = "") -> dict[str, SurveyFigures]:
    """The survey figures of the closings in `period` within `scope`: one
    entry keyed "" or, with `by` (a ticket column such as t.dealer_code), one
    per value of it."""
    scope_sql, scope_params = scope.where()
    key, grouped = (by, f" GROUP BY {by}") if by else ("''", "")
    rows = await fetch_rows(
        f"SELECT {key} AS k, COUNT(*) AS invited, COUNT(a.id) AS answered, "
        f"AVG({_json_int('a.data', 'score')}) AS mean "
        f"FROM ticket_event e JOIN ticket t ON t.id = e.ticket_id "
        f"LEFT JOIN ticket_event a ON a.ticket_id = e.ticket_id "
        f"AND a.kind = 'survey_answered' AND {_json_int('a.data', 'closing')} = e.id "
        f"WHERE e.kind = 'closed' AND e.at >= ? AND e.at < ? AND {scope_sql}{grouped}",
        [period.start, period.end] + scope_params)
    return {
        str(r["k"]): SurveyFigures(
            int(r["invited"]), int(r["answered"]),
            round(mean, 2) if (mean := _number(r["mean"])) is not None else None)
        for r in rows
    }


async def ranking(period: Period, scope: Scope, limits: Limits, *,
                  as_of: datetime | None = None) -> list[RankRow]:
    """A region's dealers, or the brand's regions, side by side: ranked by the
    share responded in time, then resolved in time, then fewest open at the end
    (or at `as_of`, while the period runs). Empty for a dealer."""
    as_of = as_of or period.end
    if scope.level == "dealer":
        return []
    if scope.level == "region":
        units = ("dealer u JOIN region r ON r.id = u.region_id", "t.dealer_code = u.code",
                 "r.code = ?", [scope.code])
    else:
        units = ("region u", "t.region_code = u.code", "1 = 1", [])
    source, join, where, params = units
    # One pass over the tickets dispatched before the end: those since the start
    # are the period's cohort, those still open at `as_of` its backlog.
    responded, p1 = _in_time("t.responded_at", limits.response, since=True)
    resolved, p2 = _in_time("COALESCE(t.resolved_at, t.closed_at)", limits.resolution,
                            since=True)
    rows = await fetch_rows(
        f"SELECT u.code AS code, u.name AS name, "
        f"SUM(CASE WHEN t.dispatched_at >= ? THEN 1 ELSE 0 END) AS received, "
        f"{responded} AS responded, {resolved} AS resolved, "
        f"SUM(CASE WHEN t.dispatched_at >= ? AND t.resolved_on_call THEN 1 ELSE 0 END)"
        f" AS first_call, "
        f"SUM(CASE WHEN t.id IS NOT NULL AND (t.closed_at IS NULL OR t.closed_at >= ?) "
        f"THEN 1 ELSE 0 END) AS backlog "
        f"FROM {source} LEFT JOIN ticket t ON {join} AND t.dispatched_at < ? "
        f"AND t.status <> 'cancelled' WHERE {where} GROUP BY u.code, u.name",
        [period.start] + p1 + [period.start] + p2 + [period.start, period.start, as_of,
                                                   period.end]
        + params)
    surveys = await survey_figures(
        period, scope, "t.dealer_code" if scope.level == "region" else "t.region_code")
    ranked = []
    for r in rows:
        received = int(r["received"] or 0)
        survey = surveys.get(r["code"], SurveyFigures())
        ranked.append(RankRow(
            code=r["code"], name=r["name"], received=received,
            responded_in_time=round(int(r["responded"] or 0) / received, 4) if received else None,
            resolved_in_time=round(int(r["resolved"] or 0) / received, 4) if received else None,
            backlog=int(r["backlog"] or 0),
            survey_response_rate=survey.response_rate, survey_mean=survey.mean,
            first_call_resolutions=int(r["first_call"] or 0),
        ))
    ranked.sort(key=lambda row: (-(row.responded_in_time or 0), -(row.resolved_in_time or 0),
                                 row.backlog, row.code))
    for position, row in enumerate(ranked, start=1):
        row.rank = position
    return ranked


async def volume_history(period: Period, scope: Scope, zone: ZoneInfo, count: int = HISTORY
                         ) -> list[tuple[str, dict[str, int]]]:
    """Tickets received by category in the last `count` periods, oldest first."""
    scope_sql, scope_params = scope.where()
    history = []
    for each in period.recent(count, zone):
        cohort = (f"t.dispatched_at >= ? AND t.dispatched_at < ? AND t.status <> 'cancelled' "
                  f"AND {scope_sql}")
        counts = await _grouped("t.category", cohort, [each.start, each.end] + scope_params)
        history.append((each.label, {c.value: counts.get(c.value, 0) for c in Category}))
    return history


_PAGE = 2000
_LISTED = ("id", "dispatched_at", "dealer_code", "region_code", "category", "channel", "status",
           "customer_name", "customer_phone", "car_model", "flags", "repeat_of", "responded_at",
           "first_solution_at", "resolved_at", "closed_at", "satisfaction", "survey_score",
           "about_staff", "about_staff_name")


async def ticket_list(period: Period, scope: Scope, *, page: int = _PAGE
                      ) -> list[dict[str, Any]]:
    """The tickets received in the period, for the workbook's detail sheet,
    read `page` rows at a time."""
    query = TicketRow.filter(dispatched_at__gte=period.start, dispatched_at__lt=period.end
                             ).exclude(status="cancelled")
    if scope.level != "brand":
        query = query.filter(**{f"{scope.level}_code": scope.code})
    # In pages: a brand's month is 100,000+ rows whose conversion would hold the
    # event loop (and every callback) for seconds; between pages it answers.
    tickets: list[dict[str, Any]] = []
    while True:
        after = tickets[-1]["id"] if tickets else 0
        rows = await query.filter(id__gt=after).order_by("id").limit(page).values(*_LISTED)
        tickets.extend(rows)
        if len(rows) < page:
            return tickets


LABELS = {**{c.value: c.label for c in Category}, **{c.value: c.label for c in Channel},
          **{f.value: f.label for f in Flag}}


@dataclass
class Report:
    """Everything one report shows: the figures, the ticket list and the history."""

    figures: Figures
    tickets: list[dict[str, Any]]
    history: list[tuple[str, dict[str, int]]]


async def build_report(kind: Kind, period_text: str | None, scope: Scope, policy: Policy,
                       zone: ZoneInfo, now: datetime) -> Report:
    """The report of `scope` for the named period (default: the last complete one).
    ValueError (in Chinese) when the period or scope cannot be read."""
    period = parse_period(kind, period_text, now, zone)
    figures = await compute_figures(period, scope, Limits.of(policy), zone, now=now)
    return Report(figures, await ticket_list(period, scope),
                  await volume_history(period, scope, zone))
