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

Figures are computed for many units at once (`period_figures`): each query
groups the period's tickets by dealer and region, and the sums are rolled up
in Python into every dealer, every region and the brand, so a report run for
1,000 dealers costs a fixed number of queries per period, not a set per
dealer. Percentiles come from a window query per level that returns only the
two rows around each one. One scope's figures (`compute_figures`) are the
same queries restricted to its tickets and those of the units it ranks.
Both backends (SQLite, PostgreSQL) run the same queries but for three
dialect fragments: placeholders, seconds between two times, and JSON access.
"""

from __future__ import annotations

import calendar
import math
import re
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any, Literal
from zoneinfo import ZoneInfo

from tortoise import connections

from bot.db import fetch_rows
from bot.domain.enums import Category, Channel, Flag
from bot.domain.policy import Policy
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

    HEADLINE = ("received", "first_call_resolutions", "repeats", "escalations",
                "responded_in_time", "first_solution_in_time", "resolved_in_time", "backlog",
                "overdue", "staged_closures", "compensation_approved", "satisfaction",
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


# -- grouped queries: every unit of a level at once -----------------------------
#
# Each additive figure is summed per (dealer, region) group of tickets and
# rolled up in Python into every dealer, region and the brand: one query
# serves all units of all levels. Percentiles do not add up: they come from a
# window query per level that returns only the two rows around each one.

# The SQL that names a ticket's unit at each level (the brand has one unit).
_UNIT_OF: dict[Level, str | None] = {"dealer": "t.dealer_code", "region": "t.region_code",
                                     "brand": None}
_NO_UNIT = "''"  # the brand's one unit, as SQL
_SHARES = (0.5, 0.9)  # median and 90th percentile


@dataclass(frozen=True)
class Reach:
    """Which tickets a computation reads (`where`, an SQL condition on ticket
    alias `t`) and which levels of units it reports."""

    levels: tuple[Level, ...]
    where: str = "1 = 1"
    params: tuple[Any, ...] = ()

    @classmethod
    def everything(cls) -> Reach:
        """Every dealer, every region and the brand (the scheduled reports)."""
        return cls(("dealer", "region", "brand"))

    @classmethod
    def of(cls, scope: Scope) -> Reach:
        """One scope and the units its ranking lists: a region's dealers (as
        the directory has them), the brand's regions."""
        if scope.level == "dealer":
            return cls(("dealer",), "t.dealer_code = ?", (scope.code,))
        if scope.level == "region":
            return cls(("region", "dealer"),
                       "(t.region_code = ? OR t.dealer_code IN (SELECT d.code FROM dealer d "
                       "JOIN region r ON r.id = d.region_id WHERE r.code = ?))",
                       (scope.code, scope.code))
        return cls(("brand", "region"))


def _units_of(levels: tuple[Level, ...], dealer: str, region: str) -> list[Scope]:
    """The units a group of tickets (one dealer code, one region code) counts in."""
    return [Scope(level, {"dealer": dealer, "region": region, "brand": ""}[level])
            for level in levels]


