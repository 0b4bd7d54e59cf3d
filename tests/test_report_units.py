"""R24 at a network's scale, on SQLite and PostgreSQL: the figures of every
unit computed at once (grouped queries, as the scheduled run computes them)
are those of each unit computed on its own, and those counted by hand in
Python from the stored rows, on a random-ish month of tickets that includes
a dealer missing from the directory and a dealer whose tickets carry two
region codes (it moved)."""

from __future__ import annotations

import random
from datetime import timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import numpy
import pytest

from bot.domain.enums import Category, Channel, Flag, OwnerLevel, Status
from bot.reports.figures import (
    Limits,
    Reach,
    Scope,
    compute_figures,
    parse_period,
    period_figures,
    volume_histories,
    volume_history,
)
from models import ApprovalRequest, Dealer, Region, Ticket, TicketEvent
from tests.conftest import T0

ZONE = ZoneInfo("Asia/Shanghai")
H = timedelta(hours=1)
D = timedelta(days=1)
# (dealer, region) of the tickets: SH002 is new in the directory, XX999 is
# not in it, HZ001 moved from EAST to NORTH mid-way (its tickets say both).
UNITS = [("SH001", "EAST"), ("SH002", "EAST"), ("HZ001", "EAST"), ("HZ001", "NORTH"),
         ("BJ001", "NORTH"), ("TJ001", "NORTH"), ("XX999", "EAST")]
CHANNELS = [Channel.PHONE, Channel.WEB, Channel.WECHAT]
FLAGS = [f.value for f in Flag][:3]


def minute(rng: random.Random, low: float, high: float) -> timedelta:
    """A random whole-minute span (SQLite compares times to the second)."""
    return timedelta(minutes=rng.randint(int(low * 60), int(high * 60)))


async def random_tickets(policy_digest: str, count: int = 240) -> list[Ticket]:
    """`count` tickets over W08–W10 and their events and approvals."""
    rng = random.Random(16)
    east = await Region.get(code="EAST")
    await Dealer.create(code="SH002", name="上海徐汇4S店", region=east)
    tickets = []
    for number in range(1, count + 1):
        dealer, region = rng.choice(UNITS)
        at = T0 - 14 * D + minute(rng, 0, 20 * 24)
        ticket = Ticket(
            id=number, customer_name="李先生", customer_phone="13812345678", car_model="速腾",
            vin=f"LFV2A21K6A{number:07d}", channel=rng.choice(CHANNELS), description="异响",
            dealer_code=dealer, region_code=region, category=rng.choice(list(Category)),
            owner_level=OwnerLevel.DEALER, status=Status.DISPATCHED, policy_id=policy_digest,
            dispatched_at=at, owner_since=at,
            flags=rng.sample(FLAGS, rng.randint(0, 2)),
            repeat_of=rng.randint(1, number) if number > 1 and rng.random() < .1 else None)
        if rng.random() < .8:
            ticket.responded_at, ticket.status = at + minute(rng, .2, 5), Status.RESPONDED
        if rng.random() < .6:
            ticket.first_solution_at = at + minute(rng, 2, 30)
        if rng.random() < .5:
            ticket.resolved_at, ticket.status = at + minute(rng, 10, 80), Status.RESOLVED
            if rng.random() < .7:
                ticket.closed_at, ticket.status = ticket.resolved_at + 10 * H, Status.CLOSED
                ticket.satisfaction = rng.choice([1, 2, 3, 4, 5, None])
        if rng.random() < .05:
            ticket.status = Status.CANCELLED
        tickets.append(ticket)
    await Ticket.bulk_create(tickets)
    events, approvals = [], []
    for t in tickets:
        for kind, data in (("escalated", {}), ("deadline_breached", {"reason": "r15"}),
                           ("deadline_breached", {}), ("followup", {"reason": "r14"}),
                           ("followup", {}), ("staged_closure_approved", {})):
            if rng.random() < .12:
                events.append(TicketEvent(ticket_id=t.id, at=t.dispatched_at + minute(rng, 1, 60),
                                          kind=kind, actor="x", source="chat", data=data))
        if rng.random() < .2:
            approvals.append(ApprovalRequest(
                ticket_id=t.id, kind="compensation", requested_by="sh.zhang",
                requested_at=t.dispatched_at, reason="补偿", approver_role="dealer_gm",
                approver_userid="sh.gm", amount=Decimal(rng.choice([100, 300, 1500])),
                status=rng.choice(["approved", "rejected"]),
                decided_at=t.dispatched_at + minute(rng, 1, 48)))
    await TicketEvent.bulk_create(events)
    await ApprovalRequest.bulk_create(approvals)
    return tickets


