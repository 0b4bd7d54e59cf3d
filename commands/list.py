"""/list (列表): open tickets, mine or overdue ones, scoped by the group the
command comes from (a dealer group lists its dealer's tickets, a region group
its region's) or, elsewhere, by where the person sits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC
from typing import Any

from tortoise.expressions import Q, RawSQL, Subquery

from bot.directory import unroutable_by_ticket
from bot.domain.enums import OwnerLevel, Status
from bot.domain.permissions import view_bounds
from bot.domain.ticket import Actor
from bot.render.cards import pending_deadlines_of
from bot.render.chat import TicketLine, render_ticket_line
from commands.base import Reply
from commands.command import Call, Command, UsageError
from models import RUNNING, Deadline, GroupChat
from models import Ticket as TicketRow

SHOWN = 20
# The dealer's name in the same query (a ticket keeps its dealer's code, not a key).
_DEALER_NAME = RawSQL('(SELECT "name" FROM "dealer"'
                      ' WHERE "dealer"."code" = "ticket"."dealer_code")')
# Open as a list of the open states, not "not final": `status IN (…)` can use
# the status index, `NOT IN` reads every ticket ever stored.
_OPEN = [s for s in Status if not s.is_final]
# Oldest first, by an expression no index gives: by "id" with a LIMIT,
# PostgreSQL walks the primary key from the oldest ticket, through the closed
# history, hoping to meet 20 open (or overdue) ones soon, and SQLite walks
# the dealer's or region's whole history by its one-column index. This way
# both take the open tickets in scope by an index ((dealer_code, status),
# (region_code, status), status; for overdue, the due clocks) and sort them:
# the rows the count reads anyway, however long the history grows
# (bench/list_overdue.py, bench/RESULTS.md).
_OLDEST_FIRST = RawSQL('"ticket"."id" + 0')
_FILTERS = {"open": "open", "未结": "open", "mine": "mine", "我的": "mine",
            "overdue": "overdue", "逾期": "overdue"}
_TITLES = {"open": "未结投诉", "mine": "指派给我的未结投诉", "overdue": "已逾期的未结投诉"}


@dataclass(frozen=True)
class Scope:
    """Which tickets a /list looks at, and how the answer names them."""

    label: str
    filters: dict[str, Any]


def scope_of(group: GroupChat | None, actor: Actor) -> Scope:
    """The tickets a /list looks at: the bound group's, else the actor's own."""
    if group is not None:
        if group.kind == "dealer" and group.dealer is not None:
            dealer = group.dealer
            return Scope(f"{dealer.name}（{dealer.code}）", {"dealer_code": dealer.code})
        if group.kind == "region" and group.region is not None:
            region = group.region
            return Scope(f"{region.name}（{region.code}）", {"region_code": region.code})
        if group.kind == "hq":
            return Scope("本部", {"owner_level": OwnerLevel.HQ})
        if group.kind == "call_centre":
            return Scope("全部", {})
    if actor.level is OwnerLevel.DEALER:
        return Scope(f"经销商 {actor.dealer_code}", {"dealer_code": actor.dealer_code})
    if actor.level is OwnerLevel.REGION:
        return Scope(f"区域 {actor.region_code}", {"region_code": actor.region_code})
    return Scope("全部", {})


async def _list(call: Call) -> Reply:
    word = call.args.strip().lower() or "open"
    which = _FILTERS.get(word)
    if which is None:
        raise UsageError(f"无法识别“{call.args.strip()}”。")
    ctx, actor = call.ctx, call.actor
    scope = scope_of(await call.bound_group(), actor)
    query = TicketRow.filter(**scope.filters, status__in=_OPEN).filter(_viewable(actor))
    if which == "mine":
        query = query.filter(assignee=actor.userid)
    if which == "overdue":
        # Aware UTC bound: on SQLite a bound in another zone compares as text.
        due = Deadline.filter(state__in=RUNNING, due_at__lte=ctx.now.astimezone(UTC))
        query = query.filter(id__in=Subquery(due.values("ticket_id")))
    annotations = {"dealer_name": _DEALER_NAME, "oldest_first": _OLDEST_FIRST}
    # Only the shown rows' shown columns (and their dealer's name) are read;
    # the total is counted apart, and only when more rows than shown may exist.
    rows = await query.annotate(**annotations).order_by("oldest_first").limit(SHOWN).values_list(
        "id", "category", "status", "dealer_code", "car_model", "dealer_name")
    shown = [TicketLine(*row[:5]) for row in rows]
    names = {row[3]: row[5] or "" for row in rows}
    total = len(shown) if len(shown) < SHOWN else await query.count()
    title = _TITLES[which]
    missed = await _unroutable_lines(scope, actor)
    if not shown:
        return Reply(markdown="\n".join([f"📋 {scope.label}：暂无{title}。", *missed]))
    deadlines = await pending_deadlines_of([t.number for t in shown])
    lines = [f"📋 {scope.label}：{title} {total} 条"]
    for ticket in shown:
        pending = deadlines.get(ticket.number) or [None]
        lines.append(render_ticket_line(ticket, ctx.zone, now=ctx.now,
                                        dealer_name=names.get(ticket.dealer_code, ""),
                                        next_deadline=pending[0]))
    if total > SHOWN:
        lines.append(f"…… 另有 {total - SHOWN} 条未显示，请用 /show 编号 查看。")
    return Reply(markdown="\n".join([*lines, *missed]))


def _viewable(actor: Actor) -> Q:
    """The tickets the actor may view (`check`, Action.VIEW), as a filter:
    other dealers' and regions' tickets, and R22's, drop out in the query."""
    bounds = view_bounds(actor)
    viewable = Q(**bounds.same)
    if bounds.subject is not None:
        # NULL-safe: NOT (about_staff = x) is unknown, not true, for no employee.
        viewable &= Q(about_staff__isnull=True) | ~Q(about_staff=bounds.subject)
    return viewable


async def _unroutable_lines(scope: Scope, actor: Actor) -> list[str]:
    """R20: for a region (its group, or its people one-to-one), the open
    tickets with notices nobody could receive, so the region takes them up."""
    region = scope.filters.get("region_code")
    if region is None or actor.level is OwnerLevel.DEALER:
        return []
    missed = await unroutable_by_ticket(region)
    if not missed:
        return []
    lines = [f"⚠️ 有通知无人接收的投诉 {len(missed)} 条（R20，请区域跟进并补充通讯录）："]
    for number, who in list(missed.items())[:SHOWN]:
        lines.append(f"> #{number}：{'、'.join(who)}")
    return lines


COMMAND = Command(
    name="list",
    alias="列表",
    summary="列出本群（或您所在单位）的投诉：open 未结（默认）、mine 我的、overdue 逾期",
    usage="/list [open|mine|overdue]",
    example="/list overdue",
    handler=_list,
    reads_only=True,
)
