"""/report (报表): the weekly or monthly report of the group it is typed in
(R24): a dealer group gets its dealer's figures, a region group its region's
with the dealers ranked, HQ and the call centre the brand's. Outside a bound
group the person's own dealer or region, else the brand."""

from __future__ import annotations

from bot.domain.enums import OwnerLevel
from bot.reports.figures import (
    Kind,
    Limits,
    Scope,
    compute_figures,
    parse_period,
    period_containing,
)
from bot.reports.render import markdown_summary
from commands.base import Reply
from commands.command import Call, Command, UsageError

_KINDS: dict[str, Kind] = {"week": "weekly", "周": "weekly", "周报": "weekly",
          "month": "monthly", "月": "monthly", "月报": "monthly"}


async def scope_of(call: Call) -> Scope:
    """The view this group (or, one-to-one, this person) gets."""
    group, actor = await call.bound_group(), call.actor
    if group is not None:
        if group.kind == "dealer" and group.dealer is not None:
            return Scope("dealer", group.dealer.code)
        if group.kind == "region" and group.region is not None:
            return Scope("region", group.region.code)
        return Scope("brand")
    if actor.level is OwnerLevel.DEALER and actor.dealer_code:
        return Scope("dealer", actor.dealer_code)
    if actor.level is OwnerLevel.REGION and actor.region_code:
        return Scope("region", actor.region_code)
    return Scope("brand")


async def _report(call: Call) -> Reply:
    words = call.args.split()
    if not words or words[0].lower() not in _KINDS or len(words) > 2:
        raise UsageError("请指明 week（周报）或 month（月报），可附期间，如 2026-W10、2026-03；"
                         "不附期间为本周或本月至今。")
    kind = _KINDS[words[0].lower()]
    ctx = call.ctx
    try:
        # Without a period: the current one so far (the scheduled reports
        # already bring the last complete one).
        period = (parse_period(kind, words[1], ctx.now, ctx.zone) if len(words) > 1 else
                  period_containing(kind, ctx.now.astimezone(ctx.zone).date(), ctx.zone))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    limits = Limits.of(ctx.ledger.policies.current)
    figures = await compute_figures(period, await scope_of(call), limits, ctx.zone, now=ctx.now)
    return Reply(markdown=markdown_summary(figures))


COMMAND = Command(
    name="report",
    alias="报表",
    summary="本群的投诉周报或月报（经销商群看本店，区域群看各店排名，本部看全品牌）",
    usage="/report week|month [2026-W10|2026-03]",
    example="/report week 2026-W10",
    handler=_report,
)
