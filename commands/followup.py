"""/followup (回访): a return visit to the customer (R14); the visit that takes
the count above the limit escalates the ticket to the region."""

from __future__ import annotations

from bot.domain.transitions import followup
from commands.base import Reply
from commands.command import Call, Command, split_number, ticket_policy


async def _followup(call: Call) -> Reply:
    number, note = split_number(call.args)
    policy = await ticket_policy(call.ctx, number)
    ctx = call.ctx
    return await call.apply(number, lambda t: followup(t, call.actor, note, policy, ctx.now))


COMMAND = Command(
    name="followup",
    alias="回访",
    summary="记录一次回访跟踪（R14：48 小时内；超过 2 次自动升级）",
    usage="/followup 编号 [说明]",
    example="/followup 1 客户反馈换件后正常",
    handler=_followup,
)