class _Sums:
    """Per unit: named additive sums, and counts by key (category, channel, flag)."""

    def __init__(self) -> None:
        self.sums: dict[Scope, dict[str, Any]] = defaultdict(lambda: defaultdict(int))
        self.counts: dict[Scope, dict[str, dict[str, int]]] = defaultdict(
            lambda: defaultdict(lambda: defaultdict(int)))
        self.percentiles: dict[Scope, dict[str, float | None]] = defaultdict(dict)

    async def add(self, reach: Reach, select: str, source: str, condition: str,
                  params: list[Any]) -> None:
        """Run `SELECT {select} FROM {source} WHERE {condition}` grouped by the
        tickets' dealer and region, and add each selected column to every unit
        of those."""
        rows = await fetch_rows(
            f"SELECT t.dealer_code AS d, t.region_code AS r, {select} FROM {source} "
            f"WHERE {condition} AND {reach.where} GROUP BY t.dealer_code, t.region_code",
            params + list(reach.params))
        for row in rows:
            dealer, region = row.pop("d"), row.pop("r")
            for unit in _units_of(reach.levels, dealer, region):
                sums = self.sums[unit]
                for name, value in row.items():
                    sums[name] += value or 0

    async def count(self, reach: Reach, name: str, column: str, source: str, condition: str,
                    params: list[Any]) -> None:
        """Tickets by the value of `column` (a category, a channel, a flag),
        counted into every unit as counts[unit][name]."""
        rows = await fetch_rows(
            f"SELECT t.dealer_code AS d, t.region_code AS r, {column} AS k, COUNT(*) AS n "
            f"FROM {source} WHERE {condition} AND {reach.where} GROUP BY 1, 2, 3",
            params + list(reach.params))
        for row in rows:
            for unit in _units_of(reach.levels, row["d"], row["r"]):
                self.counts[unit][name][str(row["k"])] += int(row["n"])

    async def percentile(self, reach: Reach, name: str, value: str, condition: str,
                         params: list[Any]) -> None:
        """The median and 90th percentile (linear, as PostgreSQL's
        percentile_cont) of `value` over each unit's tickets, as
        percentiles[unit][f"{name}_50"] and [f"{name}_90"]. Per level one
        window query; only the two rows around each percentile come back."""
        wanted = " OR ".join(
            f"q.rn - 1 IN ({numerator} * (q.n - 1) / {denominator}, "
            f"{numerator} * (q.n - 1) / {denominator} + 1)"
            for numerator, denominator in (Fraction(str(s)).as_integer_ratio() for s in _SHARES))
        for level in reach.levels:
            unit = _UNIT_OF[level]
            partition = f"PARTITION BY {unit} " if unit else ""
            rows = await fetch_rows(
                f"SELECT q.k AS k, q.v AS v, q.rn AS rn, q.n AS n FROM (SELECT "
                f"{unit or _NO_UNIT} AS k, {value} AS v, "
                f"ROW_NUMBER() OVER ({partition}ORDER BY {value}) AS rn, "
                f"COUNT(*) OVER ({partition.strip()}) AS n FROM ticket t "
                f"WHERE {condition} AND {reach.where}) q WHERE {wanted}",
                params + list(reach.params))
            ranked: dict[str, dict[int, float]] = defaultdict(dict)
            sizes: dict[str, int] = {}
            for row in rows:
                ranked[row["k"]][int(row["rn"]) - 1] = float(row["v"])
                sizes[row["k"]] = int(row["n"])
            for key, values in ranked.items():
                for share in _SHARES:
                    self.percentiles[Scope(level, key)][f"{name}_{round(share * 100)}"] = (
                        _interpolate(values, sizes[key], share))


def _interpolate(values: dict[int, float], count: int, share: float) -> float:
    """The `share` percentile of `count` sorted values, given those at the
    0-based positions around it."""
    position = share * (count - 1)
    low = math.floor(position)
    first = values[low]
    second = values.get(low + 1, first)
    return first + (second - first) * (position - low)


def _in_time(column: str, limit: timedelta) -> tuple[str, list[Any]]:
    """SUM of the tickets whose `column` came within `limit` of dispatch."""
    condition = f"{column} IS NOT NULL AND {_seconds('t.dispatched_at', column)} <= ?"
    return f"SUM(CASE WHEN {condition} THEN 1 ELSE 0 END)", [limit.total_seconds()]


_FINISHED = "COALESCE(t.resolved_at, t.closed_at)"
_COHORT = "t.dispatched_at >= ? AND t.dispatched_at < ? AND t.status <> 'cancelled'"