def units(tickets: list[Ticket]) -> list[Scope]:
    """Every dealer and region the tickets or the directory name, and the brand."""
    return ([Scope("dealer", d) for d in sorted({t.dealer_code for t in tickets})]
            + [Scope("region", r) for r in ("EAST", "NORTH")] + [Scope("brand")])


def in_scope(t: Ticket, scope: Scope) -> bool:
    return (scope.level == "brand" or (scope.level == "dealer" and t.dealer_code == scope.code)
            or (scope.level == "region" and t.region_code == scope.code))


@pytest.fixture
async def month(ledger):
    tickets = await random_tickets(ledger.policies.current.digest)
    return tickets, parse_period("weekly", "2026-W10", T0, ZONE)


@pytest.mark.parametrize("now", [None, T0 + 3 * D + 5 * H], ids=["ended", "running"])
async def test_r24_every_units_figures_at_once_equal_each_units_own(month, policy, now):
    tickets, week = month
    limits = Limits.of(policy)
    grouped = await period_figures(week, limits, ZONE, Reach.everything(), now=now)
    scopes = units(tickets)
    assert len(scopes) == 9
    for scope in scopes:
        alone = await compute_figures(week, scope, limits, ZONE, now=now)
        assert grouped.of(scope) == alone, scope
    brand = grouped.of(Scope("brand"))
    assert brand.received > 50 and brand.response_p90_min is not None, "the data is not empty"
    east = grouped.of(Scope("region", "EAST"))
    assert {r.code for r in east.ranking} == {"SH001", "SH002", "HZ001"}, (
        "the directory's dealers of the region, not XX999")


async def test_r24_grouped_figures_match_a_count_by_hand(month, policy):
    """Received, categories, shares, percentiles, backlog, satisfaction,
    escalations and compensation of every unit, counted in Python."""
    tickets, week = month
    limits = Limits.of(policy)
    grouped = await period_figures(week, limits, ZONE, Reach.everything())
    events = await TicketEvent.all().values("ticket_id", "at", "kind", "data")
    approvals = await ApprovalRequest.all().values("ticket_id", "amount", "status", "decided_at")
    by_id = {t.id: t for t in tickets}
    end = week.end
    for scope in units(tickets):
        mine = [t for t in tickets if in_scope(t, scope)]
        cohort = [t for t in mine if week.start <= t.dispatched_at < end
                  and t.status is not Status.CANCELLED]
        figures = grouped.of(scope)
        assert figures.received == len(cohort), scope
        categories = {c.value: sum(t.category is c for t in cohort) for c in Category}
        assert figures.by_category == {k: n for k, n in categories.items() if n}, scope
        in_time = sum(t.responded_at is not None and t.responded_at - t.dispatched_at
                      <= limits.response for t in cohort)
        assert figures.responded_in_time == (round(in_time / len(cohort), 4) if cohort
                                             else None), scope
        minutes = [(t.responded_at - t.dispatched_at).total_seconds() / 60 for t in cohort
                   if t.responded_at is not None]
        for value, share in ((figures.response_median_min, 50),
                             (figures.response_p90_min, 90)):
            expected = numpy.percentile(minutes, share) if minutes else None
            assert value == pytest.approx(expected), (scope, share)
        open_ = [t for t in mine if t.dispatched_at < end and t.status is not Status.CANCELLED
                 and (t.closed_at is None or t.closed_at >= end)]
        overdue = [t for t in open_ if t.dispatched_at <= end - limits.resolution
                   and (t.resolved_at is None or t.resolved_at >= end)]
        assert (figures.backlog, figures.overdue) == (len(open_), len(overdue)), scope
        scores = [t.satisfaction for t in mine if t.closed_at is not None
                  and week.start <= t.closed_at < end and t.satisfaction is not None]
        assert figures.satisfaction == (round(sum(scores) / len(scores), 2) if scores
                                        else None), scope
        escalations = sum(
            in_scope(by_id[e["ticket_id"]], scope) and week.start <= e["at"] < end
            and (e["kind"] == "escalated" or (e["kind"] in ("deadline_breached", "followup")
                                              and "reason" in e["data"])) for e in events)
        assert figures.escalations == escalations, scope
        paid = sum(a["amount"] for a in approvals if a["status"] == "approved"
                   and in_scope(by_id[a["ticket_id"]], scope)
                   and week.start <= a["decided_at"] < end)
        assert figures.compensation_approved == float(paid), scope


async def test_r24_every_units_history_at_once_equals_each_units_own(month):
    tickets, week = month
    histories = await volume_histories(week, ZONE, Reach.everything())
    for scope in units(tickets):
        alone = await volume_history(week, scope, ZONE)
        assert histories[scope] == alone, scope
        assert [label for label, _ in alone][-3:] == ["2026-W08", "2026-W09", "2026-W10"]
    assert sum(sum(counts.values()) for _, counts in histories[Scope("brand")]) == sum(
        t.status is not Status.CANCELLED for t in tickets)
