"""/delegate (委托): an approver on leave lets a colleague decide in their
name until a date; every such decision records on whose behalf it was made."""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta

from bot.domain.enums import Role
from bot.domain.ticket import Refused
from commands.base import Reply
from commands.command import Call, Command, UsageError
from models import Delegation, Staff

APPROVERS = frozenset({Role.DEALER_GM, Role.SECOND_LEVEL_MANAGER, Role.SENIOR_MANAGER})
_ARGS = re.compile(r"^@?(\S+)\s+(?:until\s+|至\s*|到\s*)?(\d{4}-\d{1,2}-\d{1,2})$",
                   re.IGNORECASE)


async def _delegate(call: Call) -> Reply:
    match = _ARGS.match(call.args.strip())
    if match is None:
        raise UsageError("请写明被委托人和截止日期。")
    userid, day_text = match.groups()
    try:
        day = date.fromisoformat("-".join(f"{int(p):02d}" for p in day_text.split("-")))
    except ValueError:
        raise UsageError(f"“{day_text}”不是有效的日期（例如 2026-03-10）。") from None
    ctx = call.ctx
    today = ctx.now.astimezone(ctx.zone).date()
    if day < today:
        raise Refused(f"截止日期 {day} 已过。")
    # Checked on dates, before any arithmetic: 9999-12-31 has no next day.
    longest = ctx.ledger.policies.current.limits.delegation
    if day > today + longest:
        raise Refused(f"委托期限最长 {longest.days} 天（至 {today + longest}），"
                      f"截止日期 {day} 太远，请缩短。")
    # Until the end of that day where the people are, stored in UTC.
    until = datetime.combine(day + timedelta(days=1), time(), tzinfo=ctx.zone)
    delegate = await Staff.get_or_none(userid=userid, active=True)
    if delegate is None:
        raise Refused(f"名录中没有 {userid}。")
    if delegate.userid == call.actor.userid:
        raise Refused("不能委托给自己。")
    await Delegation.create(approver=call.actor.userid, delegate=delegate.userid,
                            until=until.astimezone(ctx.now.tzinfo), created_at=ctx.now)
    return Reply(markdown=f"🤝 {call.actor.display} 已委托 {delegate.name} 代为审批，至 "
                          f"{day} 24:00；期间的审批将记录为“{delegate.name}（代 "
                          f"{call.actor.display}）”。")


COMMAND = Command(
    name="delegate",
    alias="委托",
    summary="休假时委托他人代为审批，至某日为止（审批人）",
    usage="/delegate @被委托人 until YYYY-MM-DD",
    handler=_delegate,
    roles=APPROVERS,
    example="/delegate @hq.deng until 2026-03-10",
)