async def _period_sums(period: Period, limits: Limits, reach: Reach, as_of: datetime) -> _Sums:
    """Every figure's ingredients of `period` for every unit `reach` reports.

    A new figure that adds up (a count, a sum; a mean as sum and count) is a
    column of one of these queries or one more `add`, read in `_figures_of`;
    every dealer, region and the brand get it, and a ranking row can take it
    from its unit's figures."""
    found = _Sums()
    bounds = [period.start, period.end]
    responded, p1 = _in_time("t.responded_at", limits.response)
    solved, p2 = _in_time("t.first_solution_at", limits.first_solution)
    resolved, p3 = _in_time(_FINISHED, limits.resolution)
    await found.add(
        reach, f"COUNT(*) AS received, "
        f"SUM(CASE WHEN t.repeat_of IS NOT NULL THEN 1 ELSE 0 END) AS repeats, "
        f"SUM(CASE WHEN t.resolved_on_call THEN 1 ELSE 0 END) AS first_call, "
        f"{responded} AS responded_in_time, {solved} AS solved_in_time, "
        f"{resolved} AS resolved_in_time, COUNT(t.responded_at) AS responded, "
        f"COUNT({_FINISHED}) AS finished", "ticket t", _COHORT, p1 + p2 + p3 + bounds)
    for name, column, source in (
            ("by_category", "t.category", "ticket t"),
            ("by_channel", "t.channel", "ticket t"),
            ("by_flag", "f.value", f"ticket t CROSS JOIN {_json_elements('t.flags')}")):
        await found.count(reach, name, column, source, _COHORT, bounds)
    await found.percentile(
        reach, "response_min", f"{_seconds('t.dispatched_at', 't.responded_at')} / 60.0",
        f"{_COHORT} AND t.responded_at IS NOT NULL", bounds)
    await found.percentile(
        reach, "resolution_h", f"{_seconds('t.dispatched_at', _FINISHED)} / 3600.0",
        f"{_COHORT} AND {_FINISHED} IS NOT NULL", bounds)
    # An escalation is its own event, or the R15 breach / R14 follow-up that caused one.
    await found.add(
        reach, f"SUM(CASE WHEN e.kind = 'escalated' OR (e.kind IN ('deadline_breached', "
        f"'followup') AND {_json_has('e.data', 'reason')}) THEN 1 ELSE 0 END) AS escalations, "
        f"SUM(CASE WHEN e.kind = 'staged_closure_approved' THEN 1 ELSE 0 END) AS staged",
        "ticket_event e JOIN ticket t ON t.id = e.ticket_id",
        "e.at >= ? AND e.at < ? AND e.kind IN ('escalated', 'deadline_breached', 'followup', "
        "'staged_closure_approved')", bounds)
    # Open at `as_of`; overdue when older than the resolution limit and not
    # resolved by then.
    await found.add(
        reach, "COUNT(*) AS open, SUM(CASE WHEN t.dispatched_at <= ? AND "
        "(t.resolved_at IS NULL OR t.resolved_at >= ?) THEN 1 ELSE 0 END) AS overdue",
        "ticket t", "t.dispatched_at < ? AND (t.closed_at IS NULL OR t.closed_at >= ?) "
        "AND t.status <> 'cancelled'", [as_of - limits.resolution, as_of, as_of, as_of])
    await found.add(
        reach, "SUM(t.satisfaction) AS satisfaction_sum, COUNT(t.satisfaction) AS satisfied",
        "ticket t", "t.closed_at >= ? AND t.closed_at < ? AND t.satisfaction IS NOT NULL",
        bounds)
    # R23: each closing sent a survey link; the answers to it known by now.
    await found.add(
        reach, f"COUNT(*) AS survey_invited, COUNT(a.id) AS survey_answered, "
        f"SUM({_json_int('a.data', 'score')}) AS survey_score_sum",
        f"ticket_event e JOIN ticket t ON t.id = e.ticket_id LEFT JOIN ticket_event a "
        f"ON a.ticket_id = e.ticket_id AND a.kind = 'survey_answered' "
        f"AND {_json_int('a.data', 'closing')} = e.id",
        "e.kind = 'closed' AND e.at >= ? AND e.at < ?", bounds)
    await found.add(
        reach, "SUM(a.amount) AS compensation",
        "approval_request a JOIN ticket t ON t.id = a.ticket_id",
        "a.kind = 'compensation' AND a.status = 'approved' AND a.decided_at >= ? "
        "AND a.decided_at < ?", bounds)
    return found


def _figures_of(found: _Sums, period: Period, scope: Scope, name: str, as_of: datetime,
                zone: ZoneInfo) -> Figures:
    """One unit's figures from the sums (all zero for a unit without tickets)."""
    sums = found.sums.get(scope, {})
    counts = found.counts.get(scope, {})
    percentiles = found.percentiles.get(scope, {})
    received = int(sums.get("received", 0))

    def share(key: str) -> float | None:
        return round(int(sums.get(key, 0)) / received, 4) if received else None

    satisfied = int(sums.get("satisfied", 0))
    avg = float(sums["satisfaction_sum"]) / satisfied if satisfied else None
    invited, answered = int(sums.get("survey_invited", 0)), int(sums.get("survey_answered", 0))
    stars = float(sums["survey_score_sum"]) / answered if answered else None
    return Figures(
        period=period,
        scope=scope,
        scope_name=name,
        received=received,
        first_call_resolutions=int(sums.get("first_call", 0)),
        by_category=dict(sorted(counts.get("by_category", {}).items())),
        by_channel=dict(sorted(counts.get("by_channel", {}).items())),
        by_flag=dict(sorted(counts.get("by_flag", {}).items())),
        repeats=int(sums.get("repeats", 0)),
        escalations=int(sums.get("escalations", 0)),
        responded_in_time=share("responded_in_time"),
        first_solution_in_time=share("solved_in_time"),
        resolved_in_time=share("resolved_in_time"),
        response_median_min=percentiles.get("response_min_50"),
        response_p90_min=percentiles.get("response_min_90"),
        resolution_median_h=percentiles.get("resolution_h_50"),
        resolution_p90_h=percentiles.get("resolution_h_90"),
        backlog=int(sums.get("open", 0)),
        overdue=int(sums.get("overdue", 0)),
        staged_closures=int(sums.get("staged", 0)),
        compensation_approved=float(sums.get("compensation") or Decimal(0)),
        satisfaction=round(avg, 2) if avg is not None else None,
        survey_invited=invited,
        survey_answered=answered,
        survey_response_rate=round(answered / invited, 4) if invited else None,
        survey_mean=round(stars, 2) if stars is not None else None,
        as_of=as_of.astimezone(zone),
    )


@dataclass(frozen=True)
class Directory:
    """The dealers and regions as the directory has them: names, and each
    dealer's region (whose ranking lists it)."""

    dealers: dict[str, tuple[str, str]]  # code -> (name, region code)
    regions: dict[str, str]  # code -> name

    @classmethod
    async def load(cls) -> Directory:
        """Read both tables (two queries)."""
        dealers = await fetch_rows("SELECT d.code AS code, d.name AS name, r.code AS region "
                                   "FROM dealer d JOIN region r ON r.id = d.region_id", [])
        regions = await fetch_rows("SELECT code, name FROM region", [])
        return cls({d["code"]: (d["name"], d["region"]) for d in dealers},
                   {r["code"]: r["name"] for r in regions})

    def name(self, scope: Scope) -> str:
        """The Chinese name of a scope: 上海浦东4S店（SH001）, its code when the
        directory does not know it, or 全品牌."""
        if scope.level == "dealer":
            known = self.dealers.get(scope.code)
            return f"{known[0]}（{scope.code}）" if known else scope.code
        if scope.level == "region":
            known_region = self.regions.get(scope.code)
            return f"{known_region}（{scope.code}）" if known_region else scope.code
        return "全品牌"

    def ranked(self, scope: Scope) -> list[tuple[Scope, str]]:
        """The units a scope's ranking lists, with their names: a region's
        dealers, the brand's regions; none for a dealer."""
        if scope.level == "region":
            return [(Scope("dealer", code), name)
                    for code, (name, region) in self.dealers.items() if region == scope.code]
        if scope.level == "brand":
            return [(Scope("region", code), name) for code, name in self.regions.items()]
        return []


def _ranking(units: list[tuple[Figures, str]]) -> list[RankRow]:
    """Units side by side, ranked by the share responded in time, then resolved
    in time, then fewest open at the end (or at `as_of`, while the period runs)."""
    ranked = [RankRow(code=f.scope.code, name=name, received=f.received,
                      responded_in_time=f.responded_in_time,
                      resolved_in_time=f.resolved_in_time, backlog=f.backlog,
                      survey_response_rate=f.survey_response_rate, survey_mean=f.survey_mean,
                      first_call_resolutions=f.first_call_resolutions)
              for f, name in units]
    ranked.sort(key=lambda row: (-(row.responded_in_time or 0), -(row.resolved_in_time or 0),
                                 row.backlog, row.code))
    for position, row in enumerate(ranked, start=1):
        row.rank = position
    return ranked


@dataclass
class PeriodFigures:
    """Every unit's figures of one period, each with the previous period's and
    its ranking; `of(scope)` reads one (all zeros for a unit without tickets)."""

    period: Period
    directory: Directory
    current: _Sums
    previous: _Sums | None
    as_of: datetime
    previous_as_of: datetime
    zone: ZoneInfo

    def of(self, scope: Scope) -> Figures:
        """The figures of `scope`, with the previous period's and its ranking."""
        figures = self._plain(scope, self.current, self.period, self.as_of)
        if self.previous is not None:
            figures.previous = self._plain(scope, self.previous, self.period.previous(self.zone),
                                           self.previous_as_of)
            figures.ranking = _ranking([
                (self._plain(unit, self.current, self.period, self.as_of), name)
                for unit, name in self.directory.ranked(scope)])
        return figures

    def _plain(self, scope: Scope, found: _Sums, period: Period, as_of: datetime) -> Figures:
        return _figures_of(found, period, scope, self.directory.name(scope), as_of, self.zone)


async def period_figures(period: Period, limits: Limits, zone: ZoneInfo, reach: Reach, *,
                         now: datetime | None = None, with_previous: bool = True
                         ) -> PeriodFigures:
    """The figures of every unit `reach` reports, for `period` and (with
    `with_previous`) the period before: a fixed number of grouped queries per
    period, however many dealers. Backlogs count at each period's end or,
    while it still runs, at `now`: the end is in the future and would count
    every open ticket as overdue."""
    as_of = period.end if now is None else min(period.end, now)
    previous = period.previous(zone)
    previous_as_of = previous.end if now is None else min(previous.end, now)
    return PeriodFigures(
        period=period, directory=await Directory.load(),
        current=await _period_sums(period, limits, reach, as_of),
        previous=(await _period_sums(previous, limits, reach, previous_as_of)
                  if with_previous else None),
        as_of=as_of, previous_as_of=previous_as_of, zone=zone)


async def compute_figures(period: Period, scope: Scope, limits: Limits, zone: ZoneInfo, *,
                          now: datetime | None = None, with_previous: bool = True) -> Figures:
    """The report of `scope` for `period`, with the previous period's figures
    (for the change) and, for a region or the brand, the ranking."""
    found = await period_figures(period, limits, zone, Reach.of(scope), now=now,
                                 with_previous=with_previous)
    return found.of(scope)


async def volume_histories(period: Period, zone: ZoneInfo, reach: Reach,
                           count: int = HISTORY) -> dict[Scope, list[tuple[str, dict[str, int]]]]:
    """Tickets received by category in the last `count` periods, oldest first,
    for every unit `reach` reports, in one query over the whole span; a unit
    without tickets is missing (see `history_of`)."""
    periods = period.recent(count, zone)
    bucket = " ".join(f"WHEN t.dispatched_at < ? THEN {i}" for i in range(len(periods)))
    rows = await fetch_rows(
        f"SELECT t.dealer_code AS d, t.region_code AS r, CASE {bucket} END AS b, "
        f"t.category AS k, COUNT(*) AS n FROM ticket t WHERE {_COHORT} AND {reach.where} "
        f"GROUP BY 1, 2, 3, 4",
        [p.end for p in periods] + [periods[0].start, periods[-1].end] + list(reach.params))
    counted: dict[Scope, list[dict[str, int]]] = {}
    for row in rows:
        for unit in _units_of(reach.levels, row["d"], row["r"]):
            buckets = counted.setdefault(unit, [dict.fromkeys(_CATEGORIES, 0) for _ in periods])
            buckets[int(row["b"])][row["k"]] += int(row["n"])
    return {unit: [(p.label, c) for p, c in zip(periods, buckets, strict=True)]
            for unit, buckets in counted.items()}


_CATEGORIES = [c.value for c in Category]


def history_of(histories: dict[Scope, list[tuple[str, dict[str, int]]]], scope: Scope,
               period: Period, zone: ZoneInfo, count: int = HISTORY
               ) -> list[tuple[str, dict[str, int]]]:
    """One unit's volume history from `volume_histories` (zeros when it had none)."""
    return histories.get(scope) or [(p.label, dict.fromkeys(_CATEGORIES, 0))
                                    for p in period.recent(count, zone)]


async def volume_history(period: Period, scope: Scope, zone: ZoneInfo, count: int = HISTORY
                         ) -> list[tuple[str, dict[str, int]]]:
    """Tickets received by category in the last `count` periods, oldest first."""
    reach = Reach.of(scope)
    return history_of(await volume_histories(period, zone, reach, count), scope, period, zone,
                      count)


_PAGE = 2000
_LISTED = ("id", "dispatched_at", "dealer_code", "region_code", "category", "channel", "status",
           "customer_name", "customer_phone", "car_model", "flags", "repeat_of", "responded_at",
           "first_solution_at", "resolved_at", "closed_at", "satisfaction", "survey_score",
           "about_staff", "about_staff_name")


async def ticket_pages(period: Period, scope: Scope, *, page: int = _PAGE
                       ) -> AsyncIterator[list[dict[str, Any]]]:
    """The tickets received in the period, for the workbook's detail sheet,
    `page` rows at a time: a brand's month is 100,000+ rows, which a writer
    streams to its file page by page instead of holding them all."""
    query = TicketRow.filter(dispatched_at__gte=period.start, dispatched_at__lt=period.end
                             ).exclude(status="cancelled")
    if scope.level != "brand":
        query = query.filter(**{f"{scope.level}_code": scope.code})
    after = 0
    while True:
        rows = await query.filter(id__gt=after).order_by("id").limit(page).values(*_LISTED)
        if rows:
            yield rows
            after = rows[-1]["id"]
        if len(rows) < page:
            return


async def ticket_list(period: Period, scope: Scope, *, page: int = _PAGE
                      ) -> list[dict[str, Any]]:
    """The tickets received in the period (see `ticket_pages`), as one list."""
    return [row async for rows in ticket_pages(period, scope, page=page) for row in rows]


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
